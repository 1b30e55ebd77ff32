"""`benchmarks/gpu_check.py --smoke`: the GPU check runs end to end on the CPU, so it cannot rot before a GPU run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_mode_measures_every_figure(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--json", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke" and report["environment"]["torch"]
    (step,) = report["steps"]
    assert step["mimir_ms"] > 0 and step["mae_ms"] > 0 and step["ratio"] == pytest.approx(step["mimir_ms"] / step["mae_ms"])
    assert step["mimir_images_per_s"] == pytest.approx(step["batch"] / step["mimir_ms"] * 1e3)
    assert set(step["mi_share"]) == {"auto", "float64", "float32"} and all(v["share"] > 0 for v in step["mi_share"].values())
    assert report["pgd"]["ratio"] > 0 and report["pgd"]["floor_ms"] > 0
    auto = report["autoattack"]
    assert auto["seconds_per_1000"] > 0 and set(auto["components_s"]) == {"apgd-ce"}
    assert "| model, batch |" in result.stdout and "MIMIR/MAE" in result.stdout
