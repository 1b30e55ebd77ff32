"""MimirTrainer, MimirTrainingArguments, the pretraining attack and the pretraining recipe."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_hf.cli import parse_recipe_args
from mimir_hf.data import DataArguments, collate_images, eval_transform, with_transform
from mimir_hf.modeling import MimirForPreTraining, mimir_config
from mimir_hf.pretraining import (
    MimirTrainer,
    MimirTrainingArguments,
    PretrainModelArguments,
    craft_adversarial_pixels,
    mae_attack_objective,
)
from mimir_hf.pretraining.run import run_pretraining

REPO = Path(__file__).resolve().parents[1]
TINY = dict(patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 32, size: int = 32, labels: bool = False):
        self.n, self.size, self.labels = n, size, labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        row = {"pixel_values": torch.rand(3, self.size, self.size, generator=g)}
        if self.labels:
            row["labels"] = torch.tensor(i % 10)
        return row


def make_args(tmp_path, **overrides) -> MimirTrainingArguments:
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_train_epochs=1, logging_steps=1,
                report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True, seed=0)
    return MimirTrainingArguments(**{**base, **overrides})


def tiny_model(**overrides) -> MimirForPreTraining:
    torch.manual_seed(0)
    return MimirForPreTraining(mimir_config("vit-t", 32, **{**TINY, **overrides}))


def test_learning_rate_follows_the_mae_scaling_rule(tmp_path):
    args = make_args(tmp_path, per_device_train_batch_size=64, gradient_accumulation_steps=2, base_learning_rate=1.5e-4)
    assert args.learning_rate == pytest.approx(1.5e-4 * 128 / 256)
    assert make_args(tmp_path, base_learning_rate=None, learning_rate=0.01).learning_rate == 0.01
    assert (args.adam_beta2, args.weight_decay, args.lr_scheduler_type.value) == (0.95, 0.05, "cosine")


@pytest.mark.parametrize(("field", "value"), [("attack_target", "noise"), ("training_target", "noise"), ("mi_estimator", "mine"), ("attack_epsilon", 8.0), ("mi_weight", -1.0)])
def test_bad_method_arguments_raise(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        make_args(tmp_path, **{field: value})


def test_trainer_records_method_settings_and_logs_loss_parts(tmp_path):
    model = tiny_model()
    args = make_args(tmp_path, mi_weight=2e-5, attack_target="clean", attack_shares_mask=True, log_attack_gain=True)
    trainer = MimirTrainer(model=model, args=args, train_dataset=RandomImages())
    assert model.config.mi_weight == 2e-5 and model.config.attack_target == "clean" and model.config.attack_shares_mask
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for entry in logs:
        assert entry["loss"] == pytest.approx(entry["reconstruction_loss"] + entry["mi_loss"], rel=1e-4)
        assert entry["mi_loss"] > 0 and entry["mi_dropped_batches"] == 0 and "attack_gain" in entry


@pytest.mark.parametrize("training_target", ["clean", "adversarial"])
def test_training_target_chooses_what_the_step_reconstructs(tmp_path, monkeypatch, training_target):
    """The loss the trainer minimises is the reconstruction of x (MIMIR) or of x′ (the ablation)."""
    from mimir_hf.pretraining import trainer as trainer_module

    model = tiny_model(mi_weight=0.0)
    args = make_args(tmp_path, mi_weight=0.0, training_target=training_target)
    trainer = MimirTrainer(model=model, args=args, train_dataset=RandomImages(8))
    assert model.config.training_target == training_target
    pixels = torch.stack([RandomImages(8)[i]["pixel_values"] for i in range(8)])
    adversarial = (pixels + 0.03).clamp(0, 1)  # a fixed x′ far enough from x that the two losses differ
    monkeypatch.setattr(trainer_module, "craft_adversarial_pixels", lambda *a, **k: adversarial)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        loss = trainer.compute_loss(model, {"pixel_values": pixels})
    # ViT-MAE draws its mask noise from the global generator: the same seed gives the same mask
    with torch.no_grad():
        torch.manual_seed(1)
        mask_noise = torch.rand(8, model.vit.embeddings.patch_embeddings.num_patches)
        again = model(pixel_values=pixels, adversarial_pixel_values=adversarial, noise=mask_noise,
                      reconstruction_target=None if training_target == "clean" else adversarial).reconstruction_loss
    torch.testing.assert_close(loss, again)
    other = "adversarial" if training_target == "clean" else "clean"
    with torch.no_grad():
        wrong = model(pixel_values=pixels, adversarial_pixel_values=adversarial, noise=mask_noise,
                      reconstruction_target=None if other == "clean" else adversarial).reconstruction_loss
    assert (loss - wrong).abs() > 1e-5


def test_dropped_mi_batches_are_counted_in_the_logs(tmp_path, monkeypatch):
    from mimir_hf.mutual_information import penalty as penalty_module

    def failing(*args, **kwargs):
        raise torch.linalg.LinAlgError("singular")

    monkeypatch.setitem(penalty_module.ESTIMATORS, "hsic_cca", failing)
    trainer = MimirTrainer(model=tiny_model(), args=make_args(tmp_path, logging_steps=2), train_dataset=RandomImages())
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["mi_dropped_batches"] for entry in logs] == [2.0, 2.0]
    assert all(entry["mi_loss"] == 0 and np.isfinite(entry["loss"]) for entry in logs)


def test_gradient_accumulation_matches_the_large_batch(tmp_path):
    """Attack and MI off (both are batch-level), 4 x 2 accumulation must equal one batch of 8. The rows
    carry labels, as a labelled data set's do in the recipe: the stock Trainer then counts them and, for a
    model whose forward takes **kwargs, would stop dividing the loss by the accumulation steps."""
    final = []
    for batch, accumulation in [(8, 1), (4, 2)]:
        model = tiny_model(mi_weight=0.0)
        args = make_args(tmp_path, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                         attack_steps=0, mi_weight=0.0, base_learning_rate=None, learning_rate=1.0,
                         warmup_steps=0, lr_scheduler_type="constant", max_steps=1, weight_decay=0.0,
                         optim="sgd",  # Adam's first step is scale-free and would hide a doubled loss
                         max_grad_norm=0.0)  # clipping would bring both updates to the same norm
        MimirTrainer(model=model, args=args, train_dataset=RandomImages(8, labels=True)).train()
        final.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    start = torch.cat([p.detach().flatten() for p in tiny_model(mi_weight=0.0).parameters()])
    assert (final[0] - start).abs().max() > 1e-4  # the step did something
    torch.testing.assert_close(final[1] - start, final[0] - start, rtol=1e-4, atol=1e-7)


def test_tensorboard_receives_the_loss_parts(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = make_args(tmp_path, report_to="tensorboard")
    MimirTrainer(model=tiny_model(), args=args, train_dataset=RandomImages(16)).train()
    events = EventAccumulator(str(next(Path(args.output_dir).rglob("events.out.tfevents*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/reconstruction_loss", "train/mi_loss", "train/mi_dropped_batches", "train/loss"} <= tags


def test_attack_raises_the_mae_loss_and_stays_in_budget():
    model = tiny_model(mi_weight=0.0).eval()
    clean = torch.rand(8, 3, 32, 32)
    noise = torch.rand(8, 64)
    for target in ("adversarial", "clean"):
        objective = mae_attack_objective(model, clean, target=target, noise=noise)
        adversarial = craft_adversarial_pixels(model, clean, epsilon=8 / 255, step_size=2 / 255, steps=5, target=target, noise=noise)
        assert ((adversarial - clean).abs() <= 8 / 255 + 1e-6).all()
        with torch.no_grad():
            assert objective(adversarial).mean() > objective(clean).mean()
    assert craft_adversarial_pixels(model, clean, epsilon=8 / 255, step_size=2 / 255, steps=0) is clean
    assert all(p.grad is None for p in model.parameters())


def test_unknown_config_key_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("dataset: builtin:digits\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat.*did you mean 'learning_rate'"):
        parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments), ["--config", str(config)])
    with pytest.raises(ValueError, match="--not_an_option"):
        parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments), ["--not_an_option", "1"])


def _tiny_recipe_args(tmp_path, dataset: str, **training):
    model_args = PretrainModelArguments(**{k: v for k, v in TINY.items()}, num_preview_images=4)
    data_args = DataArguments(dataset=dataset, image_size=32, max_train_samples=32)
    training_args = make_args(tmp_path, **training)
    return model_args, data_args, training_args


def test_recipe_writes_a_complete_output_folder(tmp_path):
    model_args, data_args, training_args = _tiny_recipe_args(tmp_path, "builtin:digits")
    run_pretraining(model_args, data_args, training_args)
    out = Path(training_args.output_dir)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "recipe_config.yaml", "reconstructions.png"):
        assert (out / name).is_file(), name
    # the recorded arguments are a valid --config for the same recipe
    again = parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments),
                              ["--config", str(out / "recipe_config.yaml")])
    assert again[0].hidden_size == 32 and again[1].dataset == "builtin:digits" and again[2].mi_weight == 1e-5
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(out)
    from PIL import Image

    pixels = processor(Image.new("RGB", (32, 32), (255, 0, 0)), return_tensors="pt")["pixel_values"]
    assert pixels.max() == 1.0 and pixels.min() == 0.0  # rescaled to [0, 1], not normalised


def test_the_reconstruction_picture_shows_held_out_training_images_never_test_images(tmp_path, monkeypatch):
    from mimir_hf.data.splits import hold_out_validation
    from mimir_hf.pretraining import run as run_module

    shown = []
    monkeypatch.setattr(run_module, "save_reconstruction_grid", lambda model, pixels, path: shown.append(pixels) or path)
    model_args, data_args, training_args = _tiny_recipe_args(tmp_path, "builtin:digits", max_steps=1)
    data_args.validation_split_size, data_args.validation_split_seed = 8, 3
    run_pretraining(model_args, data_args, training_args)
    train = data_args.load(data_args.train_split, max_samples=data_args.max_train_samples)
    _, held_out = hold_out_validation(train, 8, seed=3)
    expected = collate_images(list(with_transform(held_out.select(range(4)), eval_transform(32))))["pixel_values"]
    torch.testing.assert_close(shown[0], expected)
    test_images = collate_images(list(with_transform(data_args.load(data_args.eval_split, max_samples=4), eval_transform(32))))
    assert not torch.equal(shown[0], test_images["pixel_values"])


def _write_npz(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> str:
    arrays = {"images": images}
    if labels is not None:
        arrays["labels"] = labels
    np.savez(path, **arrays)
    return str(path)


def test_recipe_rejects_bad_data_with_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    small = _write_npz(tmp_path / "small.npz", rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="smaller|16"):
        run_pretraining(*_tiny_recipe_args(tmp_path, small))
    empty = _write_npz(tmp_path / "empty.npz", np.zeros((0, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        run_pretraining(*_tiny_recipe_args(tmp_path, empty))
    few = _write_npz(tmp_path / "few.npz", rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="fewer than one batch"):
        run_pretraining(*_tiny_recipe_args(tmp_path, few))


def test_grayscale_and_rgba_images_are_converted(tmp_path):
    rng = np.random.default_rng(0)
    gray = _write_npz(tmp_path / "gray.npz", rng.integers(0, 255, (16, 32, 32), dtype=np.uint8))
    rgba = _write_npz(tmp_path / "rgba.npz", rng.integers(0, 255, (16, 32, 32, 4), dtype=np.uint8))
    for source in (gray, rgba):
        model_args, data_args, training_args = _tiny_recipe_args(tmp_path, source, max_steps=1)
        model_args.num_preview_images = 0
        data_args.eval_split = data_args.train_split
        assert "train_loss" in run_pretraining(model_args, data_args, training_args)


TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time, torch
    from transformers import TrainerCallback
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments
    from mimir_hf.training import finish_distributed

    out, mode = sys.argv[1], sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))

    class Images(torch.utils.data.Dataset):
        def __len__(self): return 32
        def __getitem__(self, i):
            with open(os.path.join(out, f"seen-{rank}.txt"), "a") as f:
                f.write(f"{i}\\n")
            return {"pixel_values": torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i))}

    class Slow(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if mode != "ddp":
                time.sleep(0.3)

    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 32, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64))
    args = MimirTrainingArguments(output_dir=out, per_device_train_batch_size=4, num_train_epochs=2 if mode != "ddp" else 1,
                                  logging_steps=1, save_steps=2, save_strategy="steps", report_to="none", disable_tqdm=True,
                                  seed=0, use_cpu=True, save_total_limit=2)
    trainer = MimirTrainer(model=model, args=args, train_dataset=Images(), callbacks=[Slow()])
    trainer.train(resume_from_checkpoint=(mode == "resume") or None)
    flat = torch.cat([p.detach().flatten() for p in trainer.accelerator.unwrap_model(trainer.model).parameters()])
    torch.save(flat, os.path.join(out, f"params-{rank}.pt"))
    if trainer.is_world_process_zero():
        losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
        json.dump(losses, open(os.path.join(out, "losses.json"), "w"))
    finish_distributed()
    """
)


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    return env


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    full, killed = tmp_path / "full", tmp_path / "killed"
    full.mkdir(), killed.mkdir()
    subprocess.run([sys.executable, str(script), str(full), "full"], check=True, env=_env(), capture_output=True, timeout=300)
    reference = json.loads((full / "losses.json").read_text())

    process = subprocess.Popen([sys.executable, str(script), str(killed), "first"], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoint-6" / "trainer_state.json").exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.1)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "losses.json").exists()

    subprocess.run([sys.executable, str(script), str(killed), "resume"], check=True, env=_env(), capture_output=True, timeout=300)
    resumed = json.loads((killed / "losses.json").read_text())
    assert sorted(resumed) == sorted(reference) and len(reference) == 16
    for step, loss in reference.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-6, abs=1e-7), step
    torch.testing.assert_close(torch.load(killed / "params-0.pt"), torch.load(full / "params-0.pt"))
