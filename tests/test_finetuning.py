"""Stage 2: conversion, losses, layer decay, AdversarialTrainer (GA, logging, robust validation)."""

from __future__ import annotations

import copy
import math

import datasets
import pytest
import torch
from transformers import ResNetConfig, ViTMAEConfig, ViTMAEForPreTraining

from mimir_hf.finetuning import (
    AdversarialTrainer,
    AdversarialTrainingArguments,
    ModelArguments,
    add_drop_path,
    build_classifier,
    default_head_init_std,
    interpolate_position_embeddings,
    mae_to_classifier,
    mart_loss,
    param_groups_layer_decay,
    pgd_at_loss,
    random_mae_encoder,
    reset_mae_embeddings,
    trades_loss,
)
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=16,
    patch_size=4,
    layer_norm_eps=1e-6,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
)


def tiny_mae(**overrides) -> ViTMAEForPreTraining:
    model = ViTMAEForPreTraining(ViTMAEConfig(**{**TINY, **overrides}))
    reset_mae_embeddings(model.vit)
    return model.eval()


def tiny_classifier(num_labels: int = 3):
    return mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=num_labels)


def tensor_dataset(n: int = 16, num_labels: int = 3, size: int = 16, seed: int = 0) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, size, size, generator=generator)
    labels = torch.randint(0, num_labels, (n,), generator=generator)
    return datasets.Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": labels.numpy()}).with_format("torch")


def training_args(tmp_path, **overrides) -> AdversarialTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        num_train_epochs=1,
        attack_steps=2,
        eval_attack_steps=2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return AdversarialTrainingArguments(**values)


# ---------------------------------------------------------------- conversion


def test_conversion_reproduces_mae_encoder_exactly(tmp_path):
    mae = tiny_mae()
    mae.save_pretrained(tmp_path / "mae")
    id2label = {0: "zero", 1: "one", 2: "two"}
    classifier = mae_to_classifier(str(tmp_path / "mae"), id2label=id2label).eval()

    assert classifier.config.model_type == "vit" and classifier.config.num_labels == 3
    assert classifier.config.label2id == {"zero": 0, "one": 1, "two": 2}
    assert not hasattr(classifier, "decoder")
    # every encoder weight carried over, including the fixed sin-cos table (not zeros, not re-initialised)
    mae_state = mae.vit.state_dict()
    for key, value in classifier.vit.state_dict().items():
        assert torch.equal(value, mae_state[key]), key
    grid = TINY["image_size"] // TINY["patch_size"]
    sincos = build_2d_sinusoidal_position_embedding(grid, grid, TINY["hidden_size"], cls_token=True)
    half = TINY["hidden_size"] // 2
    sincos = torch.cat([sincos[..., half:], sincos[..., :half]], dim=-1)
    assert torch.allclose(classifier.vit.embeddings.position_embeddings[0], sincos, atol=1e-6)
    assert classifier.vit.embeddings.position_embeddings.abs().sum() > 0

    pixels = torch.rand(3, 3, 16, 16)
    num_patches = grid * grid
    identity = torch.arange(num_patches, dtype=torch.float32).expand(3, num_patches)  # keep token order
    mae.config.mask_ratio = 0.0
    with torch.no_grad():
        expected = mae.vit(pixels, noise=identity).last_hidden_state
        got = classifier.vit(pixels).last_hidden_state
    assert torch.equal(expected, got)


def test_head_init_std_and_default():
    assert default_head_init_std(224) == 2e-5 and default_head_init_std(32) == 2e-2
    classifier = mae_to_classifier(tiny_mae(), num_labels=10, generator=torch.Generator().manual_seed(0))
    weight = classifier.classifier.weight
    assert torch.all(classifier.classifier.bias == 0)
    assert weight.abs().max() <= 2 * 2e-2 + 1e-9
    assert 0.01 < weight.std().item() < 0.02  # truncation at 2 std shrinks the std to ~0.88 std
    small = mae_to_classifier(tiny_mae(), num_labels=10, head_init_std=2e-5)
    assert small.classifier.weight.abs().max() <= 4e-5 + 1e-12


def test_conversion_interpolates_position_embeddings():
    mae = tiny_mae()
    classifier = mae_to_classifier(mae, num_labels=2, image_size=32)
    table = classifier.vit.embeddings.position_embeddings
    assert table.shape == (1, 1 + 8 * 8, 32) and classifier.config.image_size == 32
    assert torch.equal(table[:, 0], mae.vit.embeddings.position_embeddings[:, 0])
    # a smooth table resized with bicubic stays a resize of the same function; a constant table stays constant
    constant = torch.full((1, 1 + 16, 4), 0.5)
    assert torch.allclose(interpolate_position_embeddings(constant, 8), torch.full((1, 65, 4), 0.5), atol=1e-6)
    assert torch.equal(interpolate_position_embeddings(constant, 4), constant)
    with torch.no_grad():
        assert classifier(torch.rand(2, 3, 32, 32)).logits.shape == (2, 2)


def test_conversion_errors(tmp_path):
    ResNetConfig().save_pretrained(tmp_path / "resnet")
    with pytest.raises(ValueError, match="'resnet' checkpoint"):
        mae_to_classifier(str(tmp_path / "resnet"), num_labels=2)
    with pytest.raises(ValueError, match="does not divide the resolution 18"):
        mae_to_classifier(tiny_mae(), num_labels=2, image_size=18)
    with pytest.raises(ValueError, match="do not match"):
        mae_to_classifier(tiny_mae(), num_labels=4, id2label={0: "a", 1: "b", 2: "c"})
    with pytest.raises(FileNotFoundError, match="accelerate launch recipes/pretrain.py"):
        build_classifier(ModelArguments(model_name_or_path=str(tmp_path / "outputs/quickstart-pretrain")), num_labels=2)


def test_zero_position_table_warns():
    mae = ViTMAEForPreTraining(ViTMAEConfig(**TINY))  # transformers 5.x: built from config, sin-cos init skipped
    if mae.vit.embeddings.position_embeddings.any():
        pytest.skip("this transformers version initialises the MAE position table")
    with pytest.warns(UserWarning, match="position embeddings are all zero"):
        mae_to_classifier(mae, num_labels=2)


def test_scratch_classifier_uses_mae_init():
    args = ModelArguments(model_name_or_path="scratch", model_size="vit-t", hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    classifier = build_classifier(args, num_labels=3, image_size=32)
    assert classifier.config.patch_size == 2 and classifier.config.hidden_size == 32
    assert classifier.vit.embeddings.position_embeddings.abs().sum() > 0


# ---------------------------------------------------------------- losses, optimizer groups, drop path


def test_losses():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.randint(0, 4, (6,))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(pgd_at_loss(logits, labels), ce)
    assert torch.allclose(trades_loss(logits, logits, labels, beta=6.0), ce, atol=1e-6)  # KL(p‖p) = 0
    adversarial = logits + torch.randn(6, 4)
    assert trades_loss(logits, adversarial, labels, beta=6.0) > ce
    value = mart_loss(logits.requires_grad_(), adversarial, labels, beta=6.0)
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None


def test_layer_decay_param_groups():
    model = tiny_classifier()
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5, learning_rate=1.0)
    by_name = {name: group for group in groups for name in group["param_names"]}
    assert len(by_name) == sum(1 for p in model.parameters() if p.requires_grad)
    assert by_name["classifier.weight"]["lr"] == 1.0 and by_name["vit.layernorm.weight"]["lr"] == 1.0
    assert by_name["vit.layers.1.mlp.fc1.weight"]["lr"] == 0.5
    assert by_name["vit.layers.0.mlp.fc1.weight"]["lr"] == 0.25
    for name in ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings", "vit.embeddings.patch_embeddings.projection.weight"):
        assert by_name[name]["lr"] == 0.125
    no_decay = ("bias", "layernorm", "cls_token", "position_embeddings")
    for name, group in by_name.items():
        assert group["weight_decay"] == (0.0 if any(part in name for part in no_decay) else 0.05), name


def test_drop_path_only_in_training():
    model = tiny_classifier()
    pixels = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        before = model.eval()(pixels).logits
        handles = add_drop_path(model, 0.5)
        assert len(handles) == 1  # block 0 has rate 0
        assert torch.equal(model(pixels).logits, before)
        model.train()
        assert not torch.allclose(model(pixels).logits, before)
    for handle in handles:
        handle.remove()


def test_arguments_validation(tmp_path):
    with pytest.raises(ValueError, match="adversarial_method"):
        training_args(tmp_path, adversarial_method="fgsm")
    with pytest.raises(ValueError, match="pixel units"):
        training_args(tmp_path, attack_epsilon=8.0)
    with pytest.raises(ValueError, match="TRADES needs attack_random_start"):
        training_args(tmp_path, adversarial_method="trades", attack_random_start=False)
    args = training_args(tmp_path, eval_attack_steps=10)
    assert math.isclose(args.resolved_eval_attack_step_size, 2 / 255)
    assert training_args(tmp_path, num_train_epochs=50, warmup_epochs=5).get_warmup_steps(1000) == 100


# ---------------------------------------------------------------- the trainer


@pytest.mark.parametrize("method", ["pgd", "none"])
def test_gradient_accumulation_matches_large_batch(tmp_path, method):
    """4 × accumulation 2 must give the update of 8 × 1 (transformers 5.x would double it for ViT)."""
    data = tensor_dataset(8)
    start = tiny_classifier()
    results = []
    for batch, accumulation in ((8, 1), (4, 2)):
        model = copy.deepcopy(start)
        args = training_args(
            tmp_path,
            adversarial_method=method,
            attack_random_start=False,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",  # Adam's first step is invariant to the loss scale and would hide the bug
            learning_rate=1.0,
            weight_decay=0.0,
            layer_decay=1.0,
            max_grad_norm=0.0,  # clipping would rescale both updates to the same norm
        )
        AdversarialTrainer(model=model, args=args, train_dataset=data).train()
        results.append(model)
    start_weight = start.classifier.weight
    delta_full = results[0].classifier.weight - start_weight
    delta_accumulated = results[1].classifier.weight - start_weight
    assert delta_full.abs().max() > 1e-4
    assert torch.allclose(delta_full, delta_accumulated, atol=1e-5, rtol=1e-3)


def test_training_logs_accuracies_and_base_lr(tmp_path):
    args = training_args(tmp_path, base_learning_rate=0.05, per_device_train_batch_size=8, gradient_accumulation_steps=2)
    trainer = AdversarialTrainer(model=tiny_classifier(), args=args, train_dataset=tensor_dataset(16))
    assert math.isclose(args.learning_rate, 0.05 * 16 / 256)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(0 <= entry["clean_accuracy"] <= 1 and 0 <= entry["adversarial_accuracy"] <= 1 for entry in logs)


@pytest.mark.parametrize("method", ["trades", "mart"])
def test_trades_and_mart_train(tmp_path, method):
    model = tiny_classifier()
    before = model.classifier.weight.detach().clone()
    trainer = AdversarialTrainer(model=model, args=training_args(tmp_path, adversarial_method=method, max_steps=1), train_dataset=tensor_dataset(8))
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    assert not torch.equal(model.classifier.weight, before)


def test_label_count_mismatch_is_a_clear_error(tmp_path):
    trainer = AdversarialTrainer(model=tiny_classifier(num_labels=2), args=training_args(tmp_path, max_steps=1), train_dataset=tensor_dataset(8, num_labels=3, seed=1))
    with pytest.raises(ValueError, match="label count of the model does not match"):
        trainer.train()


@pytest.mark.slow
def test_robust_validation_and_best_model(tmp_path):
    data = tensor_dataset(16)
    args = training_args(
        tmp_path,
        num_train_epochs=3,
        learning_rate=3e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_robust_accuracy",
        eval_attack_steps=3,
        eval_attack_epsilon=16 / 255,
    )
    trainer = AdversarialTrainer(model=tiny_classifier(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_robust_accuracy" in entry]
    assert len(evals) == 3
    for entry in evals:
        assert 0 <= entry["eval_robust_accuracy"] <= entry["eval_accuracy"] <= 1
    assert trainer.state.best_metric == max(entry["eval_robust_accuracy"] for entry in evals)
    best = next(entry for entry in evals if entry["eval_robust_accuracy"] == trainer.state.best_metric)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    # the weights now in the trainer are the best checkpoint's: same (seeded) evaluation as back then
    again = trainer.evaluate()
    assert math.isclose(again["eval_loss"], best["eval_loss"], rel_tol=1e-5)
    assert again["eval_robust_accuracy"] == best["eval_robust_accuracy"]
