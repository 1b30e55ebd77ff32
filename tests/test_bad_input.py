"""Bad input gets a clear one-line error that names the file or the fix, never a silent run or a traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from mimir_hf.cli import USER_ERROR_EXIT_CODE, parse_recipe_args, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.evaluation import EvaluationArguments
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.pretraining.run import PretrainModelArguments
from mimir_hf.training.checkpoints import check_weights_readable
from mimir_hf.validation import check_device, check_threat_model_budget

REPO = Path(__file__).resolve().parents[1]
PRETRAIN = (PretrainModelArguments, DataArguments, MimirTrainingArguments)
FINETUNE = (ModelArguments, DataArguments, AdversarialTrainingArguments)
EVALUATE = (EvaluationArguments, DataArguments)


pytestmark = pytest.mark.usefixtures("library_logger_restored")


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_line_error(capsys, recipe: str, argv: list[str], monkeypatch) -> str:
    monkeypatch.delenv("MIMIR_DEBUG", raising=False)
    monkeypatch.delenv("ACCELERATE_DEBUG_MODE", raising=False)
    assert run_recipe(_recipe(recipe).main, argv) == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("max_steps", ["-5", "0"])
def test_a_training_length_transformers_would_ignore_is_refused(max_steps):
    with pytest.raises(ValueError, match=f"max_steps={max_steps}: give a positive number"):
        parse_recipe_args(PRETRAIN, ["--max_steps", max_steps])
    (_, _, args) = parse_recipe_args(PRETRAIN, ["--max_steps", "3"])
    assert args.max_steps == 3


def test_an_linf_budget_of_half_the_range_is_refused_with_what_was_meant(capsys, monkeypatch):
    with pytest.raises(ValueError, match=r"127.5/255 under L∞.*write 0.5/255.*--norm L2"):
        check_threat_model_budget(0.5)
    check_threat_model_budget(64 / 255)  # the sanity check's budget is still allowed
    check_threat_model_budget(0.5, norm="L2")
    line = _one_line_error(capsys, "evaluate", ["--epsilon", "0.5"], monkeypatch)
    assert "write 0.5/255" in line


def test_lowercase_norm_is_read_as_the_choice():
    (eval_args, _) = parse_recipe_args(EVALUATE, ["--norm", "l2", "--epsilon", "0.5"])
    assert eval_args.norm == "L2"
    (eval_args, _) = parse_recipe_args(EVALUATE, ["--norm", "LINF"])
    assert eval_args.norm == "Linf"


def test_uint8_images_holding_only_zero_and_one_are_refused(tmp_path):
    from mimir_hf.data.npz import load_npz_dataset

    path = tmp_path / "binary.npz"
    np.savez(path, images=np.random.default_rng(0).integers(0, 2, (8, 32, 32, 3), dtype=np.uint8), labels=np.zeros(8, int))
    with pytest.raises(ValueError, match=r"hold only 0 and 1.*\(x \* 255\)"):
        load_npz_dataset(str(path), "train")


def test_a_device_that_is_not_there_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU.*--device cpu"):
        check_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        check_device("gpu")
    check_device("cpu")
    assert "no CUDA GPU" in _one_line_error(capsys, "evaluate", ["--device", "cuda"], monkeypatch)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys, monkeypatch):
    config = tmp_path / "broken.yaml"
    config.write_text("dataset: builtin:digits\nattacks: [clean, pgd-20\nseed: 0\n")
    line = _one_line_error(capsys, "evaluate", ["--config", str(config)], monkeypatch)
    assert str(config) in line and "not valid YAML" in line and "line " in line


def test_a_truncated_weights_file_is_named(tmp_path, capsys, monkeypatch):
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=32, image_size=8, patch_size=4, num_labels=3))
    model.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    with pytest.raises(ValueError, match="model.safetensors cannot be read.*truncated"):
        check_weights_readable(tmp_path / "model")
    line = _one_line_error(capsys, "evaluate", ["--model_name_or_path", str(tmp_path / "model")], monkeypatch)
    assert str(weights) in line


def test_convert_reference_says_a_file_is_not_a_checkpoint_and_never_suggests_unsafe_loading(tmp_path, capsys, monkeypatch):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("hello")
    line = _one_line_error(capsys, "convert_reference", ["--checkpoint", str(not_a_checkpoint), "--output_dir",
                                                         str(tmp_path / "out")], monkeypatch)
    assert "is not a PyTorch checkpoint" in line and "weights_only=False" not in line

    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    pickled = tmp_path / "pickled.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, pickled)
    line = _one_line_error(capsys, "convert_reference", ["--checkpoint", str(pickled), "--output_dir",
                                                         str(tmp_path / "out")], monkeypatch)
    assert "Refusing to read" in line and "weights_only=False" not in line


@pytest.mark.parametrize(
    ("flag", "meant"),
    [("--lr", "--learning_rate"), ("--epochs", "--num_train_epochs"), ("--batch_size", "--per_device_train_batch_size"),
     ("--learning_rat", "--learning_rate")],
)
def test_unknown_flags_get_a_did_you_mean(flag, meant):
    with pytest.raises(ValueError, match=rf"Unknown option\(s\): {flag} \(did you mean {meant}\?\)"):
        parse_recipe_args(FINETUNE, [flag, "3"])


@pytest.mark.parametrize(("recipe", "own"), [("pretrain", "--mi_weight"), ("finetune", "--adversarial_method")])
def test_help_starts_with_config_and_the_recipes_own_options(recipe, own, capsys):
    with pytest.raises(SystemExit) as stopped:
        _recipe(recipe).main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    first_screen = "\n".join(text.splitlines()[:120])
    assert "--config FILE" in first_screen and own in first_screen
    assert "--output_dir" in text  # the stock options are still listed, last
    assert text.index(own) < text.index("transformers TrainingArguments (stock)") < text.index("--adam_epsilon")
