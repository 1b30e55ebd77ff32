"""The finetuning/evaluation protocol the paper's numbers mean: no choice on test images, one lr rule,
the reference's weight decay, a processor that is never silently skipped, both classifier classes
end to end (evaluation, card)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from mimir_hf.cli import parse_recipe_args
from mimir_hf.data import DataArguments, hold_out_validation, load_image_processor, looks_like_test_split, make_image_processor
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
from mimir_hf.finetuning.run import _training_and_validation
from mimir_hf.modeling import MimirForPreTraining, mimir_config
from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments
from mimir_hf.training import DEFAULT_LEARNING_RATE

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import build_tiny_checkpoints, tiny_report  # noqa: E402


def numbered(n: int) -> Dataset:
    return Dataset.from_dict({"index": list(range(n)), "label": [i % 3 for i in range(n)]})


# ---------------------------------------------------------------- the validation split


def test_hold_out_is_seeded_disjoint_and_keeps_order():
    train, held = hold_out_validation(numbered(100), 20, seed=3)
    assert (len(train), len(held)) == (80, 20)
    assert set(train["index"]).isdisjoint(held["index"]) and set(train["index"]) | set(held["index"]) == set(range(100))
    assert train["index"] == sorted(train["index"]) and held["index"] == sorted(held["index"])
    again = hold_out_validation(numbered(100), 20, seed=3)[1]["index"]
    other = hold_out_validation(numbered(100), 20, seed=4)[1]["index"]
    assert held["index"] == again and held["index"] != other
    assert held["index"] != list(range(20))  # a draw, not the first rows
    for size in (0, 100):
        with pytest.raises(ValueError, match="validation_split_size must lie in"):
            hold_out_validation(numbered(100), size)


@pytest.mark.parametrize(
    ("split", "is_test"),
    [("test", True), ("test[:1000]", True), ("validation", True), ("val", True), ("train", False), ("train[:90%]", False)],
)
def test_test_split_names(split, is_test):
    assert looks_like_test_split(split) is is_test


def _finetune_args(tmp_path, *argv):
    return parse_recipe_args(
        (ModelArguments, DataArguments, AdversarialTrainingArguments),
        argv=["--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none", *argv],
    )


def test_validation_comes_from_training_images_when_asked(tmp_path):
    _, data_args, args = _finetune_args(tmp_path, "--validation_split_size", "30", "--eval_strategy", "epoch")
    train, validation = _training_and_validation(data_args, args, numbered(200))
    assert (len(train), len(validation)) == (170, 30)
    assert set(train["index"]).isdisjoint(validation["index"])


def test_selecting_on_the_test_split_is_warned(tmp_path, caplog):
    _, data_args, args = _finetune_args(
        tmp_path, "--dataset", "builtin:digits", "--eval_split", "test", "--max_eval_samples", "8",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true",
        "--metric_for_best_model", "eval_robust_accuracy",
    )
    with caplog.at_level(logging.WARNING, logger="mimir_hf.finetuning.run"):
        train, validation = _training_and_validation(data_args, args, numbered(50))
    assert len(train) == 50 and len(validation) == 8
    assert "selects the checkpoint on the 'test' split" in caplog.text and "validation_split_size" in caplog.text
    caplog.clear()
    _, data_args, args = _finetune_args(tmp_path, "--dataset", "builtin:digits", "--eval_strategy", "no")
    with caplog.at_level(logging.WARNING, logger="mimir_hf.finetuning.run"):
        assert _training_and_validation(data_args, args, numbered(50))[1] is None
    assert caplog.text == ""


# ---------------------------------------------------------------- one learning-rate rule


@pytest.mark.parametrize("args_class", [MimirTrainingArguments, AdversarialTrainingArguments])
def test_an_explicit_learning_rate_wins_over_the_scaling_rule(tmp_path, args_class):
    common = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--per_device_train_batch_size", "64",
              "--gradient_accumulation_steps", "2", "--base_learning_rate", "1.5e-4"]
    (scaled,) = parse_recipe_args((args_class,), argv=common)
    assert scaled.learning_rate == pytest.approx(1.5e-4 * 128 / 256)
    assert scaled.effective_batch_size == 128
    (explicit,) = parse_recipe_args((args_class,), argv=[*common, "--learning_rate", "1e-4"])
    assert explicit.learning_rate == 1e-4  # was silently replaced by 7.5e-05 before
    assert args_class(output_dir=str(tmp_path), use_cpu=True, base_learning_rate=None).learning_rate == DEFAULT_LEARNING_RATE


def test_pretraining_decays_the_cls_and_mask_tokens_as_the_reference(tmp_path):
    """timm's param_groups_weight_decay (the reference) exempts only 1-D parameters and biases."""
    model = MimirForPreTraining(
        mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                     decoder_num_attention_heads=2, decoder_intermediate_size=32)
    )
    args = MimirTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    decayed = set(MimirTrainer(model=model, args=args).get_decay_parameter_names(model))
    assert {"vit.embeddings.cls_token", "decoder.mask_token"} <= decayed  # excluded before: the old behaviour
    assert not any(name.endswith(".bias") or "layernorm" in name or "norm." in name for name in decayed)
    assert {"vit.embeddings.patch_embeddings.projection.weight", "decoder.decoder_pred.weight"} <= decayed
    # the sin-cos position tables may be listed, but they are frozen, so no optimizer group holds them
    assert not model.vit.embeddings.position_embeddings.requires_grad


# ---------------------------------------------------------------- the image processor is never skipped silently


def test_a_missing_processor_is_none_and_a_broken_one_an_error(tmp_path):
    assert load_image_processor(tmp_path) is None
    make_image_processor(32).save_pretrained(tmp_path)
    assert type(load_image_processor(tmp_path)).__name__ == type(make_image_processor(32)).__name__
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["image_processor_type"] = "NoSuchImageProcessor"
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not load"):
        load_image_processor(tmp_path)


def test_canary_cached_file_can_report_a_missing_entry(tmp_path):
    """load_image_processor relies on transformers' private `_raise_exceptions_for_missing_entries`."""
    from transformers.utils import cached_file

    assert cached_file(str(tmp_path), "preprocessor_config.json", _raise_exceptions_for_missing_entries=False) is None


def test_evaluation_refuses_a_checkpoint_whose_processor_does_not_load(tmp_path):
    from mimir_hf.evaluation.loading import load_classifier

    folders = build_tiny_checkpoints(tmp_path)
    classifier = folders["classifier"]
    config = json.loads((classifier / "preprocessor_config.json").read_text())
    config.update(image_processor_type="NoSuchImageProcessor")
    (classifier / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not load"):
        load_classifier(str(classifier), device="cpu")


# ---------------------------------------------------------------- both classifier classes downstream


@pytest.mark.parametrize(("pooling", "class_name"), [("mean", "BeitForImageClassification"), ("cls", "ViTForImageClassification")])
def test_evaluation_and_card_work_for_both_classes(tmp_path, pooling, class_name):
    from mimir_hf.evaluation import evaluate_robustness
    from mimir_hf.hub import render_model_card, validate_model_card

    folders = build_tiny_checkpoints(tmp_path, pooling=pooling)
    classifier = folders["classifier"]
    report = evaluate_robustness(
        str(classifier), torch.rand(8, 3, 16, 16), labels=torch.arange(8) % 3, attacks=["clean", "pgd-2", "pgd-feature-2"],
        epsilon_sweep=[], batch_size=8, output_dir=tmp_path / "eval", device="cpu", progress=False,
    )
    assert report.accuracy("pgd-2") <= report.accuracy("clean")
    assert (tmp_path / "eval" / "robustness.json").is_file()
    card = render_model_card(classifier, repo_id="org/tiny")
    validate_model_card(card, report=tiny_report(classifier))
    assert f"`{class_name}` checkpoint" in card
    assert ("mean of the patch tokens" in card) == (pooling == "mean")


def test_the_paper_grade_evaluation_uses_the_whole_test_set():
    from mimir_hf.evaluation import EvaluationArguments

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "evaluate_cifar10.yaml"
    eval_args, data_args = parse_recipe_args((EvaluationArguments, DataArguments), argv=["--config", str(config)])
    assert data_args.max_eval_samples is None and data_args.eval_split == "test"  # all 10,000, as RobustBench
    assert {"clean", "pgd-20", "autoattack"} <= set(eval_args.attacks) and eval_args.autoattack_version == "standard"
    subset, subset_data = parse_recipe_args((EvaluationArguments, DataArguments), argv=["--config", str(config), "--max_eval_samples", "1000"])
    assert subset_data.max_eval_samples == 1000  # the documented override


# ---------------------------------------------------------------- run plumbing


def test_resume_last_picks_the_newest_checkpoint_or_starts_afresh(tmp_path, caplog):
    from transformers import TrainingArguments

    from mimir_hf.training import resolve_resume

    args = TrainingArguments(output_dir=str(tmp_path / "run"), resume_from_checkpoint="last", use_cpu=True, report_to="none")
    with caplog.at_level(logging.WARNING, logger="mimir_hf.training.runs"):
        assert resolve_resume(args) is None  # no folder yet: afresh, and said
    assert "starting afresh" in caplog.text
    for step in (5, 20, 10):
        checkpoint = tmp_path / "run" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text("{}")  # written last by the Trainer: a complete checkpoint
    assert resolve_resume(args) == str(tmp_path / "run" / "checkpoint-20")  # by step number, not by name order
    args.resume_from_checkpoint = str(tmp_path / "run" / "checkpoint-5")
    assert resolve_resume(args) == str(tmp_path / "run" / "checkpoint-5")  # an explicit path is kept


@pytest.mark.parametrize("trainer_name", ["MimirTrainer", "AdversarialTrainer"])
def test_trainer_push_to_hub_is_refused_with_the_way_to_publish(tmp_path, trainer_name):
    import mimir_hf

    trainer_class = getattr(mimir_hf, trainer_name)
    args_class = MimirTrainingArguments if trainer_name == "MimirTrainer" else AdversarialTrainingArguments
    args = args_class(output_dir=str(tmp_path), use_cpu=True, report_to="none", push_to_hub=True, hub_model_id="org/x")
    model = (
        MimirForPreTraining(mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                         decoder_num_attention_heads=2, decoder_intermediate_size=32))
        if trainer_name == "MimirTrainer"
        else build_tiny_checkpoints(tmp_path / "ckpt")["classifier"]
    )
    if isinstance(model, Path):
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(model)
    with pytest.raises(ValueError, match="recipes/publish.py"):
        trainer_class(model=model, args=args)
