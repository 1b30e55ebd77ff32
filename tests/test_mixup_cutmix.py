"""Mixup / CutMix with soft targets in the AdversarialTrainer (Singh et al.'s ImageNet recipe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimir_hf.attacks import cross_entropy_objective
from mimir_hf.finetuning import (
    AdversarialTrainer,
    BatchMixing,
    MixParameters,
    cutmix_box,
    mix_images,
    smoothed_one_hot,
    soft_target_cross_entropy,
    soft_targets,
)
from test_finetuning import tensor_dataset, tiny_classifier, training_args

SINGH = dict(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=1.0, mixup_switch_prob=0.5, label_smoothing_factor=0.1)


def batch(n: int = 6, size: int = 8, num_classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, num_classes, (n,), generator=g)


# ---------------------------------------------------------------- the mixing itself


def test_mixup_is_the_convex_combination_with_the_reversed_batch():
    x, _ = batch()
    mixed = mix_images(x, MixParameters(lam=0.3))
    for i in range(len(x)):
        assert torch.allclose(mixed[i], 0.3 * x[i] + 0.7 * x[len(x) - 1 - i])
    assert mix_images(x, MixParameters(lam=1.0)) is x


def test_cutmix_pastes_the_box_of_the_reversed_batch():
    x, _ = batch(n=5)
    top, bottom, left, right = 1, 6, 2, 5
    mixed = mix_images(x, MixParameters(lam=1 - 15 / 64, box=(top, bottom, left, right)))
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    for i in range(5):
        assert torch.equal(mixed[i][:, inside], x[4 - i][:, inside])
        assert torch.equal(mixed[i][:, ~inside], x[i][:, ~inside])
    assert torch.equal(mixed[2], x[2])  # odd batch: the middle image is its own mirror
    assert not torch.equal(x[0][:, inside], x[4][:, inside])  # and the check above could fail


def test_cutmix_box_and_its_lambda_correction():
    rng = np.random.default_rng(0)
    height, width = 20, 30
    clipped = 0
    for _ in range(500):
        lam = float(rng.beta(1.0, 1.0))
        (top, bottom, left, right), corrected = cutmix_box(height, width, lam, rng)
        assert 0 <= top <= bottom <= height and 0 <= left <= right <= width
        area = (bottom - top) * (right - left)
        assert corrected == pytest.approx(1 - area / (height * width))
        full = (2 * (int(height * math.sqrt(1 - lam)) // 2)) * (2 * (int(width * math.sqrt(1 - lam)) // 2))
        assert area <= full
        clipped += area < full
        assert abs(full / (height * width) - (1 - lam)) < 0.25  # the unclipped box covers about 1 - lam
    assert clipped > 100  # the correction matters: boxes are often clipped at the border


def test_soft_targets_sum_to_one_and_weigh_the_pair_by_lambda():
    _, labels = batch(n=6, num_classes=5)
    for smoothing in (0.0, 0.1):
        targets = soft_targets(labels, 5, lam=0.3, smoothing=smoothing)
        assert torch.allclose(targets.sum(-1), torch.ones(6))
        smoothed = F.one_hot(labels, 5).float() * (1 - smoothing) + smoothing / 5
        assert torch.allclose(targets, 0.3 * smoothed + 0.7 * smoothed.flip(0))
    assert torch.equal(smoothed_one_hot(labels, 5, 0.0), F.one_hot(labels, 5).float())


def test_batch_draws_follow_the_configuration():
    mixing = BatchMixing(mixup_alpha=0.8, cutmix_alpha=1.0, probability=1.0, switch_probability=0.5)
    rng = np.random.default_rng(0)
    draws = [mixing.sample(rng, 32, 32) for _ in range(4000)]
    cutmix = [d for d in draws if d.box is not None]
    mixup = np.array([d.lam for d in draws if d.box is None])
    assert abs(len(cutmix) / len(draws) - 0.5) < 4 * math.sqrt(0.25 / len(draws))
    # Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.0962
    assert abs(mixup.mean() - 0.5) < 0.02 and abs(mixup.var() - 1 / (4 * 2.6)) < 0.01
    for d in cutmix:
        top, bottom, left, right = d.box
        assert d.lam == pytest.approx(1 - (bottom - top) * (right - left) / 1024)
    sometimes = BatchMixing(mixup_alpha=0.8, probability=0.3)
    unmixed = sum(d.lam == 1.0 for d in (sometimes.sample(rng, 8, 8) for _ in range(2000)))
    assert abs(unmixed / 2000 - 0.7) < 0.05
    assert all(BatchMixing(cutmix_alpha=1.0).sample(rng, 8, 8).box is not None for _ in range(50))
    assert all(BatchMixing(mixup_alpha=1.0).sample(rng, 8, 8).box is None for _ in range(50))
    assert BatchMixing().sample(rng, 8, 8) == MixParameters()


# ---------------------------------------------------------------- the losses


def test_soft_target_cross_entropy_is_the_hard_and_the_smoothed_cross_entropy():
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    assert torch.allclose(soft_target_cross_entropy(logits, smoothed_one_hot(labels, 5)), F.cross_entropy(logits, labels))
    smoothed = soft_target_cross_entropy(logits, smoothed_one_hot(labels, 5, 0.1))
    assert torch.allclose(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    log_p = F.log_softmax(logits, -1)  # (1 - e) CE + e * mean over classes of -log p
    assert torch.allclose(smoothed, (0.9 * -log_p[torch.arange(7), labels] + 0.1 * -log_p.mean(-1)).mean())
    targets = torch.softmax(torch.randn(7, 5, generator=torch.Generator().manual_seed(1)), -1)
    assert torch.allclose(soft_target_cross_entropy(logits, targets), -(targets * log_p).sum(-1).mean())
    # the attack's objective is the same quantity, per sample
    objective = cross_entropy_objective(lambda x: x, targets)
    assert torch.allclose(objective(logits), -(targets * log_p).sum(-1))
    with pytest.raises(ValueError, match="class probabilities"):
        soft_target_cross_entropy(logits, labels)


# ---------------------------------------------------------------- in the trainer


def test_arguments_refuse_bad_mixing_settings(tmp_path):
    for method in ("trades", "mart"):
        with pytest.raises(ValueError, match="use adversarial_method apgd or pgd"):
            training_args(tmp_path, adversarial_method=method, mixup_alpha=0.8)
    with pytest.raises(ValueError, match="must be >= 0"):
        training_args(tmp_path, cutmix_alpha=-1.0)
    for name in ("mixup_prob", "mixup_switch_prob"):
        with pytest.raises(ValueError, match=name):
            training_args(tmp_path, mixup_alpha=0.8, **{name: 1.5})
    assert not training_args(tmp_path).mixes_batches and training_args(tmp_path, cutmix_alpha=1.0).mixes_batches


@pytest.mark.parametrize("method", ["pgd", "apgd"])
def test_the_attack_runs_on_the_mixed_batch_and_maximises_the_soft_loss_it_trains_on(tmp_path, method):
    """lr 0: everything the step did can be recomputed from the batch and the documented draw."""
    model = tiny_classifier(num_labels=3).eval()
    args = training_args(
        tmp_path, adversarial_method=method, learning_rate=0.0, weight_decay=0.0, per_device_train_batch_size=16,
        max_steps=1, attack_steps=2, attack_random_start=False, attack_epsilon=0.1, **SINGH,
    )
    trainer = AdversarialTrainer(model=model, args=args, train_dataset=tensor_dataset(16))
    seen: dict = {}
    compute_loss, attack = trainer.compute_loss, trainer._attack

    def record_batch(model, inputs, *a, **k):
        seen["inputs"] = {key: value.clone() for key, value in inputs.items()}
        return compute_loss(model, inputs, *a, **k)

    def record_attack(unwrapped, objective, pixel_values, **budget):
        seen["objective"], seen["start"] = objective, pixel_values
        seen["adversarial"] = attack(unwrapped, objective, pixel_values, **budget)
        return seen["adversarial"]

    trainer.compute_loss, trainer._attack = record_batch, record_attack
    trainer.train()

    pixels, labels = seen["inputs"]["pixel_values"], seen["inputs"]["labels"]
    expected = BatchMixing(0.8, 1.0, 1.0, 0.5, 0.1).sample(np.random.default_rng([0, 0, 0, 0]), 16, 16)
    assert expected.lam < 1
    assert torch.equal(seen["start"], mix_images(pixels, expected))
    targets = soft_targets(labels, 3, expected.lam, 0.1)
    logits_fn = lambda x: model(pixel_values=x).logits  # noqa: E731
    with torch.no_grad():
        adversarial_logits = logits_fn(seen["adversarial"])
        per_sample = -(targets * F.log_softmax(adversarial_logits, -1)).sum(-1)
        assert torch.allclose(seen["objective"](seen["adversarial"]), per_sample, atol=1e-6)
    (log,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert log["loss"] == pytest.approx(float(per_sample.mean()), rel=1e-4)
    dominant = targets.argmax(-1)
    assert log["adversarial_accuracy"] == pytest.approx(float((adversarial_logits.argmax(-1) == dominant).float().mean()), abs=1e-4)
    assert float(soft_target_cross_entropy(adversarial_logits, targets)) > float(
        soft_target_cross_entropy(logits_fn(seen["start"]).detach(), targets)
    )  # the attack raised the loss it is trained on


def test_every_micro_batch_gets_its_own_draw_and_reruns_repeat_it(tmp_path):
    trainer = AdversarialTrainer(model=tiny_classifier(), args=training_args(tmp_path, mixup_alpha=0.8, seed=3))
    draws = []
    for step in (0, 0, 1, 1, 1):
        trainer.state.global_step = step
        draws.append(float(trainer._mixing_generator().random()))
    assert len(set(draws)) == 5
    assert trainer._mix_position == (1, 2)
    again = AdversarialTrainer(model=tiny_classifier(), args=training_args(tmp_path, mixup_alpha=0.8, seed=3))
    again.state.global_step = 1  # a run resumed at step 1 draws what the uninterrupted run drew there
    assert float(again._mixing_generator().random()) == draws[2]


def test_a_second_train_call_repeats_the_first_runs_draws(tmp_path):
    args = training_args(tmp_path, mixup_alpha=0.8, max_steps=1, gradient_accumulation_steps=2, learning_rate=0.0)
    trainer = AdversarialTrainer(model=tiny_classifier(), args=args, train_dataset=tensor_dataset(16))
    seeds = []
    original = trainer._mixing_generator

    def recording():
        generator = original()
        seeds.append(trainer._mix_position)
        return generator

    trainer._mixing_generator = recording
    trainer.train()
    trainer.train()  # starts at step 0 again: the same (step, micro-batch) seeds, not micro-batches 2 and 3
    assert seeds == [(0, 0), (0, 1), (0, 0), (0, 1)]


def test_a_step_with_the_whole_recipe_trains(tmp_path):
    model = tiny_classifier()
    before = model.classifier.weight.detach().clone()
    args = training_args(tmp_path, adversarial_method="apgd", attack_random_start=False, max_steps=2, ema_decay=0.9, **SINGH)
    trainer = AdversarialTrainer(model=model, args=args, train_dataset=tensor_dataset(16), eval_dataset=tensor_dataset(8, seed=1))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) and 0 <= entry["adversarial_accuracy"] <= 1 for entry in logs)
    assert not torch.equal(model.classifier.weight, before)
    metrics = trainer.evaluate()  # evaluation stays on clean images with hard labels
    assert 0 <= metrics["eval_accuracy"] <= 1 and 0 <= metrics["eval_robust_accuracy"] <= 1
