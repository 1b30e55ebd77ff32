"""mimir_hf.replication.summary and recipes/summarize_replication.py: differences across seeds, and the worst
case joined over several evaluations of one model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from evaluation_folders import labels_for, write_evaluation

from mimir_hf.replication.summary import compare_worst_cases, seed_differences, summarize, worst_case_over

ROOT = Path(__file__).resolve().parents[1]


def _model(folder: Path, clean: np.ndarray, robust: np.ndarray, attack: str = "pgd-20") -> Path:
    return write_evaluation(folder, {"clean": clean, attack: clean & robust}, labels_for(clean.size))


def test_each_seed_gets_its_own_paired_test_and_the_mean_is_over_seeds(tmp_path):
    n = 50
    clean = np.ones(n, bool)
    base = np.zeros(n, bool)
    base[:10] = True
    better0, better1 = base.copy(), base.copy()
    better0[10:16] = True  # seed 0: first wins 6 images, loses none
    better1[10:12] = True
    better1[3] = False  # seed 1: first wins 2, loses 1
    runs = {0: (_model(tmp_path / "a0", clean, better0), _model(tmp_path / "b0", clean, base)),
            1: (_model(tmp_path / "a1", clean, better1), _model(tmp_path / "b1", clean, base))}
    result = seed_differences(runs, "pgd-20", bootstrap_samples=500, seed=1)
    first, second = result["seeds"]
    assert (first["only_first"], first["only_second"], second["only_first"], second["only_second"]) == (6, 0, 2, 1)
    assert first["difference"] == pytest.approx(6 / n) and second["difference"] == pytest.approx(1 / n)
    assert first["mcnemar_p"] == pytest.approx(2 / 2**6) and second["mcnemar_p"] == 1.0
    assert result["mean_difference"] == pytest.approx(3.5 / n) and result["spread_between_seeds"] == pytest.approx(5 / n)
    low, high = result["mean_interval_over_images"]
    assert low <= result["mean_difference"] <= high and result["same_sign_in_every_seed"]
    assert first["interval"][0] > 0  # six wins, no loss: the interval excludes 0
    # another image set at one seed is refused
    other = write_evaluation(tmp_path / "c1", {"clean": np.ones(40, bool), "pgd-20": np.zeros(40, bool)}, labels_for(40))
    with pytest.raises(ValueError, match="not of the same images"):
        seed_differences({0: runs[0], 1: (other, runs[1][1])}, "pgd-20", bootstrap_samples=50)


def test_the_worst_case_joins_evaluations_and_counts_what_each_attack_alone_breaks(tmp_path):
    n = 20
    labels = labels_for(n)
    clean = np.arange(n) < 16
    pgd = np.arange(n) < 10
    autoattack = pgd & (np.arange(n) != 2)  # AutoAttack breaks image 2 beyond PGD
    adaptive = pgd & (np.arange(n) != 5) & (np.arange(n) != 7)  # the adaptive attack breaks 5 and 7
    first = write_evaluation(tmp_path / "aa", {"clean": clean, "pgd-20": pgd, "autoattack": autoattack}, labels)
    second = write_evaluation(tmp_path / "adaptive", {"clean": clean, "pgd-20": pgd, "pgd-feature": adaptive}, labels)
    joined = worst_case_over([first, second], "model")
    assert joined.worst_case_accuracy == pytest.approx(7 / n)  # images 0-9 minus 2, 5 and 7
    assert joined.only_broken_by == {"pgd-20": 0, "autoattack": 1, "pgd-feature": 2}
    assert joined.accuracy["pgd-feature"] == pytest.approx(8 / n)
    # a second model that keeps image 5: the comparison sees one image in its favour
    kept = pgd & (np.arange(n) != 7)
    third = write_evaluation(tmp_path / "b-aa", {"clean": clean, "pgd-20": pgd, "autoattack": autoattack}, labels)
    fourth = write_evaluation(tmp_path / "b-adaptive", {"clean": clean, "pgd-20": pgd, "pgd-feature": kept}, labels)
    pair = compare_worst_cases(worst_case_over([third, fourth], "other"), joined, bootstrap_samples=200)
    assert (pair["only_first"], pair["only_second"]) == (1, 0) and pair["difference"] == pytest.approx(1 / n)
    # evaluations that disagree on an attack they share did not measure the same model
    moved = write_evaluation(tmp_path / "moved", {"clean": clean, "pgd-20": np.arange(n) < 9}, labels)
    with pytest.raises(ValueError, match="'pgd-20' differs"):
        worst_case_over([first, moved], "model")


def test_the_summary_recipe_writes_what_exists_and_lists_what_does_not(tmp_path):
    n = 30
    clean = np.ones(n, bool)
    a = _model(tmp_path / "eval-a", clean, np.arange(n) < 12)
    b = _model(tmp_path / "eval-b", clean, np.arange(n) < 8)
    config = {"output_dir": str(tmp_path / "summary"), "bootstrap_samples": 100,
              "comparisons": {"pair": {"a": str(a), "b": str(b)}, "later": {"a": str(a), "c": str(tmp_path / "eval-c")}},
              "seeds": {"a-minus-b": {"first": "a", "second": "b", "metrics": ["pgd-20"],
                                      "runs": {0: [str(a), str(b)], 1: [str(tmp_path / "x"), str(b)]}}}}
    summary = summarize(config)
    assert list(summary["comparisons"]) == ["pair"] and (tmp_path / "summary" / "pair" / "comparison.json").is_file()
    assert [d["seed"] for d in summary["seeds"]["a-minus-b"]["metrics"][0]["seeds"]] == [0]
    assert {entry["table"] for entry in summary["not_available"]} == {"later", "a-minus-b"}
    spec = importlib.util.spec_from_file_location("summarize_replication", ROOT / "recipes" / "summarize_replication.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe  # its dataclass resolves annotations through its module
    spec.loader.exec_module(recipe)
    path = tmp_path / "summary.yaml"
    path.write_text(yaml.safe_dump(config))
    assert recipe.main(["--summary", str(path)]) == 0
    written = json.loads((tmp_path / "summary" / "summary.json").read_text())
    assert written["seeds"]["a-minus-b"]["metrics"][0]["mean_difference"] == pytest.approx(4 / n)
    markdown = (tmp_path / "summary" / "summary.md").read_text()
    assert "+13.3" in markdown  # 4 of 30 images, in points
    assert "mean of" not in markdown  # one seed present: no mean or spread over seeds
    assert "`a-minus-b` (x missing)" in markdown and "`later` (eval-c missing)" in markdown
    with pytest.raises(ValueError, match="unknown summary keys"):
        summarize({**config, "seeds_": {}})
