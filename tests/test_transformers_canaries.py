"""Canaries for the private transformers behaviour mimir-hf works around or relies on.

Each workaround overrides or keys on something private (`Trainer._load_from_checkpoint`,
`Trainer._load_best_model`, `Trainer._get_learning_rate`, `Trainer._prepare_inputs`,
`Trainer.model_accepts_loss_kwargs`, the `_is_hf_initialized` flag, the auto-mapping tables the
model cards and the publisher read). These tests fail loudly when upstream changes it: a spy or an
observable effect shows our override still runs, and a strict xfail shows the stock behaviour is
still broken; the day upstream fixes it, the xfail passes, strict turns that into a failure, and the
workaround can go.
"""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification, ViTMAEConfig, ViTMAEForPreTraining

import mimir_hf.training.checkpoints as checkpoints
from mimir_hf.finetuning import AdversarialTrainer, AdversarialTrainingArguments, mae_to_classifier, random_mae_encoder

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4)


def _data(n: int = 16) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(n, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return datasets.Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": labels.numpy()}).with_format("torch")


def _args(tmp_path, **overrides) -> AdversarialTrainingArguments:
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8, attack_steps=1,
                  eval_attack_steps=1, use_cpu=True, report_to="none", save_strategy="steps", save_steps=1,
                  logging_steps=1, disable_tqdm=True, learning_rate=1e-3, seed=0)
    values.update(overrides)
    return AdversarialTrainingArguments(**values)


def test_our_checkpoint_loading_runs_on_resume_and_on_best_model(tmp_path, monkeypatch):
    calls = []
    real = checkpoints.load_checkpoint_weights
    monkeypatch.setattr(checkpoints, "load_checkpoint_weights", lambda model, path: (calls.append(path), real(model, path)))
    model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3)
    AdversarialTrainer(model=model, args=_args(tmp_path / "a", max_steps=2), train_dataset=_data()).train()
    assert calls == []
    resumed = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3)
    AdversarialTrainer(model=resumed, args=_args(tmp_path / "a", max_steps=3), train_dataset=_data()).train(
        resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2")
    )
    assert calls == [str(tmp_path / "a" / "checkpoint-2")]  # Trainer._load_from_checkpoint is still called, and ours ran
    calls.clear()
    best = _args(tmp_path / "b", max_steps=2, eval_strategy="steps", eval_steps=1, load_best_model_at_end=True,
                 metric_for_best_model="eval_robust_accuracy")
    AdversarialTrainer(model=mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3), args=best,
                       train_dataset=_data(), eval_dataset=_data(8)).train()
    assert len(calls) == 1 and "checkpoint-" in calls[0]  # Trainer._load_best_model is still called, and ours ran


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="transformers #43701: Trainer's raw load_state_dict misses converted keys")
def test_stock_trainer_loading_restores_every_layer(tmp_path):
    """Fails while stock loading skips the transformer layers (so we override it); passes once fixed upstream."""
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**TINY, num_labels=3))
    model.save_pretrained(tmp_path / "checkpoint")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none"))
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="transformers 5.x: a ViTMAE built from a config skips its sin-cos init")
def test_stock_vit_mae_built_from_a_config_has_its_sincos_table():
    """Fails while the stock init leaves the table at zero (so MimirForPreTraining and
    `reset_mae_embeddings` re-run it); passes once fixed upstream."""
    stock = ViTMAEForPreTraining(ViTMAEConfig(**TINY))
    assert stock.vit.embeddings.position_embeddings.abs().sum() > 0


@pytest.mark.parametrize("kind", ["pretraining", "mean", "cls"])
def test_canary_private_key_conversion_matches_from_pretrained(tmp_path, kind):
    """Our checkpoint loading renames keys with transformers' private conversion mapping
    (`get_model_conversion_mapping`, `rename_source_key`); it must give exactly what the public
    `from_pretrained` loads, and need no tensor conversion, for every model our trainers train."""
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.training.checkpoints import converted_state_dict

    torch.manual_seed(0)
    if kind == "pretraining":
        model = MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16,
                                                 decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                                 decoder_intermediate_size=32))
    else:
        model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3, pooling=kind)
    model.save_pretrained(tmp_path)
    state = converted_state_dict(model, str(tmp_path))
    assert state is not None  # a renaming suffices: no tensor conversion for our models
    public = type(model).from_pretrained(tmp_path).state_dict()
    assert set(state) == set(public)
    for key, value in public.items():
        assert torch.equal(state[key], value), key


def test_canary_the_logged_learning_rate_comes_from_our_get_learning_rate(tmp_path):
    """`AdversarialTrainer._get_learning_rate` reports the head's lr, not the first (most decayed) group's.
    If the Trainer stopped calling the private hook to log the lr, the log would show the decayed one."""
    assert callable(getattr(Trainer, "_get_learning_rate", None))
    model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3)
    args = _args(tmp_path, max_steps=1, adversarial_method="none", layer_decay=0.5, lr_scheduler_type="constant",
                 save_strategy="no", base_learning_rate=None)
    trainer = AdversarialTrainer(model=model, args=args, train_dataset=_data())
    trainer.train()
    group_lrs = sorted({group["lr"] for group in trainer.optimizer.param_groups})
    assert group_lrs[0] < group_lrs[-1] == pytest.approx(1e-3)  # the decay made the groups differ
    logged = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert logged == [pytest.approx(1e-3)]


@pytest.mark.parametrize("stage", ["pretraining", "finetuning"])
def test_canary_prepare_inputs_moves_a_batch_to_the_device(tmp_path, stage):
    """Both trainers call the private `Trainer._prepare_inputs(inputs)` in evaluation (the attack needs the
    batch on the device): it must still take the collated mapping and return it, tensors on `args.device`."""
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments

    if stage == "pretraining":
        model = MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64))
        trainer = MimirTrainer(model=model, args=MimirTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    else:
        model = mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3)
        trainer = AdversarialTrainer(model=model, args=_args(tmp_path))
    batch = {"pixel_values": torch.rand(2, 3, 16, 16), "labels": torch.tensor([0, 1])}
    prepared = trainer._prepare_inputs(dict(batch))
    assert set(prepared) == set(batch)
    for key, value in batch.items():
        assert prepared[key].device == trainer.args.device and torch.equal(prepared[key].cpu(), value)


def test_canary_the_trainer_reads_model_accepts_loss_kwargs(tmp_path):
    """`MicroBatchMeanLossMixin` sets this attribute so that the Trainer divides our per-micro-batch loss by the
    accumulation steps. The stock Trainer must still set it from the model (True for a ViT, whose forward takes
    **kwargs: the case the mixin exists for) and our trainers must override it; the large-batch equivalence itself is
    tested in both stages (test_finetuning.py, test_pretraining.py)."""
    model = ViTForImageClassification(ViTConfig(**TINY, num_labels=3))
    stock = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "stock"), use_cpu=True, report_to="none"))
    assert stock.model_accepts_loss_kwargs is True
    ours = AdversarialTrainer(model=mae_to_classifier(random_mae_encoder(ViTMAEConfig(**TINY)), num_labels=3), args=_args(tmp_path))
    assert ours.model_accepts_loss_kwargs is False


def test_canary_auto_mapping_tables_name_our_stock_classes():
    """The model cards and the publisher read transformers' private model-type -> class-name tables to name the
    classes that load a checkpoint and to tell a classifier from a pretraining checkpoint."""
    import transformers
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_PRETRAINING_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    assert MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES["beit"] == "BeitForImageClassification"
    assert MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES["vit"] == "ViTForImageClassification"
    assert "vit_mae" not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES  # how a pretraining checkpoint is recognised
    assert MODEL_FOR_PRETRAINING_MAPPING_NAMES["vit_mae"] == "ViTMAEForPreTraining"
    assert {k: MODEL_MAPPING_NAMES[k] for k in ("beit", "vit", "vit_mae")} == {
        "beit": "BeitModel", "vit": "ViTModel", "vit_mae": "ViTMAEModel"
    }
    for table in (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, MODEL_FOR_PRETRAINING_MAPPING_NAMES, MODEL_MAPPING_NAMES):
        for model_type in ("beit", "vit", "vit_mae"):
            if model_type in table:
                assert hasattr(transformers, table[model_type]), table[model_type]


def test_canary_stock_file_names_are_transformers_own():
    """mimir_hf.artefacts spells the stock files' names; transformers keeps its own in `transformers.utils`."""
    from transformers.utils import CONFIG_NAME, IMAGE_PROCESSOR_NAME

    from mimir_hf.artefacts import IMAGE_PROCESSOR_FILE, MODEL_CONFIG_FILE

    assert (MODEL_CONFIG_FILE, IMAGE_PROCESSOR_FILE) == (CONFIG_NAME, IMAGE_PROCESSOR_NAME)


def test_canary_trainer_resumes_its_loader_through_get_resumed_dataloader():
    """`StreamingMixin` resumes a streamed run in this hook (the stock one re-reads every batch already
    trained); tests/test_streaming.py resumes through it. A transformers without it is refused there."""
    import inspect

    assert "get_resumed_dataloader" in inspect.getsource(Trainer._run_epoch)
