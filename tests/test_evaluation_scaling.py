"""An evaluation that scales: AutoAttack's per-component results, the streamed evaluation set, resuming
after SIGKILL from the per-batch state, and sharding over `accelerate launch` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from mimir_hf.data import make_image_processor
from mimir_hf.evaluation import evaluate_robustness
from mimir_hf.evaluation.attack_specs import AttackSettings, parse_attack_name
from mimir_hf.evaluation.autoattack import _build_autoattack
from mimir_hf.evaluation.state import STATE_DIRNAME, StateMismatchError
from mimir_hf.evaluation.wrapper import LogitsModel

REPO = Path(__file__).resolve().parents[1]
DDP_CONFIG = REPO / "recipes" / "accelerate_configs" / "cpu_ddp_2proc.yaml"
TIMING_KEYS = {"wall_time_seconds", "versions", "evaluation", "autoattack_warnings", "curve_file", "autoattack_log"}


def tiny_vit(image_size: int = 16) -> ViTForImageClassification:
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=image_size, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=10,
    )
    return ViTForImageClassification(config).eval()


def checkpoint_and_data(tmp_path: Path, n: int = 20) -> tuple[Path, Path]:
    """A saved tiny ViT and an `.npz` test split of `n` 16-px images, most labelled with its own prediction."""
    model = tiny_vit()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    make_image_processor(16).save_pretrained(folder)
    images = np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        labels = model(pixel_values=x).logits.argmax(dim=1).numpy()
    labels[::5] = (labels[::5] + 1) % 10  # some clean mistakes, so "attack only the clean-correct points" matters
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "test.npz", images=images, labels=labels)
    return folder, data


def comparable(report: dict) -> dict:
    """robustness.json without what legitimately differs between runs (times, process count, paths)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMING_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(report)


def per_sample(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "per_sample.npz") as data:
        return {k: data[k] for k in data.files}


# ------------------------------------------------------------------------------------------------
# per-component AutoAttack results


@pytest.mark.slow
def test_autoattack_components_reproduce_the_packaged_cascade(tmp_path) -> None:
    """Running the components one at a time breaks exactly the points pyautoattack's own cascade breaks."""
    model = tiny_vit()
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(pixel_values=x).logits.argmax(dim=1)
    report = evaluate_robustness(
        model, x, labels=y, attacks=["clean", "autoattack"], epsilon="16/255", epsilon_sweep=(),
        output_dir=tmp_path, progress=False, plot=False, batch_size=12,
    )
    wrapper = LogitsModel(model)
    spec = parse_attack_name("autoattack", AttackSettings(epsilon=16 / 255))
    adversary = _build_autoattack(spec, wrapper, "standard", None, 10, torch.device("cpu"))
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=12)
    packaged_robust = (y_adv == y).numpy()
    np.testing.assert_array_equal(report.per_sample.correct["autoattack"], packaged_robust)

    entry = json.loads((tmp_path / "robustness.json").read_text())["attacks"]["autoattack"]
    components = entry["components"]
    assert [c["name"] for c in components] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert sum(c["broken"] for c in components) == 12 - int(packaged_robust.sum())
    assert components[0]["attacked"] == 12
    for before, after in zip(components, components[1:]):
        assert after["attacked"] == before["attacked"] - before["broken"]
    assert components[-1]["robust_accuracy_after"] == pytest.approx(entry["accuracy"])
    assert all(c["wall_time_seconds"] >= 0 for c in components)
    assert components[0]["broken"] > 0  # the test means something: APGD-CE breaks points at 16/255


# ------------------------------------------------------------------------------------------------
# streaming


def test_the_evaluation_set_is_decoded_one_batch_at_a_time(tmp_path, monkeypatch) -> None:
    """No more than one batch of images is ever decoded at once (the split is never one tensor)."""
    from mimir_hf.data import transforms

    folder, data = checkpoint_and_data(tmp_path, n=20)
    calls: list[int] = []
    original = transforms.EvalTransform.__call__

    def counting(self, image):
        calls.append(1)
        return original(self, image)

    monkeypatch.setattr(transforms.EvalTransform, "__call__", counting)
    seen: list[int] = []
    import mimir_hf.evaluation.runner as runner

    evaluate_batch = runner._evaluate_batch

    def recording(wrapper, specs, x, y, index, seed, bar):
        seen.append(len(calls))
        return evaluate_batch(wrapper, specs, x, y, index, seed, bar)

    monkeypatch.setattr(runner, "_evaluate_batch", recording)
    report = evaluate_robustness(
        str(folder), str(data), attacks=["clean", "pgd-2"], epsilon_sweep=(), batch_size=4, progress=False, plot=False,
    )
    assert report.num_samples == 20
    # one image decoded to probe the model, then 4 per batch: batch k starts with 1 + 4(k + 1) decoded
    assert seen == [1 + 4 * (k + 1) for k in range(5)]


def test_indices_select_images_in_the_given_order(tmp_path) -> None:
    model = tiny_vit()
    x = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(pixel_values=x).logits.argmax(dim=1)
    y[3] = (y[3] + 1) % 10
    report = evaluate_robustness(model, x, labels=y, indices=[7, 3, 5], attacks=["clean"], epsilon_sweep=(),
                                 progress=False, plot=False)
    assert report.per_sample.indices.tolist() == [7, 3, 5]
    assert report.per_sample.correct["clean"].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="duplicates"):
        evaluate_robustness(model, x, labels=y, indices=[1, 1], attacks=["clean"], epsilon_sweep=(), progress=False)


# ------------------------------------------------------------------------------------------------
# resuming


KILLED_RUN = textwrap.dedent(
    """
    import logging, os, signal, sys
    logging.basicConfig(level=logging.INFO)
    import mimir_hf.evaluation.state as state
    from mimir_hf.evaluation import evaluate_robustness

    folder, data, out, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if kill_after >= 0:
        save = state.EvaluationState.save
        def save_then_die(self, record):
            save(self, record)
            if record.index == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        state.EvaluationState.save = save_then_die
    evaluate_robustness(folder, data, attacks=["clean", "pgd-3", "cw-3"], epsilon_sweep=["4/255"],
                        sweep_attack="pgd-3", batch_size=4, output_dir=out, progress=False, plot=False)
    """
)


@pytest.mark.slow
def test_a_killed_evaluation_resumes_and_ends_with_the_uninterrupted_report(tmp_path) -> None:
    folder, data = checkpoint_and_data(tmp_path, n=20)
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(out: Path, kill_after: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(folder), str(data), str(out), str(kill_after)],
                              env=env, capture_output=True, text=True, timeout=300)

    killed = run(tmp_path / "resumed", kill_after=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state_dir = tmp_path / "resumed" / STATE_DIRNAME
    assert sorted(p.name for p in state_dir.glob("batch_*.json")) == [f"batch_{i:07d}.json" for i in range(3)]
    assert not (tmp_path / "resumed" / "robustness.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in state_dir.glob("batch_*.json")}

    resumed = run(tmp_path / "resumed", kill_after=-1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "3 of 5 batches already done" in resumed.stderr
    for name, stamp in stamps.items():  # the finished batches were read back, not recomputed
        assert (state_dir / name).stat().st_mtime_ns == stamp

    straight = run(tmp_path / "straight", kill_after=-1)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a = json.loads((tmp_path / "resumed" / "robustness.json").read_text())
    b = json.loads((tmp_path / "straight" / "robustness.json").read_text())
    assert comparable(a) == comparable(b)
    pa, pb = per_sample(tmp_path / "resumed"), per_sample(tmp_path / "straight")
    for key in pb:
        np.testing.assert_array_equal(pa[key], pb[key])
    assert 0 < a["attacks"]["pgd-3"]["accuracy"] < a["attacks"]["clean"]["accuracy"]  # attacks really ran


def test_state_of_another_evaluation_is_refused(tmp_path) -> None:
    model = tiny_vit()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(6, dtype=torch.long)
    common = dict(labels=y, epsilon_sweep=(), batch_size=3, output_dir=tmp_path, progress=False, plot=False)
    evaluate_robustness(model, x, attacks=["clean", "pgd-2"], **common)
    with pytest.raises(StateMismatchError, match="attacks"):
        evaluate_robustness(model, x, attacks=["clean", "pgd-3"], **common)
    report = evaluate_robustness(model, x, attacks=["clean", "pgd-3"], resume=False, **common)
    assert "pgd-3" in report.attacks


def test_a_model_retrained_in_place_does_not_inherit_the_state(tmp_path) -> None:
    """Same path, same settings, new weights: the finished batches belong to the old weights and are refused."""
    model = tiny_vit()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    common = dict(labels=torch.zeros(6, dtype=torch.long), attacks=["clean"], epsilon_sweep=(), batch_size=3,
                  output_dir=tmp_path / "eval", progress=False, plot=False)
    evaluate_robustness(str(folder), x, **common)
    evaluate_robustness(str(folder), x, **common)  # unchanged: resumes (nothing left to do)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    model.save_pretrained(folder)
    with pytest.raises(StateMismatchError, match="weights"):
        evaluate_robustness(str(folder), x, **common)


def test_a_torn_batch_file_is_recomputed(tmp_path) -> None:
    model = tiny_vit()
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(pixel_values=x).logits.argmax(dim=1)
    common = dict(labels=y, attacks=["clean", "pgd-2"], epsilon_sweep=(), batch_size=3, output_dir=tmp_path,
                  progress=False, plot=False)
    first = evaluate_robustness(model, x, **common)
    (tmp_path / STATE_DIRNAME / "batch_0000001.json").write_text('{"index": 1, "attac')
    second = evaluate_robustness(model, x, **common)
    np.testing.assert_array_equal(first.per_sample.correct["pgd-2"], second.per_sample.correct["pgd-2"])


# ------------------------------------------------------------------------------------------------
# sharding


@pytest.mark.slow
def test_two_processes_give_the_single_process_report(tmp_path) -> None:
    """`accelerate launch` with 2 CPU processes: each evaluates its own batches; the report is the same."""
    folder, data = checkpoint_and_data(tmp_path, n=20)
    args = ["--model_name_or_path", str(folder), "--dataset", str(data), "--attacks", "clean", "pgd-3", "autoattack",
            "--autoattack_version", "custom", "--autoattack_attacks", "apgd-ce", "--epsilon_sweep", "4/255",
            "--sweep_attack", "pgd-3", "--batch_size", "4", "--no_progress", "true"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    sharded = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
         str(REPO / "recipes" / "evaluate.py"), *args, "--output_dir", str(tmp_path / "sharded")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "evaluate.py"), *args, "--output_dir", str(tmp_path / "single")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a = json.loads((tmp_path / "sharded" / "robustness.json").read_text())
    b = json.loads((tmp_path / "single" / "robustness.json").read_text())
    assert a["evaluation"]["num_processes"] == 2 and b["evaluation"]["num_processes"] == 1
    assert comparable(a) == comparable(b)
    pa, pb = per_sample(tmp_path / "sharded"), per_sample(tmp_path / "single")
    for key in pb:
        np.testing.assert_array_equal(pa[key], pb[key])
    # each process did its own batches: rank 0 batches 0, 2, 4 and rank 1 batches 1, 3 (5 batches of 4)
    assert (tmp_path / "sharded" / "autoattack.rank1.log").exists()
    assert a["attacks"]["pgd-3"]["accuracy"] < a["attacks"]["clean"]["accuracy"]
