"""What a GPU run depends on and a CPU run cannot show by timing: precision of the attacks, and host syncs.

- The attacks run under the run's autocast: bf16 matmuls in a bf16 run, fp32
  otherwise, for the pretraining attack, the finetuning attacks and the finetuning validation
  attack; the robustness evaluation always attacks in fp32.
- One training step of each trainer reads nothing back from the device (item 2): the sync
  counter patches every Python-level read-back and must count 0.
- fp16 is refused with a message that recommends bf16 (item 3).
"""

from __future__ import annotations

import pytest
import torch
from transformers import ViTMAEConfig

import mimir_hf.finetuning.trainer as finetuning_trainer
import mimir_hf.pretraining.trainer as pretraining_trainer
from mimir_hf.evaluation import AttackSettings, build_attack
from mimir_hf.evaluation.wrapper import LogitsModel
from mimir_hf.finetuning import AdversarialTrainer, AdversarialTrainingArguments, mae_to_classifier, random_mae_encoder
from mimir_hf.modeling import MimirForPreTraining
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.training.runs import recipe_config_dict
from sync_counter import count_host_syncs
from tiny_runs import (
    TINY_VIT,
    LinearDtypes,
    RandomImages,
    count_step_syncs,
    finetuning_trainer_for,
    labelled_images,
    pretraining_trainer_for,
)


# ---------------------------------------------------------------- precision of the attacks


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_pretraining_attack_runs_in_the_runs_precision(tmp_path, monkeypatch, bf16, expected):
    trainer = pretraining_trainer_for(tmp_path, bf16=bf16, max_steps=1)
    dtypes = LinearDtypes(trainer.model)
    monkeypatch.setattr(pretraining_trainer, "craft_adversarial_pixels", dtypes.marking(pretraining_trainer.craft_adversarial_pixels))
    trainer.train()
    assert dtypes.attack == {expected}, "the attack's matmuls must run in the run's precision"
    assert dtypes.other == {expected}
    # the MI penalty is still computed outside autocast and logged as a finite number
    assert trainer.state.log_history[0]["mi_loss"] > 0


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_finetuning_attacks_run_in_the_runs_precision(tmp_path, monkeypatch, bf16, expected, method):
    trainer = finetuning_trainer_for(tmp_path, bf16=bf16, max_steps=1, adversarial_method=method)
    dtypes = LinearDtypes(trainer.model)
    monkeypatch.setattr(finetuning_trainer, "pgd", dtypes.marking(finetuning_trainer.pgd))
    trainer.train()
    assert dtypes.attack == {expected} and dtypes.other == {expected}
    dtypes.attack.clear()
    metrics = trainer.evaluate()  # the validation PGD (eval_robust_accuracy) goes through the same core
    assert dtypes.attack == {expected} and 0 <= metrics["eval_robust_accuracy"] <= 1


def test_evaluation_attacks_run_in_fp32_even_under_autocast():
    torch.manual_seed(0)
    classifier = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY_VIT)), num_labels=3).eval()
    wrapper = LogitsModel(classifier)
    dtypes = LinearDtypes(classifier)
    x = torch.rand(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    attack = build_attack("pgd-2", AttackSettings())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adversarial = dtypes.marking(attack.run)(wrapper, x, y, generator=torch.Generator().manual_seed(0))
    assert dtypes.attack == {torch.float32}
    assert adversarial.dtype == torch.float32 and (adversarial - x).abs().max() <= 8 / 255 + 1e-6


# ---------------------------------------------------------------- host syncs


def test_sync_counter_counts_read_backs():
    x = torch.ones(3)
    with count_host_syncs() as log:
        x.sum().item()
        bool(x.any())
        x.tolist()
        int(x[0])
    assert log.count == 4


@pytest.mark.parametrize("overrides", [{}, {"log_attack_gain": True, "attack_shares_mask": True, "bf16": True}])
def test_pretraining_step_reads_nothing_back(tmp_path, overrides):
    trainer = pretraining_trainer_for(tmp_path, max_steps=2, **overrides)
    logs = count_step_syncs(trainer)
    assert len(logs) == 2
    for log in logs:
        assert log.count == 0, log.report()
    # and the loss parts still reach the logs (read once, in log())
    entry = trainer.state.log_history[0]
    assert entry["loss"] == pytest.approx(entry["reconstruction_loss"] + entry["mi_loss"], rel=1e-2)
    assert entry["mi_dropped_batches"] == 0


@pytest.mark.parametrize("method", ["pgd", "apgd", "trades", "mart", "none"])
def test_finetuning_step_reads_nothing_back(tmp_path, method):
    trainer = finetuning_trainer_for(tmp_path, max_steps=2, adversarial_method=method, drop_path_rate=0.1)
    logs = count_step_syncs(trainer)
    assert len(logs) == 2
    for log in logs:
        assert log.count == 0, log.report()
    entry = trainer.state.log_history[0]
    assert 0 <= entry["clean_accuracy"] <= 1 and (method == "none" or 0 <= entry["adversarial_accuracy"] <= 1)


@pytest.mark.parametrize("method", ["pgd", "apgd", "none"])
def test_finetuning_step_with_mixup_and_cutmix_reads_nothing_back(tmp_path, method):
    """Mixing draws lambda and the box on the host from NumPy and slices with Python ints: still no read-back."""
    trainer = finetuning_trainer_for(
        tmp_path, max_steps=4, adversarial_method=method, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing_factor=0.1,
        gradient_accumulation_steps=2,
    )
    mixed = []
    original = trainer._batch_mixing.mix

    class Spy:
        def mix(self, *args, **kwargs):
            result = original(*args, **kwargs)
            mixed.append(result[2])
            return result

    trainer._batch_mixing = Spy()
    logs = count_step_syncs(trainer)
    assert len(logs) == 8 and all(log.count == 0 for log in logs), "\n".join(log.report() for log in logs)
    assert {params.box is None for params in mixed} == {True, False}  # both Mixup and CutMix batches ran
    assert all(0 <= entry["clean_accuracy"] <= 1 for entry in trainer.state.log_history if "loss" in entry)


def test_bad_batches_are_still_refused_with_the_same_errors(tmp_path):
    """The checks moved from the step to the collator; they must still fire before any training."""

    class Bad(RandomImages):
        def __getitem__(self, i: int) -> dict:
            return {"pixel_values": super().__getitem__(i)["pixel_values"] * 255}

    trainer = pretraining_trainer_for(tmp_path, max_steps=1)
    trainer.train_dataset = Bad()
    with pytest.raises(ValueError, match="0-255 images: divide by 255"):
        trainer.train()
    fine = finetuning_trainer_for(tmp_path, max_steps=1)
    fine.train_dataset = labelled_images(num_labels=5)
    with pytest.raises(ValueError, match="label count of the model does not match"):
        fine.train()


def test_mi_drop_is_logged_without_a_sync_in_the_step(tmp_path, monkeypatch, caplog):
    """A non-finite MI estimate is flagged on the device, counted in the logs and warned about in log()."""
    from mimir_hf.mutual_information import ESTIMATORS

    monkeypatch.setitem(ESTIMATORS, "hsic_cca", lambda x, y, sigma, epsilon: torch.full((), float("nan"), device=x.device))
    trainer = pretraining_trainer_for(tmp_path, max_steps=2)
    with caplog.at_level("WARNING"):
        logs = count_step_syncs(trainer)
    assert all(log.count == 0 for log in logs)
    entries = [entry for entry in trainer.state.log_history if "mi_dropped_batches" in entry]
    assert [entry["mi_dropped_batches"] for entry in entries] == [1, 1]
    assert all(entry["mi_loss"] == 0 for entry in entries)
    assert "dropped" in caplog.text


# ---------------------------------------------------------------- fp16


def test_fp16_is_refused_with_a_pointer_to_bf16(tmp_path):
    with pytest.raises(ValueError, match="bf16=True"):
        MimirTrainingArguments(output_dir=str(tmp_path), fp16=True, use_cpu=True)
    MimirTrainingArguments(output_dir=str(tmp_path), fp16=True, use_cpu=True, attack_steps=0)  # plain MAE: no attack
    args = AdversarialTrainingArguments(output_dir=str(tmp_path), fp16=True, use_cpu=True)
    model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY_VIT)), num_labels=3)
    with pytest.raises(ValueError, match="bf16=True"):
        AdversarialTrainer(model=model, args=args)


def test_fp16_from_accelerate_launch_is_refused_and_bf16_recorded(tmp_path, monkeypatch):
    # `accelerate launch --mixed_precision fp16` sets the precision through the environment, not the flag
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ValueError, match="accelerate launch --mixed_precision fp16"):
        MimirTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    args = AdversarialTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY_VIT)), num_labels=3)
    with pytest.raises(ValueError, match="accelerate launch --mixed_precision fp16"):
        AdversarialTrainer(model=model, args=args)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    record = recipe_config_dict(MimirTrainingArguments(output_dir=str(tmp_path), use_cpu=True))
    assert record["bf16"] is True and record["fp16"] is False  # the record says the precision that ran


def test_saved_config_records_the_per_device_batch_of_the_mi_penalty(tmp_path):
    trainer = pretraining_trainer_for(tmp_path, max_steps=1, mi_compute_dtype="float32")
    assert trainer.model.config.mi_batch_size == 8 and trainer.model.config.mi_compute_dtype == "float32"
    assert trainer.model.mi_penalty.compute_dtype == "float32"
    trainer.train()
    trainer.save_model()
    reloaded = MimirForPreTraining.from_pretrained(str(tmp_path / "pre"))
    assert reloaded.config.mi_batch_size == 8 and reloaded.config.mi_compute_dtype == "float32"


# ---------------------------------------------------------------- torch.compile


@pytest.mark.slow
def test_compiled_encoder_has_no_graph_break_in_a_training_step(tmp_path):
    """`fullgraph=True` raises on any graph break: the encoder must compile whole, for the attack and the step.

    CPU inductor (~3 min on the 2 shared cores); the attack's forward (frozen parameters, input
    gradients) and the training forward are compiled separately and both go through it.
    """
    torch._dynamo.reset()
    trainer = pretraining_trainer_for(tmp_path, max_steps=2, log_attack_gain=True)
    trainer.model.vit.compile(fullgraph=True, backend="inductor")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(entry["mi_loss"] > 0 for entry in logs)
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
    torch._dynamo.reset()
