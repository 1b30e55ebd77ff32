"""mimir_hf.replication and recipes/replicate_cifar10.py: stage planning, the results table, and a micro-scale end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from evaluation_folders import measured_report

from mimir_hf.cli import parse_recipe_args
from mimir_hf.replication import (
    HEADLINE_ATTACKS,
    Replication,
    ReplicationArguments,
    StageFailedError,
    archive_run,
    collect_results,
    format_markdown,
    plan_stages,
    run_stages,
    write_results,
)
from mimir_hf.replication import driver as driver_module
from mimir_hf.replication import scheduler as scheduler_module

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "configs" / "replicate_cpu"


def plan(argv: list[str]) -> Replication:
    """What the recipe does with its command line, short of running it."""
    (args,) = parse_recipe_args((ReplicationArguments,), argv)
    return Replication.from_arguments(args)


def _load_recipe():
    spec = importlib.util.spec_from_file_location("replicate_cifar10", ROOT / "recipes" / "replicate_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()


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
    args = plan(["--output_dir", str(tmp_path), "--data_dir", "/data/c10", "--scale_factor", "0.5",
                              "--arms", "c,a", "--autoattack_version", "standard"])
    stages = plan_stages(args)
    # runs in the order given, each run's stages together
    assert [s.name for s in stages] == ["pretrain-mimir", "finetune-mimir", "eval-mimir", "finetune-scratch", "eval-scratch"]
    base = yaml.safe_load((CONFIG_DIR / "finetune.yaml").read_text())["max_train_samples"]
    finetune_mimir = stages[1].command("python")
    assert finetune_mimir[finetune_mimir.index("--model_name_or_path") + 1] == str(tmp_path / "pretrain-mimir")
    assert finetune_mimir[finetune_mimir.index("--max_train_samples") + 1] == str(int(base * 0.5))
    assert "--resume_from_checkpoint" not in finetune_mimir
    evaluation = stages[4].command("python")
    assert evaluation[evaluation.index("--autoattack_version") + 1] == "standard"
    assert evaluation[evaluation.index("--dataset") + 1] == "/data/c10"
    with pytest.raises(ValueError):
        plan(["--arms", "a,d"])


def test_results_come_only_from_the_reports(tmp_path):
    args = plan(["--output_dir", str(tmp_path), "--arms", "a,c"])
    from evaluation_folders import write_evaluation

    from mimir_hf.evaluation import AttackSettings

    clean, pgd, aa = np.array([1, 1, 1, 0], bool), np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool)
    write_evaluation(tmp_path / "eval-mimir", {"clean": clean, "pgd-20": pgd, "autoattack": aa}, np.arange(4) % 10,
                     AttackSettings(autoattack_version="custom", autoattack_attacks=("apgd-ce", "apgd-t")))
    log = {"pretrain-mimir": {"wall_time_seconds": 65.0}, "finetune-mimir": {"wall_time_seconds": 5.0}}
    results = write_results(args, log)
    scratch, mimir = results["arms"]
    assert scratch["missing"] and mimir["accuracy"] == {"clean": 0.75, "pgd-20": 0.5, "autoattack": 0.25}
    markdown = (tmp_path / "results.md").read_text()
    assert "| (c) MIMIR -> PGD-3-AT | 75.0 | 50.0 | 25.0 | 25.0 | 4 | 1m05s | 5s | — | passed |" in markdown
    assert "not evaluated" in markdown and "apgd-ce, apgd-t" in markdown
    assert "| AutoAttack (APGD-CE + APGD-T; an upper bound on the standard suite) |" in markdown  # never "AutoAttack" alone
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
    args = plan(["--output_dir", str(tmp_path), "--arms", "a,c", "--bootstrap_samples", "500",
                              "--bootstrap_seed", "3"])
    results = write_results(args, {})
    paired = results["paired"]
    assert [m["name"] for m in paired["metrics"]] == ["clean", "pgd-20", "autoattack", "worst case",
                                                      "(clean + autoattack) / 2"]
    pair = next(m for m in paired["metrics"] if m["name"] == "autoattack")["pairs"][0]
    assert (pair["first"], pair["second"], pair["only_first_correct"], pair["only_second_correct"]) == ("scratch", "mimir", 3, 10)
    assert pair["mcnemar_p"] == mcnemar_exact(3, 10)
    same = compare_evaluations([tmp_path / "eval-scratch", tmp_path / "eval-mimir"], names=["scratch", "mimir"],
                               attacks=list(HEADLINE_ATTACKS), bootstrap_samples=500, seed=3)
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
    results = write_results(args, {})
    assert "not of the same images" in results["paired"]["skipped"]
    assert "No paired statistics: Evaluations 'scratch'" in (tmp_path / "results.md").read_text()


PAPER_SET = ROOT / "recipes" / "configs" / "replicate_paper.yaml"


def test_the_paper_config_set_launches_training_through_accelerate(tmp_path):
    args = plan(["--config_set", str(PAPER_SET), "--data_dir", "/data/c10", "--output_dir", str(tmp_path),
                              "--finetune_args", "--num_train_epochs 1"])
    stages = plan_stages(args)
    assert len(stages) == 8
    for stage in stages:
        command = stage.command("python")
        assert stage.config.is_file()
        if stage.kind == "eval":
            assert command[1].endswith("evaluate.py") and Path(command[3]).name == "evaluate_cifar10.yaml"
        else:
            assert command[1:6] == ["-m", "accelerate.commands.launch", "-q", "--config_file", str(ROOT / "recipes/accelerate_configs/multi_gpu.yaml")]
    finetune = stages[0].command("python")
    # the set's defaults first, the command line's after (the later flag wins)
    assert finetune[-2:] == ["--num_train_epochs", "1"] and "--data_seed" in finetune
    assert [Path(s.config).name for s in stages if s.kind != "eval"] == [
        "finetune_cifar10_vit_t.yaml", "pretrain_cifar10_vit_t_mae.yaml", "finetune_cifar10_vit_t.yaml",
        "pretrain_cifar10_vit_t.yaml", "finetune_cifar10_vit_t.yaml"]
    # the shared finetune config keeps the pretrained arms' layer decay; only scratch trains without it
    layer_decay = {s.name: s.overrides[s.overrides.index("--layer_decay") + 1] for s in stages if "--layer_decay" in s.overrides}
    assert layer_decay == {"finetune-scratch": "1.0"}
    plain = plan(["--config_set", str(PAPER_SET), "--accelerate_config", "none", "--data_dir", "x"])
    assert all(s.accelerate_config is None for s in plan_stages(plain))
    with pytest.raises(ValueError):
        plan(["--accelerate_config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError):
        plan(["--num_arm", "a"])  # abbreviations are refused


@pytest.mark.slow  # two processes importing torch
def test_a_stage_command_runs_under_accelerate_launch(tmp_path):
    """The launcher prefix the driver builds is a working `accelerate launch` (the recipe's --help through it)."""
    import os
    import subprocess

    single = ROOT / "recipes" / "accelerate_configs" / "single_process.yaml"
    args = plan(["--accelerate_config", str(single), "--data_dir", "x", "--output_dir", str(tmp_path), "--arms", "c"])
    command = plan_stages(args)[0].command(sys.executable)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "-q"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--mi_weight" in result.stdout and "were not passed" not in result.stderr


@pytest.mark.slow  # reads the .npz data through `datasets`: ~10 s on a shared 2-core machine
def test_the_data_dir_is_checked_before_any_stage(tmp_path, monkeypatch, capsys):
    def no_stage(*args, **kwargs):
        raise AssertionError("a stage started")

    monkeypatch.setattr(driver_module, "run_stages", no_stage)
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="--data_dir is required"):
        recipe.main(["--output_dir", out])
    with pytest.raises(ValueError, match="does not exist"):
        recipe.main(["--output_dir", out, "--data_dir", str(tmp_path / "nowhere")])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "val.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="no readable split 'test'"):
        recipe.main(["--output_dir", out, "--data_dir", str(wrong)])
    assert not (tmp_path / "out").exists()  # nothing was started or written
    monkeypatch.setattr(driver_module, "run_stages", lambda stages, replication, on_done=None: {})
    monkeypatch.setattr(driver_module, "write_results", lambda replication, log: None)
    assert recipe.main(["--output_dir", out, "--data_dir", str(_write_npz_data(tmp_path / "data"))]) == 0


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
    assert recipe.main(argv) == 0
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
    assert recipe.main([*argv, "--skip_existing"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 8
    again = json.loads((out / "stages.json").read_text())
    assert all(again[name]["wall_time_seconds"] == first_times[name]["wall_time_seconds"] for name in first_times)
    assert "| (c) MIMIR -> FGSM-RS |" in (out / "results.md").read_text()  # --finetune_args made the 3-step PGD 1-step
    paired = json.loads((out / "results.json").read_text())["paired"]
    assert [m["name"] for m in paired["models"]] == ["scratch", "mae", "mimir"] and paired["num_samples"] == 16
    assert len(next(m for m in paired["metrics"] if m["name"] == "autoattack")["pairs"]) == 3
    assert "## Paired statistics" in (out / "results.md").read_text()


# --- parallel stages, a second (AutoAttack-subset) evaluation, the replicate_cpu_v2 config set ----------

V2_DIR = ROOT / "recipes" / "configs" / "replicate_cpu_v2"

FAKE_RECIPE = '''#!{python}
"""Stands in for a recipe: records when it ran and with how many threads, then writes the stage's outputs
(a report written by the evaluator's own writer, so that the driver's results can read it)."""
import os, sys, time, pathlib
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_dir") + 1])
trace = pathlib.Path(os.environ["FAKE_TRACE"])
with trace.open("a") as f:
    f.write(f"start {{out.name}} {{time.monotonic()}} {{os.environ.get('OMP_NUM_THREADS')}}\\n")
time.sleep(0.4 if "pretrain-mimir" in out.name else 0.2)
if out.name == os.environ.get("FAKE_FAIL"):
    sys.exit(7)
out.mkdir(parents=True, exist_ok=True)
if pathlib.Path(args[0]).name == "evaluate.py":
    import shutil
    template = {reports!r} + ("/autoattack" if out.name.endswith("autoattack") else "/pgd")
    shutil.copytree(template, out, dirs_exist_ok=True)
else:
    (out / "recipe_config.yaml").write_text("done")
    (out / "model.safetensors").write_text("done")
with trace.open("a") as f:
    f.write(f"end {{out.name}} {{time.monotonic()}}\\n")
'''


def _fake_python(tmp_path: Path) -> Path:
    path = tmp_path / "fake-python"
    reports = tmp_path / "fake-reports"  # written here once: a fake stage copies them without importing torch
    for name, robust in (("pgd", "pgd-20"), ("autoattack", "autoattack")):
        measured_report({"clean": 0.5, robust: 0.25}, num_samples=16).save(reports / name)
    path.write_text(FAKE_RECIPE.format(python=sys.executable, reports=str(reports)))
    path.chmod(0o755)
    return path


def _trace(path: Path) -> dict[str, dict]:
    events: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        kind, name, when, *rest = line.split()
        events.setdefault(name, {})[kind] = float(when)
        if rest:
            events[name]["threads"] = rest[0]
    return events


@pytest.mark.slow  # eleven short subprocesses
def test_parallel_stages_start_when_their_input_stage_has_finished(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TRACE", str(tmp_path / "trace"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(scheduler_module.os, "cpu_count", lambda: 4)
    out = tmp_path / "out"
    args = plan(["--data_dir", "x", "--output_dir", str(out), "--jobs", "2", "--python",
                              str(_fake_python(tmp_path)), "--config_dir", str(V2_DIR)])
    stages = plan_stages(args)
    record = run_stages(stages, args)
    events = _trace(tmp_path / "trace")
    assert set(events) == {s.name for s in stages} == set(record)
    for stage in stages:
        assert events[stage.name]["threads"] == "2"  # cpu_count // jobs
        if stage.needs:
            assert events[stage.name]["start"] >= events[stage.needs]["end"], stage.name
    # never more than two at once, and two at once at some point
    moments = sorted((e["start"], 1) for e in events.values()) + sorted((e["end"], -1) for e in events.values())
    running, most = 0, 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        running += change
        most = max(most, running)
    assert most == 2
    assert record["finetune-scratch"]["parallel_jobs"] == 2 and (out / "logs" / "eval-mimir-autoattack.log").is_file()


@pytest.mark.slow  # short subprocesses
def test_a_failed_parallel_stage_stops_new_launches_but_not_running_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_TRACE", str(tmp_path / "trace"))
    monkeypatch.setenv("FAKE_FAIL", "pretrain-mae")
    out = tmp_path / "out"
    args = plan(["--data_dir", "x", "--output_dir", str(out), "--jobs", "2", "--python",
                              str(_fake_python(tmp_path)), "--config_dir", str(V2_DIR), "--arms", "b,c,a"])
    with pytest.raises(StageFailedError, match="pretrain-mae .exit status 7. failed"):
        run_stages(plan_stages(args), args)
    events = _trace(tmp_path / "trace")
    assert set(events) == {"pretrain-mae", "pretrain-mimir"}  # nothing launched after the failure
    assert "end" in events["pretrain-mimir"]  # the running stage was allowed to finish
    record = json.loads((out / "stages.json").read_text())
    assert record["pretrain-mae"]["returncode"] == 7 and record["pretrain-mimir"]["returncode"] == 0
    assert "waiting for pretrain-mimir" in capsys.readouterr().out
    # the rerun keeps the finished stage and runs the rest
    monkeypatch.delenv("FAKE_FAIL")
    args = plan(["--data_dir", "x", "--output_dir", str(out), "--jobs", "2", "--python",
                              str(_fake_python(tmp_path)), "--config_dir", str(V2_DIR), "--arms", "b,c,a", "--skip_existing"])
    run_stages(plan_stages(args), args)
    assert _trace(tmp_path / "trace")["pretrain-mimir"]["start"] == events["pretrain-mimir"]["start"]


def test_the_cpu_replication_configs_differ_only_where_the_comparison_needs_it():
    mae = yaml.safe_load((V2_DIR / "pretrain_mae.yaml").read_text())
    mimir = yaml.safe_load((V2_DIR / "pretrain_mimir.yaml").read_text())
    assert {k for k in mae.keys() | mimir.keys() if mae.get(k) != mimir.get(k)} == {"attack_steps", "mi_weight", "output_dir"}
    finetune = yaml.safe_load((V2_DIR / "finetune.yaml").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "seed",
                "validation_split_size", "validation_split_seed"):
        assert finetune[key] == mimir[key], key  # every stage holds out the same 1,000 training images
    assert "max_train_samples" not in finetune and "max_train_samples" not in mimir  # all 50,000 minus 1,000
    assert finetune["validation_split_size"] == 1000 and finetune["eval_strategy"] == "epoch"
    assert finetune["load_best_model_at_end"] is False  # the per-epoch check watches, it does not select
    full = yaml.safe_load((V2_DIR / "evaluate.yaml").read_text())
    subset = yaml.safe_load((V2_DIR / "evaluate_autoattack.yaml").read_text())
    assert full["max_eval_samples"] == 10000 and full["attacks"] == ["clean", "pgd-20"]
    assert subset["max_eval_samples"] == 1000 and "autoattack" in subset["attacks"]
    assert subset["autoattack_attacks"] == ["apgd-ce", "apgd-t"]
    args = plan(["--data_dir", "x", "--config_dir", str(V2_DIR), "--output_dir", "o"])
    names = [s.name for s in plan_stages(args)]
    assert [n for n in names if n.startswith("eval-")] == [
        "eval-scratch", "eval-scratch-autoattack", "eval-mae", "eval-mae-autoattack", "eval-mimir", "eval-mimir-autoattack"]


def test_a_second_evaluation_supplies_autoattack_and_its_own_paired_statistics(tmp_path):
    from evaluation_folders import labels_for, write_evaluation

    rng = np.random.default_rng(0)
    for name in ("scratch", "mimir"):
        clean = rng.random(40) < 0.6
        pgd = clean & (rng.random(40) < 0.5)
        write_evaluation(tmp_path / f"eval-{name}", {"clean": clean, "pgd-20": pgd}, labels_for(40))
        aa = pgd[:20] & (rng.random(20) < 0.8)
        write_evaluation(tmp_path / f"eval-{name}-autoattack", {"clean": clean[:20], "pgd-20": pgd[:20], "autoattack": aa},
                         labels_for(20))
    args = plan(["--output_dir", str(tmp_path), "--arms", "a,c", "--config_dir", str(V2_DIR),
                              "--bootstrap_samples", "200"])
    results = write_results(args, {"eval-mimir": {"wall_time_seconds": 60.0},
                                          "eval-mimir-autoattack": {"wall_time_seconds": 30.0}})
    scratch, mimir = results["arms"]
    full = json.loads((tmp_path / "eval-mimir" / "robustness.json").read_text())
    subset = json.loads((tmp_path / "eval-mimir-autoattack" / "robustness.json").read_text())
    assert mimir["accuracy"] == {"clean": full["attacks"]["clean"]["accuracy"], "pgd-20": full["attacks"]["pgd-20"]["accuracy"],
                                 "autoattack": subset["attacks"]["autoattack"]["accuracy"]}
    assert mimir["accuracy_num_samples"] == {"clean": 40, "pgd-20": 40, "autoattack": 20}
    assert mimir["worst_case"]["accuracy"] == subset["worst_case"]["accuracy"] and mimir["worst_case"]["num_samples"] == 20
    assert results["paired"]["num_samples"] == 40 and results["paired_autoattack"]["num_samples"] == 20
    assert "(clean + autoattack) / 2" in [m["name"] for m in results["paired_autoattack"]["metrics"]]
    markdown = (tmp_path / "results.md").read_text()
    assert "| 40 (20 for AutoAttack and worst case) |" in markdown and "| 1m30s | passed |" in markdown
    assert "## Paired statistics (same test images; autoattack)" in markdown
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    # an arm is complete only with both evaluations
    (tmp_path / "eval-scratch-autoattack" / "robustness.json").unlink()
    assert collect_results(args, {})["arms"][0]["missing"]


def test_the_archive_keeps_small_result_files_without_machine_paths(tmp_path):
    from evaluation_folders import labels_for, write_evaluation

    out = tmp_path / "run"
    rng = np.random.default_rng(1)
    for name in ("scratch", "mimir"):
        clean = rng.random(30) < 0.6
        write_evaluation(out / f"eval-{name}", {"clean": clean, "pgd-20": clean & (rng.random(30) < 0.5),
                                                "autoattack": clean & (rng.random(30) < 0.4)}, labels_for(30))
    finetune = out / "finetune-mimir"
    (finetune / "checkpoint-10").mkdir(parents=True)
    (finetune / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (finetune / "model.safetensors").write_bytes(b"weights")
    (finetune / "trainer_state.json").write_text(json.dumps({"log_history": [{"eval_robust_accuracy": 0.3}],
                                                             "best_model_checkpoint": str(finetune / "checkpoint-10")}))
    (out / "stages.json").write_text(json.dumps({"finetune-mimir": {"command": f"{sys.executable} {tmp_path}/checkout/recipes/finetune.py "
                                                                               f"--dataset {tmp_path}/data --output_dir {finetune}"}}))
    archive = tmp_path / "docs" / "results"
    assert recipe.main(["--output_dir", str(out), "--data_dir", str(tmp_path / "data"), "--arms", "a,c", "--results_only",
                        "--archive_dir", str(archive), "--bootstrap_samples", "100"]) == 0
    copied = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert "eval-mimir/per_sample.npz" in copied and "eval-scratch/robustness.json" in copied
    assert "finetune-mimir/trainer_state.json" in copied and {"results.json", "results.md", "results.png", "stages.json"} <= set(copied)
    assert not any("safetensors" in p or "checkpoint-" in p for p in copied)  # no weights, no checkpoints
    for path in archive.rglob("*"):
        if path.suffix in (".json", ".md"):
            text = path.read_text()
            assert str(tmp_path) not in text and str(ROOT) not in text and sys.executable not in text, path
    assert "<output_dir>/finetune-mimir" in (archive / "stages.json").read_text()
    with np.load(archive / "eval-mimir" / "per_sample.npz") as copy, np.load(out / "eval-mimir" / "per_sample.npz") as original:
        assert all(np.array_equal(copy[k], original[k]) for k in original.files)


V3_SET = ROOT / "recipes" / "configs" / "replicate_cpu_v3.yaml"


def test_runs_name_arms_at_seeds_and_the_config_set_defines_ablation_arms(tmp_path):
    args = plan(["--config_set", str(V3_SET), "--data_dir", "/d", "--output_dir", str(tmp_path)])
    stages = {s.name: s for s in plan_stages(args)}
    assert list(stages)[:4] == ["pretrain-nomi", "finetune-nomi", "eval-nomi", "eval-nomi-autoattack"]
    nomi, advtarget = stages["pretrain-nomi"].overrides, stages["pretrain-advtarget"].overrides
    assert nomi[-2:] == ["--mi_weight", "0"] and "--seed" not in nomi
    assert advtarget[-4:] == ["--mi_weight", "0", "--training_target", "adversarial"]
    assert stages["pretrain-advtarget"].config == stages["pretrain-nomi"].config  # the MIMIR config, overridden
    for name in ("pretrain-mae-seed1", "finetune-mae-seed1", "finetune-scratch-seed1"):
        command = stages[name].overrides
        assert command[command.index("--seed") + 1] == "1" and command[command.index("--data_seed") + 1] == "1"
    assert stages["finetune-mimir-seed1"].needs == "pretrain-mimir-seed1"
    # the adaptive evaluation only for the runs the set names
    assert {n for n in stages if n.endswith("-adaptive")} == {"eval-mae-seed1-adaptive", "eval-mimir-seed1-adaptive"}
    assert "pretrain-mae" not in stages and "finetune-scratch" not in stages
    only = plan(["--config_set", str(V3_SET), "--arms", "c@1,d", "--adaptive", "c@1", "--output_dir", "o"])
    assert [s.name for s in plan_stages(only)][0] == "pretrain-mimir-seed1"
    # the set's adaptive runs apply to the runs planned; the strong-MI arm alone gets no adaptive evaluation
    strong = plan_stages(plan(["--config_set", str(V3_SET), "--arms", "f", "--output_dir", "o"]))
    assert [s.name for s in strong] == ["pretrain-mimir-strong", "finetune-mimir-strong", "eval-mimir-strong",
                                        "eval-mimir-strong-autoattack"]
    assert strong[0].overrides[-2:] == ["--mi_weight", "3.5e-3"]
    for bad in (["--arms", "x"], ["--arms", "b@one"], ["--arms", "b,b"], ["--arms", "b", "--adaptive", "c@1"]):
        with pytest.raises(ValueError):
            plan(["--config_set", str(V3_SET), *bad])


def test_results_pair_runs_of_one_seed_and_label_the_finetune_from_its_config(tmp_path):
    from evaluation_folders import labels_for, write_evaluation

    rng = np.random.default_rng(1)
    for name in ("nomi", "mae-seed1", "mimir-seed1"):
        clean = rng.random(30) < 0.6
        write_evaluation(tmp_path / f"eval-{name}", {"clean": clean, "pgd-20": clean & (rng.random(30) < 0.5)}, labels_for(30))
    args = plan(["--config_set", str(V3_SET), "--arms", "d,b@1,c@1", "--adaptive", "", "--output_dir", str(tmp_path),
                              "--bootstrap_samples", "50"])
    args.stage_configs.pop("evaluate_autoattack")
    results = collect_results(args, {"finetune-nomi": {"commit": "abc", "wall_time_seconds": 1.0}})
    assert results["finetune_method"] == "FGSM-RS" and results["commits"] == ["abc"]
    labels = [row["label"] for row in results["arms"]]
    assert labels == ["(d) adversarial MAE, clean target, no MI -> FGSM-RS", "(b) MAE -> FGSM-RS, seed 1",
                      "(c) MIMIR -> FGSM-RS, seed 1"]
    assert results["paired"] == {"skipped": "fewer than two arms were evaluated"}  # seed 0 holds one run
    assert [m["name"] for m in results["paired_seed1"]["models"]] == ["mae-seed1", "mimir-seed1"]
    assert "## Paired statistics (same test images; seed1)" in format_markdown(results)


def test_the_archive_can_keep_the_finetuned_classifiers(tmp_path):
    out, archive = tmp_path / "run", tmp_path / "archive"
    for name in ("finetune-mae", "pretrain-mae"):
        (out / name).mkdir(parents=True)
        (out / name / "model.safetensors").write_bytes(b"weights")
        (out / name / "config.json").write_text("{}")
    args = plan(["--output_dir", str(out), "--archive_dir", str(archive), "--archive_weights"])
    copied = {p.relative_to(archive).as_posix() for p in archive_run(args)}
    assert {"finetune-mae/model.safetensors", "finetune-mae/config.json", "pretrain-mae/config.json"} <= copied
    assert "pretrain-mae/model.safetensors" not in copied
    without = plan(["--output_dir", str(out), "--archive_dir", str(tmp_path / "a2")])
    assert not any(p.suffix == ".safetensors" for p in archive_run(without))
