"""benchmarks/replication_costs.py runs end to end, so that the size choice in docs/RESULTS.md can be re-measured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # times four real steps of a small model
def test_rates_and_the_plan_estimate(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("replication_costs", ROOT / "benchmarks" / "replication_costs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--shapes", "small", "--threads", "1", "--repeats", "1",
                           "--config_dir", str(ROOT / "recipes" / "configs" / "replicate_cpu_v2"), "--json", str(tmp_path / "r.json")])
    rates = results["rates_images_per_second"]["small/1t"]
    assert set(rates) == {"mae_step", "mimir_step", "fgsm_rs_step", "attack_iteration"} and all(v > 0 for v in rates.values())
    plan = results["plan_minutes/1t"]
    # the estimate is the arithmetic it documents: epochs x 49,000 images / rate
    assert plan["pretrain-mae"] == pytest.approx(10 * 49_000 / rates["mae_step"] / 60)
    assert plan["total, one stage at a time"] > plan["pretrain-mimir"] + 3 * plan["finetune (each arm)"]
    assert (tmp_path / "r.json").is_file() and "Estimated minutes" in capsys.readouterr().out
