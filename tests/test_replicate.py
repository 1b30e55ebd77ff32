"""recipes/replicate_cifar10.py: stage planning, the results table, and a micro-scale end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "configs" / "replicate_cpu"


def _load_driver():
    spec = importlib.util.spec_from_file_location("replicate_cifar10", ROOT / "recipes" / "replicate_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


driver = _load_driver()


def _write_npz_data(folder: Path, num_train: int = 64, num_test: int = 16) -> Path:
    """Random uint8 images in the shared CIFAR-10 layout (train_batch_1.npz + test.npz)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train_batch_1", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(count, dtype=np.int64) % 10
        np.savez(folder / f"{name}.npz", images=images, labels=labels)
    return folder


def test_configs_share_everything_but_the_method(tmp_path):
    mae = yaml.safe_load((CONFIG_DIR / "pretrain_mae.yaml").read_text())
    mimir = yaml.safe_load((CONFIG_DIR / "pretrain_mimir.yaml").read_text())
    differ = {k for k in mae.keys() | mimir.keys() if mae.get(k) != mimir.get(k)}
    assert differ == {"attack_steps", "mi_weight", "output_dir"}
    assert (mae["attack_steps"], mae["mi_weight"]) == (0, 0.0)
    assert mimir["attack_steps"] == 1 and mimir["mi_weight"] == 1e-5 and mimir["mi_sigma"] == 5.0
    assert abs(mimir["attack_epsilon"] - 8 / 255) < 1e-12 and abs(mimir["attack_step_size"] - 10 / 255) < 1e-12
    finetune = yaml.safe_load((CONFIG_DIR / "finetune.yaml").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "max_train_samples", "seed"):
        assert finetune[key] == mimir[key], key  # scratch gets the pretrained architecture, same data
    evaluate = yaml.safe_load((CONFIG_DIR / "evaluate.yaml").read_text())
    assert evaluate["max_eval_samples"] == 1000 and evaluate["epsilon"] == "8/255" and evaluate["step_size"] == "2/255"
    assert {"clean", "pgd-20", "autoattack"} <= set(evaluate["attacks"])


@pytest.mark.slow  # imports transformers' Trainer stack: ~10 s on a shared 2-core machine
def test_every_config_parses_with_its_recipe():
    from mimir_hf.cli import parse_recipe_args
    from mimir_hf.data import DataArguments
    from mimir_hf.evaluation import EvaluationArguments
    from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
    from mimir_hf.pretraining import MimirTrainingArguments
    from mimir_hf.pretraining.run import PretrainModelArguments

    for name in ("pretrain_mae", "pretrain_mimir"):
        parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments),
                          ["--config", str(CONFIG_DIR / f"{name}.yaml"), "--use_cpu", "true"])
    parse_recipe_args((ModelArguments, DataArguments, AdversarialTrainingArguments),
                      ["--config", str(CONFIG_DIR / "finetune.yaml"), "--use_cpu", "true"])
    parse_recipe_args((EvaluationArguments, DataArguments), ["--config", str(CONFIG_DIR / "evaluate.yaml")])


def test_plan_orders_stages_and_applies_overrides(tmp_path):
    args = driver.parse_args(["--output_dir", str(tmp_path), "--data_dir", "/data/c10", "--scale_factor", "0.5",
                              "--arms", "c,a", "--autoattack_version", "standard"])
    stages = driver.plan_stages(args)
    assert [s.name for s in stages] == ["pretrain-mimir", "finetune-scratch", "finetune-mimir", "eval-scratch", "eval-mimir"]
    base = yaml.safe_load((CONFIG_DIR / "finetune.yaml").read_text())["max_train_samples"]
    finetune_mimir = stages[2].command("python")
    assert finetune_mimir[finetune_mimir.index("--model_name_or_path") + 1] == str(tmp_path / "pretrain-mimir")
    assert finetune_mimir[finetune_mimir.index("--max_train_samples") + 1] == str(int(base * 0.5))
    assert "--resume_from_checkpoint" not in finetune_mimir
    evaluation = stages[3].command("python")
    assert evaluation[evaluation.index("--autoattack_version") + 1] == "standard"
    assert evaluation[evaluation.index("--dataset") + 1] == "/data/c10"
    with pytest.raises(SystemExit):
        driver.parse_args(["--arms", "a,d"])


def test_results_come_only_from_the_reports(tmp_path):
    args = driver.parse_args(["--output_dir", str(tmp_path), "--arms", "a,c"])
    report = {
        "num_samples": 4, "threat_model": {"epsilon": 8 / 255},
        "attacks": {"clean": {"accuracy": 0.75}, "pgd-20": {"accuracy": 0.5},
                    "autoattack": {"accuracy": 0.25, "version": "custom", "attacks": ["apgd-ce", "apgd-t"]}},
        "worst_case": {"accuracy": 0.25, "attacks": ["clean", "pgd-20", "autoattack"]},
        "checks": [{"name": "x", "passed": True}], "checks_passed": True,
    }
    (tmp_path / "eval-mimir").mkdir()
    (tmp_path / "eval-mimir" / "robustness.json").write_text(json.dumps(report))
    log = {"pretrain-mimir": {"wall_time_seconds": 65.0}, "finetune-mimir": {"wall_time_seconds": 5.0}}
    results = driver.write_results(args, log)
    scratch, mimir = results["arms"]
    assert scratch["missing"] and mimir["accuracy"] == {"clean": 0.75, "pgd-20": 0.5, "autoattack": 0.25}
    markdown = (tmp_path / "results.md").read_text()
    assert "| (c) MIMIR -> PGD-AT | 75.0 | 50.0 | 25.0 | 25.0 | 4 | 1m05s | 5s | — | passed |" in markdown
    assert "not evaluated" in markdown and "apgd-ce, apgd-t" in markdown
    assert json.loads((tmp_path / "results.json").read_text())["arms"][1]["worst_case"]["accuracy"] == 0.25
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    assert results["paired"] == {"skipped": "fewer than two arms were evaluated"}
    assert "No paired statistics: fewer than two arms were evaluated" in markdown


def test_results_carry_the_paired_statistics_of_the_library(tmp_path) -> None:
    from evaluation_folders import pair_of_folders

    from mimir_hf.evaluation import compare_evaluations, mcnemar_exact

    # two evaluations in the evaluator's format; under AutoAttack 3 images favour scratch, 10 MIMIR
    scratch, mimir = pair_of_folders(tmp_path / "made", n=40, only_first=3, only_second=10)
    scratch.rename(tmp_path / "eval-scratch")
    mimir.rename(tmp_path / "eval-mimir")
    args = driver.parse_args(["--output_dir", str(tmp_path), "--arms", "a,c", "--bootstrap_samples", "500",
                              "--bootstrap_seed", "3"])
    results = driver.write_results(args, {})
    paired = results["paired"]
    assert [m["name"] for m in paired["metrics"]] == ["clean", "pgd-20", "autoattack", "worst case",
                                                      "(clean + autoattack) / 2"]
    pair = next(m for m in paired["metrics"] if m["name"] == "autoattack")["pairs"][0]
    assert (pair["first"], pair["second"], pair["only_first_correct"], pair["only_second_correct"]) == ("scratch", "mimir", 3, 10)
    assert pair["mcnemar_p"] == mcnemar_exact(3, 10)
    same = compare_evaluations([tmp_path / "eval-scratch", tmp_path / "eval-mimir"], names=["scratch", "mimir"],
                               attacks=list(driver.HEADLINE_ATTACKS), bootstrap_samples=500, seed=3)
    assert paired == json.loads(json.dumps(same.to_dict()))  # exactly what recipes/compare.py computes
    assert json.loads((tmp_path / "results.json").read_text())["paired"] == paired
    markdown = (tmp_path / "results.md").read_text()
    assert "## Paired statistics (same test images)" in markdown
    assert "| autoattack | scratch − mimir | −17.5 [" in markdown and "| 3 | 10 | 0.092 | 0.092 |" in markdown

    # arms evaluated on different images: the table is still written, with the reason in place of the tests
    with np.load(tmp_path / "eval-mimir" / "per_sample.npz") as data:
        arrays = dict(data)
    arrays["labels"] = (arrays["labels"] + 1) % 10
    np.savez_compressed(tmp_path / "eval-mimir" / "per_sample.npz", **arrays)
    results = driver.write_results(args, {})
    assert "not of the same images" in results["paired"]["skipped"]
    assert "No paired statistics: Evaluations 'scratch'" in (tmp_path / "results.md").read_text()


PAPER_SET = ROOT / "recipes" / "configs" / "replicate_paper.yaml"


def test_the_paper_config_set_launches_training_through_accelerate(tmp_path):
    args = driver.parse_args(["--config_set", str(PAPER_SET), "--data_dir", "/data/c10", "--output_dir", str(tmp_path),
                              "--finetune_args", "--num_train_epochs 1"])
    stages = driver.plan_stages(args)
    assert len(stages) == 8
    for stage in stages:
        command = stage.command("python")
        assert stage.config.is_file()
        if stage.kind == "eval":
            assert command[1].endswith("evaluate.py") and Path(command[3]).name == "evaluate_cifar10.yaml"
        else:
            assert command[1:6] == ["-m", "accelerate.commands.launch", "-q", "--config_file", str(ROOT / "recipes/accelerate_configs/multi_gpu.yaml")]
    finetune = stages[3].command("python")
    # the set's defaults first, the command line's after (the later flag wins)
    assert finetune[-2:] == ["--num_train_epochs", "1"] and "--data_seed" in finetune
    assert [Path(s.config).name for s in stages[:3]] == [
        "pretrain_cifar10_vit_t_mae.yaml", "pretrain_cifar10_vit_t.yaml", "finetune_cifar10_vit_t.yaml"]
    # the shared finetune config keeps the pretrained arms' layer decay; only scratch trains without it
    layer_decay = {s.name: s.overrides[s.overrides.index("--layer_decay") + 1] for s in stages if "--layer_decay" in s.overrides}
    assert layer_decay == {"finetune-scratch": "1.0"}
    plain = driver.parse_args(["--config_set", str(PAPER_SET), "--accelerate_config", "none", "--data_dir", "x"])
    assert all(s.accelerate_config is None for s in driver.plan_stages(plain))
    with pytest.raises(SystemExit):
        driver.parse_args(["--accelerate_config", str(tmp_path / "missing.yaml")])
    with pytest.raises(SystemExit):
        driver.parse_args(["--num_arm", "a"])  # abbreviations are refused


@pytest.mark.slow  # two processes importing torch
def test_a_stage_command_runs_under_accelerate_launch(tmp_path):
    """The launcher prefix the driver builds is a working `accelerate launch` (the recipe's --help through it)."""
    import os
    import subprocess

    single = ROOT / "recipes" / "accelerate_configs" / "single_process.yaml"
    args = driver.parse_args(["--accelerate_config", str(single), "--data_dir", "x", "--output_dir", str(tmp_path), "--arms", "c"])
    command = driver.plan_stages(args)[0].command(sys.executable)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "-q"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--mi_weight" in result.stdout and "were not passed" not in result.stderr


@pytest.mark.slow  # reads the .npz data through `datasets`: ~10 s on a shared 2-core machine
def test_the_data_dir_is_checked_before_any_stage(tmp_path, monkeypatch, capsys):
    def no_stage(*args, **kwargs):
        raise AssertionError("a stage started")

    monkeypatch.setattr(driver, "run_stages", no_stage)
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match="--data_dir is required"):
        driver.main(["--output_dir", out])
    with pytest.raises(SystemExit, match="does not exist"):
        driver.main(["--output_dir", out, "--data_dir", str(tmp_path / "nowhere")])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "val.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(SystemExit, match="no readable split 'test'"):
        driver.main(["--output_dir", out, "--data_dir", str(wrong)])
    assert not (tmp_path / "out").exists()  # nothing was started or written
    monkeypatch.setattr(driver, "run_stages", lambda stages, args: {})
    monkeypatch.setattr(driver, "write_results", lambda args, log: None)
    assert driver.main(["--output_dir", out, "--data_dir", str(_write_npz_data(tmp_path / "data"))]) == 0


@pytest.mark.slow
def test_micro_end_to_end_then_skip_existing(tmp_path, capsys):
    data = _write_npz_data(tmp_path / "data")
    out = tmp_path / "out"
    tiny = "--hidden_size 32 --num_hidden_layers 1 --num_attention_heads 2 --per_device_train_batch_size 16"
    argv = [
        "--data_dir", str(data), "--output_dir", str(out), "--max_steps", "2", "--max_train_samples", "64",
        "--max_eval_samples", "16",
        "--pretrain_args", f"{tiny} --num_preview_images 0 --save_strategy no --logging_steps 1",
        "--finetune_args", f"{tiny} --save_strategy no --logging_steps 1 --attack_steps 1",
        "--autoattack_version", "custom",
        "--eval_args", "--batch_size 16 --no_progress true --autoattack_attacks apgd-ce",
    ]
    assert driver.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["name"] for row in results["arms"]] == ["scratch", "mae", "mimir"]
    for row in results["arms"]:
        assert not row.get("missing")
        assert row["num_samples"] == 16
        assert set(row["accuracy"]) == {"clean", "pgd-20", "autoattack"}
        assert row["wall_time_seconds"][f"finetune-{row['name']}"] > 0
        report = json.loads((out / f"eval-{row['name']}" / "robustness.json").read_text())
        assert row["worst_case"]["accuracy"] == report["worst_case"]["accuracy"]
    mimir_config = yaml.safe_load((out / "pretrain-mimir" / "recipe_config.yaml").read_text())
    mae_config = yaml.safe_load((out / "pretrain-mae" / "recipe_config.yaml").read_text())
    assert (mimir_config["attack_steps"], mae_config["attack_steps"], mae_config["mi_weight"]) == (1, 0, 0.0)
    finetunes = [yaml.safe_load((out / f"finetune-{n}" / "recipe_config.yaml").read_text()) for n in ("scratch", "mae", "mimir")]
    run_names = {"model_name_or_path", "output_dir", "logging_dir", "run_name"}
    for config in finetunes[1:]:
        differ = {k for k in config if config[k] != finetunes[0][k]}
        assert "model_name_or_path" in differ and "layer_decay" in differ
        assert differ <= run_names | {"layer_decay"}, differ  # the scratch arm alone trains without layer decay
    assert finetunes[0]["layer_decay"] == 1.0 and finetunes[1]["layer_decay"] == finetunes[2]["layer_decay"] < 1.0
    assert {k for k in finetunes[1] if finetunes[1][k] != finetunes[2][k]} <= run_names
    first_times = json.loads((out / "stages.json").read_text())

    capsys.readouterr()
    assert driver.main([*argv, "--skip_existing"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 8
    again = json.loads((out / "stages.json").read_text())
    assert all(again[name]["wall_time_seconds"] == first_times[name]["wall_time_seconds"] for name in first_times)
    assert "| (c) MIMIR -> PGD-AT |" in (out / "results.md").read_text()
    paired = json.loads((out / "results.json").read_text())["paired"]
    assert [m["name"] for m in paired["models"]] == ["scratch", "mae", "mimir"] and paired["num_samples"] == 16
    assert len(next(m for m in paired["metrics"] if m["name"] == "autoattack")["pairs"]) == 3
    assert "## Paired statistics" in (out / "results.md").read_text()
