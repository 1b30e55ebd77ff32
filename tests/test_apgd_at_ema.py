"""APGD-AT in the AdversarialTrainer, and the weight EMA (callback, evaluation, checkpoints, resume, saved model)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerCallback

from mimir_hf.finetuning import AdversarialTrainer, AdversarialTrainingArguments
from mimir_hf.training import EMA_FILE, WeightEMA
from test_finetuning import tensor_dataset, tiny_classifier, training_args


def test_weight_ema_is_the_recursive_average():
    module = nn.BatchNorm1d(3)  # float parameters and buffers, plus the integer num_batches_tracked
    ema = WeightEMA(module, decay=0.9)
    theta0 = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.fill_(2.0)
        module.num_batches_tracked.fill_(5)
    ema.update(module)
    with torch.no_grad():
        module.weight.fill_(4.0)
    ema.update(module)
    expected = 0.81 * theta0 + 0.09 * 2.0 + 0.1 * 4.0
    assert torch.allclose(ema.shadow["weight"], expected)
    assert int(ema.shadow["num_batches_tracked"]) == 5 and ema.num_updates == 2
    target = nn.BatchNorm1d(3)
    ema.copy_to(target)
    assert torch.allclose(target.weight, expected)
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(module, decay=1.0)


class _Recorder(TrainerCallback):
    """Records the weights after every optimizer step and the weights each evaluation ran on."""

    def __init__(self):
        self.after_step: list[dict[str, torch.Tensor]] = []
        self.evaluated: dict[int, dict[str, torch.Tensor]] = {}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.after_step.append({k: v.detach().clone().float() for k, v in model.state_dict().items()})

    def on_prediction_step(self, args, state, control, model=None, **kwargs):
        self.evaluated[state.global_step] = {k: v.detach().clone().float() for k, v in model.state_dict().items()}


def _manual_ema(initial: dict[str, torch.Tensor], steps: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    average = {k: v.clone() for k, v in initial.items()}
    for weights in steps:
        for k in average:
            average[k] = decay * average[k] + (1 - decay) * weights[k]
    return average


def test_apgd_at_with_ema_trains_evaluates_and_saves_the_average(tmp_path):
    data = tensor_dataset(16)
    model = tiny_classifier()
    initial = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    args = training_args(
        tmp_path,
        adversarial_method="apgd",
        attack_steps=2,
        attack_epsilon=4 / 255,
        attack_random_start=False,
        learning_rate=1e-2,
        num_train_epochs=2,
        ema_decay=0.6,
        eval_strategy="epoch",
        save_strategy="epoch",
    )
    recorder = _Recorder()
    trainer = AdversarialTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, callbacks=[recorder])
    calls = []
    import mimir_hf.finetuning.trainer as trainer_module

    original = trainer_module.apgd

    def spy(*a, **k):
        calls.append(k)
        return original(*a, **k)

    trainer_module.apgd = spy
    try:
        trainer.train()
    finally:
        trainer_module.apgd = original
    assert calls and all(k["steps"] == 2 and not k["random_start"] and "step_size" not in k for k in calls)
    steps = recorder.after_step
    assert len(steps) == 4  # 2 epochs x 2 batches
    expected = _manual_ema(initial, steps, 0.6)
    # the model now holds the average, and save_model writes it
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value.float(), expected[name], atol=1e-6), name
    trainer.save_model()
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert any(torch.allclose(v.float(), expected["classifier.weight"]) for k, v in saved.items() if k.endswith("classifier.weight"))
    # checkpoints keep the raw weights (resumable) and the average next to them
    checkpoint = tmp_path / "run" / "checkpoint-4"
    ema_file = load_file(str(checkpoint / EMA_FILE))
    assert torch.allclose(ema_file["classifier.weight"], expected["classifier.weight"], atol=1e-6)
    raw = load_file(str(checkpoint / "model.safetensors"))
    raw_head = next(v for k, v in raw.items() if k.endswith("classifier.weight"))
    assert torch.allclose(raw_head.float(), steps[-1]["classifier.weight"], atol=1e-6)
    assert not torch.allclose(raw_head.float(), expected["classifier.weight"])
    # evaluations ran on the average of their moment
    evals = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert len(evals) == 2 and all(math.isfinite(entry["eval_loss"]) for entry in evals)
    first_eval = recorder.evaluated[2]
    assert torch.allclose(first_eval["classifier.weight"], _manual_ema(initial, steps[:2], 0.6)["classifier.weight"], atol=1e-6)


class _StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


@pytest.mark.slow
def test_resumed_run_continues_the_average(tmp_path):
    data = tensor_dataset(16)
    common = dict(learning_rate=1e-2, num_train_epochs=2, ema_decay=0.6, save_strategy="epoch", adversarial_method="apgd")
    torch.manual_seed(0)
    full = AdversarialTrainer(model=tiny_classifier(), args=training_args(tmp_path / "a", **common), train_dataset=data)
    full.train()
    torch.manual_seed(0)
    first = AdversarialTrainer(
        model=tiny_classifier(), args=training_args(tmp_path / "b", **common), train_dataset=data, callbacks=[_StopAt(2)]
    )
    first.train()  # interrupted after the first epoch's checkpoint
    torch.manual_seed(0)
    resumed = AdversarialTrainer(model=tiny_classifier(), args=training_args(tmp_path / "b", **common), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "run" / "checkpoint-2"))
    assert (tmp_path / "b" / "run" / "checkpoint-2" / EMA_FILE).is_file()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    # without the saved average the resumed run would restart it from the step-2 weights and differ
    (tmp_path / "b" / "run" / "checkpoint-2" / EMA_FILE).unlink()
    torch.manual_seed(0)
    restarted = AdversarialTrainer(model=tiny_classifier(), args=training_args(tmp_path / "b", **common), train_dataset=data)
    restarted.train(resume_from_checkpoint=str(tmp_path / "b" / "run" / "checkpoint-2"))
    c = restarted.model.state_dict()
    assert not all(torch.allclose(a[k].float(), c[k].float(), atol=1e-5) for k in a)


def test_ema_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="ema_decay"):
        AdversarialTrainingArguments(output_dir=str(tmp_path), ema_decay=1.5)
    args = AdversarialTrainingArguments(output_dir=str(tmp_path), adversarial_method="apgd", use_cpu=True)
    assert args.adversarial_method == "apgd" and args.ema_decay == 0


def test_best_checkpoint_keeps_its_average_and_cpu_shadow(tmp_path):
    data = tensor_dataset(16)
    args = training_args(
        tmp_path,
        learning_rate=1e-2,
        num_train_epochs=3,
        ema_decay=0.5,
        ema_device="cpu",
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
    )
    trainer = AdversarialTrainer(model=tiny_classifier(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    averaged = load_file(str(tmp_path / "run" / best.rsplit("/", 1)[-1] / EMA_FILE))
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value.float(), averaged[name].float(), atol=1e-6), name
    # the evaluation that picked it ran on that same average
    again = trainer.evaluate()
    assert math.isclose(again["eval_loss"], trainer.state.best_metric, rel_tol=1e-5)
