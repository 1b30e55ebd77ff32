"""The GPU replication: its config set, what travels to the device, the driver's time guard,
and `benchmarks/gpu_replication.py --smoke`, the whole chain rehearsed on the CPU."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / "recipes" / "configs" / "replicate_gpu"
sys.path.insert(0, str(ROOT / "benchmarks"))

import device_setup  # noqa: E402
import gpu_replication  # noqa: E402
from test_replicate import plan, plan_stages, recipe  # noqa: E402


def _config(name: str) -> dict:
    return yaml.safe_load((GPU_DIR / f"{name}.yaml").read_text())


# ------------------------------------------------------------------ the config set


def test_the_gpu_configs_are_the_papers_vit_t_and_differ_between_mae_and_mimir_only_in_the_method():
    mae, mimir, finetune = _config("pretrain_mae"), _config("pretrain_mimir"), _config("finetune")
    assert {k for k in mae.keys() | mimir.keys() if mae.get(k) != mimir.get(k)} == {"attack_steps", "mi_weight", "output_dir"}
    assert (mae["attack_steps"], mae["mi_weight"]) == (0, 0.0)
    assert (mimir["attack_steps"], mimir["mi_weight"], mimir["mi_sigma"]) == (1, 1e-5, 5.0)
    assert abs(mimir["attack_epsilon"] - 8 / 255) < 1e-12 and abs(mimir["attack_step_size"] - 10 / 255) < 1e-12
    for config in (mimir, finetune):
        # the preset itself (192 wide, 12 blocks, 3 heads), nothing shrunk; patch 4; bf16; the device left to the trainer
        assert config["model_size"] == "vit-t" and config["patch_size"] == 4 and config["bf16"] is True
        assert not {"hidden_size", "num_hidden_layers", "num_attention_heads", "use_cpu", "no_cuda"} & set(config)
        assert "max_train_samples" not in config  # the whole prepared subset
    for key in ("seed", "validation_split_size", "validation_split_seed", "image_size"):
        assert finetune[key] == mimir[key], key  # every stage holds out the same 1,000 training images
    assert finetune["validation_split_size"] == 1000 and finetune["load_best_model_at_end"] is False
    full, subset = _config("evaluate"), _config("evaluate_autoattack")
    assert full["max_eval_samples"] == gpu_replication.TEST_IMAGES == 5000 and full["attacks"] == ["clean", "pgd-20"]
    assert subset["max_eval_samples"] == 1000 and subset["attacks"] == ["clean", "pgd-20", "autoattack"]
    assert subset["autoattack_version"] == "custom" and subset["autoattack_attacks"] == ["apgd-ce", "apgd-t"]
    assert "device" not in full and "device" not in subset  # CUDA when there is one
    assert len(plan_stages(plan(["--data_dir", "x", "--config_dir", str(GPU_DIR), "--output_dir", "o"]))) == 11


@pytest.mark.slow  # imports transformers' Trainer stack: ~10 s alone on a shared 2-core machine
def test_the_gpu_configs_parse_with_their_recipes():
    from mimir_hf.cli import parse_recipe_args
    from mimir_hf.data import DataArguments
    from mimir_hf.evaluation import EvaluationArguments
    from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
    from mimir_hf.pretraining import MimirTrainingArguments
    from mimir_hf.pretraining.run import PretrainModelArguments

    for name in ("pretrain_mae", "pretrain_mimir"):
        model, data, training = parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments),
                                                  ["--config", str(GPU_DIR / f"{name}.yaml"), "--use_cpu", "true"])
        assert training.bf16 and training.per_device_train_batch_size == 512 and model.patch_size == 4
    model, data, training = parse_recipe_args((ModelArguments, DataArguments, AdversarialTrainingArguments),
                                              ["--config", str(GPU_DIR / "finetune.yaml"), "--use_cpu", "true"])
    assert training.bf16 and training.attack_steps == 1 and data.validation_split_size == 1000
    for name in ("evaluate", "evaluate_autoattack"):
        evaluation, data = parse_recipe_args((EvaluationArguments, DataArguments), ["--config", str(GPU_DIR / f"{name}.yaml")])
        assert evaluation.device is None


# ------------------------------------------------------------------ what travels


def test_packed_images_unpack_exactly_and_are_checked(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.arange(32, dtype=np.uint8)[None, :, None, None] * 8, (3, 32, 32, 3)).copy()
    for images in (noise, ramp, np.full((2, 8, 8, 3), 255, np.uint8)):
        labels = np.arange(len(images)) % 10
        device_setup.pack_images(tmp_path / "x.pack", images, labels, ["a", "b"])
        unpacked, unpacked_labels, names = device_setup.unpack_images(tmp_path / "x.pack")
        assert np.array_equal(unpacked, images) and np.array_equal(unpacked_labels, labels) and names == ["a", "b"]
    assert (tmp_path / "x.pack").stat().st_size < 0.5 * ramp.nbytes + 1000  # smooth images shrink
    with np.load(tmp_path / "x.pack") as archive:
        arrays = dict(archive)
    arrays["sha256"] = np.array("0" * 64)
    with open(tmp_path / "bad.pack", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match="do not match the checksum"):
        device_setup.unpack_images(tmp_path / "bad.pack")
    np.savez(tmp_path / "images.npz", images=noise, labels=np.zeros(7, np.int64))
    with pytest.raises(ValueError, match="not a .* image pack"):
        device_setup.unpack_images(tmp_path / "images.npz")
    with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
        device_setup.pack_images(tmp_path / "y.pack", noise.astype(np.float32), np.zeros(7, np.int64))


def test_prepare_packs_the_first_images_in_file_order(tmp_path):
    source = tmp_path / "cifar"
    source.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in ("train_batch_1", "train_batch_2", "train_batch_10", "test"):  # natural order: 1, 2, 10
        batches[name] = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
        np.savez(source / f"{name}.npz", images=batches[name], labels=rng.integers(0, 10, 10), class_names=np.array(list("abcdefghij")))
    sizes = gpu_replication.prepare_data(source, tmp_path / "packed", train_images=25, test_images=4)
    assert set(sizes) == {"train", "test"}
    train, _, names = device_setup.unpack_images(tmp_path / "packed" / "train.pack")
    expected = np.concatenate([batches["train_batch_1"], batches["train_batch_2"], batches["train_batch_10"][:5]])
    assert np.array_equal(train, expected) and names == list("abcdefghij")
    test, _, _ = device_setup.unpack_images(tmp_path / "packed" / "test.pack")
    assert np.array_equal(test, batches["test"][:4])
    counts = gpu_replication.unpack_data(tmp_path / "packed", tmp_path / "data")
    assert counts["images"] == {"train": 25, "test": 4}
    with np.load(tmp_path / "data" / "train.npz") as data:  # the layout the .npz loader reads
        assert np.array_equal(data["images"], expected) and data["labels"].dtype == np.int64
    with pytest.raises(SystemExit, match="fewer than the 31"):
        gpu_replication.prepare_data(source, tmp_path / "more", train_images=31, test_images=4)


def _fake_wheel(path: Path) -> None:
    files = {"pkg/__init__.py": b"x = 1\n", "pkg/examples/model_test.pt": b"\0" * 1000, "pkg/examples/eval.py": b"pass\n",
             "pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("pkg-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("pkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")


def test_a_slimmed_wheel_keeps_every_file_it_records(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    _fake_wheel(wheel)
    assert device_setup.slim_wheel(wheel, drop=("pkg/examples/",))
    with zipfile.ZipFile(wheel) as slim:
        names = set(slim.namelist())
        record = slim.read("pkg-1.0.dist-info/RECORD").decode().splitlines()
        assert names == {"pkg/__init__.py", "pkg-1.0.dist-info/WHEEL", "pkg-1.0.dist-info/RECORD"}
        assert {line.split(",")[0] for line in record} == names
        for line in record:
            name, digest, size = line.split(",")
            if digest:
                data = slim.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)
    assert not device_setup.slim_wheel(wheel, drop=("pkg/examples/",))  # already slim
    assert not device_setup.slim_wheel(wheel)  # no rule for this package
    assert "pyautoattack/examples/" in device_setup.WHEEL_DROPS["pyautoattack-"]


def test_unmet_requirements_are_reported_not_installed(tmp_path):
    problems = device_setup.unmet(["numpy<1.0", "numpy>=1.0", "surely-not-installed-xyz", "pytest<1; extra == 'dev'"],
                                  owner="thing")
    assert problems[0].startswith("thing needs numpy<1.0: found ") and problems[1:] == [
        "thing needs surely-not-installed-xyz: not installed"]
    assert device_setup.unmet_requirements("datasets") == []  # pip installed datasets with its pins met here
    needed = {"surely_not_a_module_xyz": "xyz==1.0", "numpy": "numpy"}
    report = device_setup.install_missing(needed, smoke=True)
    assert report == {"missing_before": ["surely_not_a_module_xyz"], "installed": [], "error": None}
    report = device_setup.install_missing(needed, wheels=tmp_path / "none", hint="prepare it")
    assert "none/ not found: prepare it" in report["error"] and report["installed"] == []


def test_the_documented_device_call_is_the_one_the_script_prints():
    call = gpu_replication.device_call()
    assert call in gpu_replication.__doc__
    assert call in (ROOT / "docs" / "gpu.md").read_text() and call in (ROOT / "docs" / "replication.md").read_text()
    assert gpu_replication.DEVICE_TIMEOUT_S > gpu_replication.BUDGET_S
    assert gpu_replication.BUDGET_S <= 9 * 60 and gpu_replication.DEVICE_TIMEOUT_S <= 600


# ------------------------------------------------------------------ the driver's time guard


# Stands in for the recipes: pretrain-mimir first sleeps for a minute, then every stage runs test_replicate's fake.
SLEEPY_RECIPE = """#!{python}
import os, sys, time
if "pretrain-mimir" in " ".join(sys.argv):
    time.sleep(60)
os.execv({fake!r}, [{fake!r}, *sys.argv[1:]])
"""


def test_the_time_limits_are_checked():
    args = plan(["--time_limit", "100"]).args
    assert (args.time_limit, args.launch_limit) == (100, 100)
    assert plan(["--time_limit", "100", "--launch_limit", "200"]).args.launch_limit == 100
    assert plan(["--launch_limit", "50"]).args.time_limit is None
    for bad in (["--time_limit", "0"], ["--launch_limit", "-1"], ["--progress_every", "-1"]):
        with pytest.raises(ValueError):
            plan(bad)


@pytest.mark.slow  # a few short subprocesses, and one stopped after 4 s
def test_the_time_limit_stops_running_stages_and_the_results_are_still_written(tmp_path, capsys, monkeypatch):
    import time

    from test_replicate import _fake_python, _write_npz_data

    monkeypatch.setenv("FAKE_TRACE", str(tmp_path / "trace"))
    sleepy = tmp_path / "sleepy-python"
    sleepy.write_text(SLEEPY_RECIPE.format(python=sys.executable, fake=str(_fake_python(tmp_path))))
    sleepy.chmod(0o755)
    out = tmp_path / "out"
    start = time.perf_counter()
    status = recipe.main(["--data_dir", str(_write_npz_data(tmp_path / "data")), "--output_dir", str(out), "--config_dir",
                          str(GPU_DIR), "--jobs", "2", "--python", str(sleepy), "--time_limit", "4", "--progress_every", "1"])
    assert status == 4 and time.perf_counter() - start < 30  # not the minute pretrain-mimir wanted
    record = json.loads((out / "stages.json").read_text())
    assert record["pretrain-mimir"]["stopped"] == "time limit (4s)" and record["pretrain-mimir"]["returncode"] != 0
    assert {name for name, entry in record.items() if "not_started" in entry} == {
        "finetune-mimir", "eval-mimir", "eval-mimir-autoattack"}
    assert record["eval-mae-autoattack"]["returncode"] == 0  # the other arms finished
    results = json.loads((out / "results.json").read_text())
    assert [row.get("missing", False) for row in results["arms"]] == [False, False, True]
    assert results["unfinished_stages"]["pretrain-mimir"] == "stopped at the time limit (4s)"
    markdown = (out / "results.md").read_text()
    assert "- Stage pretrain-mimir: stopped at the time limit (4s)." in markdown
    assert "- Stage eval-mimir: not started (launch limit (4s))." in markdown
    printed = capsys.readouterr()
    assert "STOPPED at the time limit" in printed.out and "stages done; running: pretrain-mimir" in printed.out
    assert "did not finish within the time limits" in printed.err


# ------------------------------------------------------------------ the whole chain on the CPU


@pytest.mark.slow  # 11 stages of a tiny model, 2 at a time: ~1-2 min on 2 cores
def test_smoke_runs_the_whole_chain_and_writes_the_device_layout(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_replication.py"), "--smoke", "--output_dir", str(out),
                             "--work_dir", str(tmp_path / "work"), "--budget_s", "1800"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    files = {p.name for p in out.iterdir()}
    assert files == {"results.json", "results.md", "results.png", "stages.json", "replication.log", "environment.json",
                     gpu_replication.ARCHIVE}
    assert len(files) <= 8 and all((out / name).stat().st_size < 16 * 2**20 for name in files)  # what a device run returns
    results = json.loads((out / "results.json").read_text())
    assert [row["name"] for row in results["arms"]] == ["scratch", "mae", "mimir"]
    assert not any(row.get("missing") for row in results["arms"]) and "unfinished_stages" not in results
    assert results["arms"][2]["accuracy_num_samples"] == {"clean": 16, "pgd-20": 16, "autoattack": 16}
    for key in ("paired", "paired_autoattack"):
        assert [m["name"] for m in results[key]["models"]] == ["scratch", "mae", "mimir"]
    assert "autoattack" in [m["name"] for m in results["paired_autoattack"]["metrics"]]
    report = json.loads((out / "environment.json").read_text())
    assert report["driver_returncode"] == 0 and report["data"]["images"] == {"train": 64, "test": 32}
    assert "--config_dir " + str(GPU_DIR) in report["driver_command"] and "--time_limit" in report["driver_command"]
    with tarfile.open(out / gpu_replication.ARCHIVE) as archive:
        names = set(archive.getnames())
        config = yaml.safe_load(archive.extractfile("run/pretrain-mimir/recipe_config.yaml"))
    assert {"run/eval-mimir/robustness.json", "run/eval-mimir-autoattack/per_sample.npz", "run/logs/finetune-mae.log",
            "run/results.md"} <= names
    assert not [name for name in names if name.endswith((".safetensors", ".bin", ".pt"))]
    assert config["patch_size"] == 4 and config["bf16"] is True and config["mi_weight"] == 1e-5  # the GPU configs ran
    log = (out / "replication.log").read_text()
    assert "[11/11] eval-mimir-autoattack: done" in log and "Paired statistics" in log
    assert "GPU replication:" in result.stdout
