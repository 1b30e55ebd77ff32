"""recipes/evaluate.py: config + overrides, the report files, the exit code, the quickstart hint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "evaluate.py"




def load_recipe():
    spec = importlib.util.spec_from_file_location("evaluate_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_checkpoint(folder: Path) -> Path:
    """An untrained tiny ViT with the digits' ten class names, saved as a checkpoint the recipe loads."""
    torch.manual_seed(0)
    names = {i: str(i) for i in range(10)}
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=10, id2label=names, label2id={v: k for k, v in names.items()})
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


def test_recipe_evaluates_a_checkpoint_on_builtin_digits(tmp_path, capsys) -> None:
    digits_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "eval"
    code = load_recipe().main([
        "--model_name_or_path", str(tmp_path / "ckpt"), "--output_dir", str(out), "--max_eval_samples", "12",
        "--attacks", "clean", "pgd-3", "--epsilon_sweep", "64/255", "--no_progress", "true",
        "--fail_on_check", "true",
    ])
    data = json.loads((out / "robustness.json").read_text())
    assert data["dataset"] == "builtin:digits" and data["num_samples"] == 12 and data["split"] == "test"
    # a user's own model gets the full protocol (its sweep attack is PGD-20, the quickstart's PGD-10), and is told so
    assert set(data["attacks"]) == {"clean", "pgd-3", "pgd-20@eps=64/255"}
    assert f"Evaluating {tmp_path / 'ckpt'} with the full protocol" in capsys.readouterr().out
    assert (out / "recipe_config.yaml").is_file() and (out / "per_sample.npz").is_file()
    # an untrained ViT predicts one class: the favourite-class check fires and --fail_on_check sets the exit code
    assert not data["checks_passed"] and code == 3


def test_only_the_quickstart_classifier_gets_the_cut_down_settings() -> None:
    recipe = load_recipe()
    assert recipe._default_config([]) == recipe.QUICKSTART
    assert recipe._default_config(["--model_name_or_path", "./outputs/quickstart-finetune/"]) == recipe.QUICKSTART
    assert recipe._default_config(["--protocol", "robustbench"]) == recipe.ROBUSTBENCH_QUICKSTART
    assert recipe._default_config(["--model_name_or_path", "outputs/my-model"]) is None
    assert recipe._default_config(["--model-name-or-path=org/model"]) is None


def test_recipe_without_the_quickstart_classifier_says_what_to_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="recipes/finetune.py"):
        load_recipe().main([])


def test_recipe_rejects_unknown_options_and_bad_budgets(tmp_path) -> None:
    recipe = load_recipe()
    with pytest.raises(ValueError, match="must be >= 0"):
        recipe.main(["--model_name_or_path", str(tmp_path), "--epsilon=-8/255"])
    with pytest.raises(ValueError, match=r"Unknown option\(s\): --epsilonn \(did you mean --epsilon\?\)"):
        recipe.main(["--model_name_or_path", str(tmp_path), "--epsilonn", "8/255"])


def test_a_refused_evaluation_leaves_the_run_record_alone(tmp_path) -> None:
    """recipe_config.yaml records a run that happened: an evaluation refused before it ran must not replace
    the record of the one whose report is in the folder."""
    digits_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "recipe_config.yaml").write_text("epsilon: 8/255\n")  # the record of an earlier, accepted run
    recipe = load_recipe()
    with pytest.raises(ValueError, match="budget is 8/255"):
        recipe.main(["--protocol", "robustbench", "--dataset", "uoft-cs/cifar10", "--epsilon", "4/255",
                     "--model_name_or_path", str(tmp_path / "ckpt"), "--output_dir", str(out)])
    with pytest.raises(OSError, match="Cannot load an image classifier"):
        recipe.main(["--model_name_or_path", str(tmp_path / "nowhere"), "--output_dir", str(out)])
    assert (out / "recipe_config.yaml").read_text() == "epsilon: 8/255\n"
