"""The recipes' command line: values read as YAML reads them, abbreviations refused, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimir_hf.cli import USER_ERROR_EXIT_CODE, parse_recipe_args, prepare_launch_environment, run_recipe
from mimir_hf.data import DataArguments
from mimir_hf.evaluation import EvaluationArguments
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.pretraining.run import PretrainModelArguments

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("library_logger_restored")
PRETRAIN = (PretrainModelArguments, DataArguments, MimirTrainingArguments)
EVALUATE = (EvaluationArguments, DataArguments)


def test_a_negative_budget_is_a_value_not_a_flag():
    # argparse alone stops at "expected one argument"; the budget check must get to say what is wrong
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        parse_recipe_args(EVALUATE, ["--epsilon", "-8/255"])
    (_, _, args) = parse_recipe_args(PRETRAIN, ["--output_dir", "out", "--adam_beta1", "-.5"])
    assert args.adam_beta1 == -0.5


@pytest.mark.parametrize("argv", [["--attacks", "[clean, pgd-20]"], ["--attacks", "[clean,", "pgd-20]"], ["--attacks", "clean", "pgd-20"]])
def test_bracketed_lists_read_as_yaml_reads_them(argv):
    eval_args, data_args = parse_recipe_args(EVALUATE, [*argv, "--epsilon_sweep", "[2/255, 4/255]", "--max_eval_samples", "4"])
    assert list(eval_args.attacks) == ["clean", "pgd-20"]
    assert list(eval_args.epsilon_sweep) == ["2/255", "4/255"]
    assert data_args.max_eval_samples == 4  # the flag after the list is still a flag


def test_abbreviated_flags_are_refused_with_the_full_name():
    with pytest.raises(ValueError, match=r"--num_train_epoch \(did you mean --num_train_epochs\?\)"):
        parse_recipe_args(PRETRAIN, ["--num_train_epoch", "3"])


def test_a_bad_value_is_one_sentence_not_the_usage():
    with pytest.raises(ValueError, match=r"^Argument --num_train_epochs/--num-train-epochs: invalid float value: 'abc'\. Run with --help"):
        parse_recipe_args(PRETRAIN, ["--num_train_epochs", "abc"])


def test_pin_memory_follows_the_device_unless_set(monkeypatch):
    monkeypatch.setattr("mimir_hf.cli._has_accelerator", lambda: False)
    (_, _, args) = parse_recipe_args(PRETRAIN, ["--output_dir", "out"])
    assert args.dataloader_pin_memory is False
    for explicit in (["--dataloader_pin_memory", "true"], ["--dataloader-pin-memory=true"]):
        (_, _, args) = parse_recipe_args(PRETRAIN, ["--output_dir", "out", *explicit])
        assert args.dataloader_pin_memory is True  # an explicit value is never overwritten
    monkeypatch.setattr("mimir_hf.cli._has_accelerator", lambda: True)
    (_, _, args) = parse_recipe_args(PRETRAIN, ["--output_dir", "out"])
    assert args.dataloader_pin_memory is True


def test_a_multi_process_launch_without_gpus_is_cpu_ddp(monkeypatch):
    monkeypatch.setattr("mimir_hf.cli._has_accelerator", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "")  # records the original state, so what the function sets is undone
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    prepare_launch_environment()
    assert "ACCELERATE_USE_CPU" not in os.environ  # a single process is left alone
    monkeypatch.setenv("WORLD_SIZE", "2")
    prepare_launch_environment()
    assert os.environ["ACCELERATE_USE_CPU"] == "true"
    monkeypatch.setenv("ACCELERATE_USE_CPU", "false")
    prepare_launch_environment()
    assert os.environ["ACCELERATE_USE_CPU"] == "false"  # an explicit setting is kept


def test_run_recipe_turns_user_errors_into_one_line(capsys, monkeypatch):
    monkeypatch.delenv("MIMIR_DEBUG", raising=False)
    monkeypatch.delenv("ACCELERATE_DEBUG_MODE", raising=False)

    def main(argv):
        raise FileNotFoundError(f"Checkpoint {argv[-1]!r} does not exist.\nRun the pretraining first.")

    assert run_recipe(main, ["--model_name_or_path", "missing"]) == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Checkpoint 'missing' does not exist. Run the pretraining first.")
    with pytest.raises(FileNotFoundError):  # --debug: the traceback
        run_recipe(main, ["--debug", "--model_name_or_path", "missing"])
    monkeypatch.setenv("MIMIR_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_recipe(main, ["missing"])

    def buggy(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_recipe(buggy, [])
    # `--debug <option>` is TrainingArguments.debug and reaches the recipe
    assert run_recipe(lambda argv: argv, ["--debug", "underflow_overflow"]) == 0
    assert run_recipe(lambda argv: 3, []) == 3


@pytest.mark.slow
def test_recipe_user_error_is_one_line_under_accelerate_launch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MIMIR_DEBUG", "ACCELERATE_DEBUG_MODE")}
    env["OMP_NUM_THREADS"] = "1"
    missing = str(tmp_path / "no-such-checkpoint")
    command = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--config_file",
               str(REPO / "recipes/accelerate_configs/single_process.yaml"), str(REPO / "recipes/finetune.py"),
               "--model_name_or_path", missing, "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: Pretrained checkpoint {missing!r} does not exist. (run with --debug for the traceback)"]
    # the recipe itself exits with 2 (accelerate launch -q reports any failure as 1)
    direct = subprocess.run([sys.executable, str(REPO / "recipes/finetune.py"), "--model_name_or_path", missing],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert direct.returncode == USER_ERROR_EXIT_CODE and "Traceback" not in direct.stderr


RECIPES_WITH_USER_ERRORS = ("pretrain", "finetune", "evaluate", "publish", "compare", "convert_reference")


@pytest.mark.parametrize("name", RECIPES_WITH_USER_ERRORS)
def test_every_recipe_runs_through_run_recipe(name):
    """One clear line and exit 2 for a user error, whichever recipe the user typed."""
    source = (REPO / "recipes" / f"{name}.py").read_text()
    assert "sys.exit(run_recipe(main" in source


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [("compare", ["--evaluations", "only-one"], "error: "), ("convert_reference", [], "--checkpoint and --output_dir are required")],
)
def test_the_newer_recipes_report_a_user_error_in_one_line(name, argv, message, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert run_recipe(module.main, argv) == USER_ERROR_EXIT_CODE
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0]
