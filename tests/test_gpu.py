"""On a CUDA GPU: placement, the bf16 attacks, zero syncs, compile, the trainers end to end (`benchmarks/gpu_check.py`).

Skipped without CUDA (conftest). What the CPU tests can only approximate is checked for real
here: `torch.cuda.set_sync_debug_mode("error")` turns every host synchronisation inside a
training step into an error, including the C++-side ones (a checked `linalg.solve`, a
`nonzero`, a blocking copy) that the Python-level counter cannot see.
"""

from __future__ import annotations

import math

import pytest
import torch

import mimir_hf.finetuning.trainer as finetuning_trainer
import mimir_hf.pretraining.trainer as pretraining_trainer
from mimir_hf.mutual_information.kernels import compute_dtype_for, float64_is_cheap
from tiny_runs import LinearDtypes, count_step_syncs, finetuning_trainer_for, pretraining_trainer_for

pytestmark = pytest.mark.gpu
CUDA = dict(use_cpu=False, bf16=True)


def _no_sync_steps(trainer) -> list:
    """Run training with every training_step under sync-debug mode "error"; also count Python read-backs."""
    original = trainer.training_step

    def strict(*args, **kwargs):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    trainer.training_step = strict
    return count_step_syncs(trainer)


def test_trainers_place_everything_on_cuda(tmp_path):
    trainer = pretraining_trainer_for(tmp_path, max_steps=1, **CUDA)
    trainer.train()
    assert trainer.args.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in trainer.model.parameters())
    fine = finetuning_trainer_for(tmp_path, max_steps=1, **CUDA)
    fine.train()
    assert all(p.device.type == "cuda" for p in fine.model.parameters())


@pytest.mark.parametrize("bf16", [True, False])
def test_attacks_run_in_the_runs_precision_on_cuda(tmp_path, monkeypatch, bf16):
    expected = torch.bfloat16 if bf16 else torch.float32
    trainer = pretraining_trainer_for(tmp_path, max_steps=1, use_cpu=False, bf16=bf16)
    dtypes = LinearDtypes(trainer.model)
    monkeypatch.setattr(pretraining_trainer, "craft_adversarial_pixels", dtypes.marking(pretraining_trainer.craft_adversarial_pixels))
    trainer.train()
    assert dtypes.attack == {expected} and dtypes.other == {expected}
    fine = finetuning_trainer_for(tmp_path, max_steps=1, use_cpu=False, bf16=bf16)
    dtypes = LinearDtypes(fine.model)
    monkeypatch.setattr(finetuning_trainer, "pgd", dtypes.marking(finetuning_trainer.pgd))
    fine.train()
    assert dtypes.attack == {expected} and dtypes.other == {expected}


@pytest.mark.parametrize("overrides", [{}, {"log_attack_gain": True, "attack_shares_mask": True}, {"mi_compute_dtype": "float32"}])
def test_pretraining_step_never_synchronises_on_cuda(tmp_path, overrides):
    trainer = pretraining_trainer_for(tmp_path, max_steps=3, **CUDA, **overrides)
    logs = _no_sync_steps(trainer)
    assert len(logs) == 3 and all(log.count == 0 for log in logs), logs[0].report()
    assert trainer.state.log_history[-2]["mi_dropped_batches"] == 0


@pytest.mark.parametrize("method", ["pgd", "apgd", "trades", "mart", "none"])
def test_finetuning_step_never_synchronises_on_cuda(tmp_path, method):
    trainer = finetuning_trainer_for(tmp_path, max_steps=3, adversarial_method=method, drop_path_rate=0.1, **CUDA)
    logs = _no_sync_steps(trainer)
    assert len(logs) == 3 and all(log.count == 0 for log in logs), logs[0].report()


@pytest.mark.parametrize("method", ["pgd", "apgd"])
def test_finetuning_step_with_mixup_and_cutmix_never_synchronises_on_cuda(tmp_path, method):
    """Singh et al.'s step: Mixup/CutMix (host-drawn lambda and box) before the attack, soft-target loss."""
    trainer = finetuning_trainer_for(
        tmp_path, max_steps=4, adversarial_method=method, attack_random_start=False, mixup_alpha=0.8, cutmix_alpha=1.0,
        label_smoothing_factor=0.1, **CUDA,
    )
    logs = _no_sync_steps(trainer)
    assert len(logs) == 4 and all(log.count == 0 for log in logs), logs[0].report()


def test_compiled_encoder_without_graph_breaks_and_trainer_torch_compile(tmp_path):
    torch._dynamo.reset()
    trainer = pretraining_trainer_for(tmp_path / "a", max_steps=2, **CUDA)
    trainer.model.vit.compile(fullgraph=True)  # raises on any graph break in the encoder
    trainer.train()
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
    torch._dynamo.reset()
    # the stock option: Accelerate compiles the whole model, the attack goes through the compiled forward
    trainer = pretraining_trainer_for(tmp_path / "b", max_steps=2, torch_compile=True, **CUDA)
    trainer.train()
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
    torch._dynamo.reset()


def test_trainers_train_in_bf16_on_cuda(tmp_path):
    trainer = pretraining_trainer_for(tmp_path, max_steps=6, **CUDA)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 6 and all(math.isfinite(e["loss"]) and e["mi_loss"] > 0 and e["mi_dropped_batches"] == 0 for e in logs)
    device = torch.device("cuda")
    expected = torch.float64 if float64_is_cheap(device) else torch.float32
    assert compute_dtype_for(device, "auto") == expected
    fine = finetuning_trainer_for(tmp_path, max_steps=6, eval_strategy="steps", eval_steps=6, **CUDA)
    fine.train()
    evaluation = [e for e in fine.state.log_history if "eval_robust_accuracy" in e]
    assert evaluation and 0 <= evaluation[-1]["eval_robust_accuracy"] <= evaluation[-1]["eval_accuracy"] <= 1
