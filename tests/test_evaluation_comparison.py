"""mimir_hf.evaluation.comparison and recipes/compare.py: the paired statistics against hand-computed
cases, the refusal of evaluations of different images, the files, and the recipe on evaluation
folders that the real evaluator wrote."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mimir_hf.evaluation import (
    AttackSettings,
    bootstrap_means,
    compare_evaluations,
    evaluate_robustness,
    format_comparison_markdown,
    holm_adjust,
    load_evaluation,
    mcnemar_exact,
)

from evaluation_folders import labels_for, pair_of_folders, write_evaluation

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "compare.py"


# ---------------------------------------------------------------------------------------- the statistics


def test_mcnemar_exact_matches_the_binomial_tail_by_hand() -> None:
    # b = 3, c = 10: 2 · (C(13,0) + C(13,1) + C(13,2) + C(13,3)) / 2^13 = 2 · (1 + 13 + 78 + 286) / 8192
    assert mcnemar_exact(3, 10) == float(Fraction(2 * (1 + 13 + 78 + 286), 2**13)) == pytest.approx(0.0922851562)
    assert mcnemar_exact(10, 3) == mcnemar_exact(3, 10)  # two-sided: symmetric
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 1) == 1.0 and mcnemar_exact(4, 4) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(21, 42) == float(Fraction(2 * sum(comb(63, k) for k in range(22)), 2**63))
    # exact for large counts too (no overflow, no underflow to a wrong value)
    assert mcnemar_exact(0, 2000) == 0.0 and 0.0 < mcnemar_exact(450, 600) < 1e-5
    with pytest.raises(ValueError, match="non-negative integer"):
        mcnemar_exact(-1, 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        mcnemar_exact(2.5, 3)


def test_mcnemar_exact_agrees_with_scipy_binomtest() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 10), (13, 4), (120, 150), (2000, 2100), (7, 7)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0] and holm_adjust([0.2]) == [0.2] and holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([1.5])


def test_bootstrap_resamples_rows_jointly_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    values = (rng.random((4, 3)) < 0.5).astype(float)
    values[:, 2] = 0.5  # a constant column never moves
    first = bootstrap_means(values, 600, seed=3)
    assert first.shape == (600, 3)
    assert np.array_equal(first, bootstrap_means(values, 600, seed=3))
    assert not np.array_equal(first, bootstrap_means(values, 600, seed=4))
    assert np.all(first[:, 2] == 0.5)
    assert np.allclose(first[:, :2] * 4, np.round(first[:, :2] * 4))  # means of 4 resampled 0/1 rows
    # joint resampling: identical columns stay identical in every replicate
    twins = np.repeat(values[:, :1], 2, axis=1)
    assert np.array_equal(*bootstrap_means(twins, 50, seed=0).T)
    with pytest.raises(ValueError, match="samples"):
        bootstrap_means(values, 0)


# ---------------------------------------------------------------------------------------- the comparison


def test_pair_statistics_on_hand_built_evaluations(tmp_path) -> None:
    a, b = pair_of_folders(tmp_path, n=40, only_first=3, only_second=10)
    comparison = compare_evaluations([a, b], names=["A", "B"], bootstrap_samples=2000, seed=0)
    assert [m.name for m in comparison.metrics] == ["clean", "pgd-20", "autoattack", "worst case",
                                                    "(clean + autoattack) / 2"]
    aa = comparison.metric("autoattack")
    assert aa.accuracy == {"A": 8 / 40, "B": 15 / 40}
    pair = aa.pairs[0]
    assert (pair.first, pair.second, pair.only_first, pair.only_second) == ("A", "B", 3, 10)
    assert pair.difference == pytest.approx(-7 / 40)
    assert pair.p_value == mcnemar_exact(3, 10) and pair.p_value_holm == pair.p_value  # one pair: no adjustment
    low, high = pair.interval
    assert low < pair.difference < high and high < 0.2 and low > -0.45
    for model in ("A", "B"):
        lo, hi = aa.interval[model]
        assert lo < aa.accuracy[model] < hi
    flipped = comparison.pair("autoattack", "B", "A")
    assert flipped.difference == pytest.approx(7 / 40) and (flipped.only_first, flipped.only_second) == (10, 3)
    assert flipped.interval == pytest.approx((-high, -low))

    clean = comparison.pair("clean", "A", "B")
    assert (clean.only_first, clean.only_second, clean.p_value) == (2, 0, 0.5)  # 2 · C(2,0) / 2²

    # worst case = correct under every headline attack, i.e. AutoAttack here
    assert comparison.metric("worst case").accuracy == aa.accuracy
    mean = comparison.metric("(clean + autoattack) / 2")
    assert mean.accuracy == {"A": pytest.approx((1 + 8 / 40) / 2), "B": pytest.approx((38 / 40 + 15 / 40) / 2)}
    mean_pair = mean.pairs[0]
    assert mean_pair.p_value is None and mean_pair.only_first is None
    assert mean_pair.difference == pytest.approx(mean.accuracy["A"] - mean.accuracy["B"])
    assert mean_pair.interval[0] < mean_pair.difference < mean_pair.interval[1]


def test_identical_models_give_a_point_interval_and_p_one(tmp_path) -> None:
    a, _ = pair_of_folders(tmp_path)
    data = load_evaluation(a)
    copy = write_evaluation(tmp_path / "copy", data.correct, data.labels)
    comparison = compare_evaluations([a, copy], bootstrap_samples=500)
    assert comparison.models == ["eval-a", "copy"]
    for metric in comparison.metrics:
        pair = metric.pairs[0]
        assert pair.difference == 0.0 and pair.interval == (0.0, 0.0)
        if metric.kind != "clean_robust_mean":
            assert (pair.only_first, pair.only_second, pair.p_value) == (0, 0, 1.0)
    lo, hi = comparison.metric("autoattack").interval["eval-a"]
    assert lo < hi  # each accuracy still has its own uncertainty


def test_the_interval_is_paired(tmp_path) -> None:
    """With 1000 images on which the models mostly agree, the bootstrap standard error of the difference
    matches the paired closed form sqrt(((b + c)/N − ((b − c)/N)²)/N), far below the unpaired one."""
    n, b, c = 1000, 20, 40
    rng = np.random.default_rng(0)
    shared = rng.random(n) < 0.3
    free = np.flatnonzero(~shared)[: b + c]
    first, second = shared.copy(), shared.copy()
    first[free[:b]] = True
    second[free[b:]] = True
    labels = labels_for(n)
    folders = [write_evaluation(tmp_path / name, {"clean": outcome}, labels)
               for name, outcome in (("x", first), ("y", second))]
    pair = compare_evaluations(folders, bootstrap_samples=4000, seed=0).pair("clean", "x", "y")
    paired_se = np.sqrt(((b + c) / n - ((b - c) / n) ** 2) / n)
    unpaired_se = np.sqrt((first.mean() * (1 - first.mean()) + second.mean() * (1 - second.mean())) / n)
    bootstrap_se = (pair.interval[1] - pair.interval[0]) / (2 * 1.96)
    assert bootstrap_se == pytest.approx(paired_se, rel=0.1)
    assert bootstrap_se < 0.5 * unpaired_se


def test_three_models_get_every_pair_with_holm(tmp_path) -> None:
    n = 30
    labels = labels_for(n)
    clean = np.ones(n, bool)
    outcomes = {"m1": np.arange(n) < 5, "m2": np.arange(n) < 12, "m3": np.arange(n) < 20}
    folders = [write_evaluation(tmp_path / name, {"clean": clean, "autoattack": o}, labels) for name, o in outcomes.items()]
    comparison = compare_evaluations(folders, bootstrap_samples=300)
    pairs = comparison.metric("autoattack").pairs
    assert [(p.first, p.second, p.only_first, p.only_second) for p in pairs] == [
        ("m1", "m2", 0, 7), ("m1", "m3", 0, 15), ("m2", "m3", 0, 8)]
    raw = [mcnemar_exact(0, 7), mcnemar_exact(0, 15), mcnemar_exact(0, 8)]
    assert [p.p_value for p in pairs] == raw
    assert [p.p_value_holm for p in pairs] == pytest.approx(holm_adjust(raw))
    # by hand: raw 2/2^7, 2/2^15, 2/2^8; Holm sorts them: 3 · 2/2^15, 2 · 2/2^8, max(that, 1 · 2/2^7)
    assert [p.p_value_holm for p in pairs] == [2 / 2**7, 3 * 2 / 2**15, 2 * 2 / 2**8]


def test_bootstrap_is_seeded(tmp_path) -> None:
    a, b = pair_of_folders(tmp_path)
    one = compare_evaluations([a, b], bootstrap_samples=300, seed=7).to_dict()
    assert one == compare_evaluations([a, b], bootstrap_samples=300, seed=7).to_dict()
    other = compare_evaluations([a, b], bootstrap_samples=300, seed=8).to_dict()
    assert one["metrics"][2]["pairs"][0]["interval"] != other["metrics"][2]["pairs"][0]["interval"]
    assert one["bootstrap"]["seed"] == 7 and one["bootstrap"]["samples"] == 300


# ---------------------------------------------------------------------------------------- bad input


def test_evaluations_of_different_images_are_refused(tmp_path) -> None:
    a, _ = pair_of_folders(tmp_path)
    data = load_evaluation(a)
    labels = data.labels.copy()
    labels[5] = (labels[5] + 1) % 10
    other_labels = write_evaluation(tmp_path / "labels", data.correct, labels)
    with pytest.raises(ValueError, match=r"not of the same images: their labels differ at 1 of 40 positions \(first at position 5"):
        compare_evaluations([a, other_labels])
    shorter = write_evaluation(tmp_path / "short", {k: v[:30] for k, v in data.correct.items()}, data.labels[:30])
    with pytest.raises(ValueError, match="40 against 30 images"):
        compare_evaluations([a, shorter])
    shifted = write_evaluation(tmp_path / "shifted", data.correct, data.labels, indices=np.arange(40) + 1)
    with pytest.raises(ValueError, match="image indices differ"):
        compare_evaluations([a, shifted])
    wider = write_evaluation(tmp_path / "eps16", data.correct, data.labels, settings=AttackSettings(epsilon=16 / 255))
    with pytest.raises(ValueError, match="different threat models"):
        compare_evaluations([a, wider])


def test_other_bad_requests_are_clear_errors(tmp_path) -> None:
    a, b = pair_of_folders(tmp_path)
    with pytest.raises(ValueError, match="two or more"):
        compare_evaluations([a])
    with pytest.raises(FileNotFoundError, match="not an evaluation folder: robustness.json and per_sample.npz missing"):
        compare_evaluations([a, tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="own name"):
        compare_evaluations([a, b], names=["same", "same"])
    with pytest.raises(ValueError, match="one name per evaluation"):
        compare_evaluations([a, b], names=["only"])
    with pytest.raises(ValueError, match="'cw' was not evaluated"):
        compare_evaluations([a, b], attacks=["clean", "cw"])
    with pytest.raises(ValueError, match="not 'clean'"):
        compare_evaluations([a, b], robust_attack="clean")


def test_missing_autoattack_and_different_settings_are_noted(tmp_path) -> None:
    n = 20
    labels = labels_for(n)
    clean = np.arange(n) < 15
    robust = np.arange(n) < 6
    a = write_evaluation(tmp_path / "a", {"clean": clean, "pgd-20": robust, "cw": robust}, labels)
    b = write_evaluation(tmp_path / "b", {"clean": clean, "pgd-20": robust}, labels,
                         settings=AttackSettings(step_size=1 / 255))
    comparison = compare_evaluations([a, b], bootstrap_samples=100)
    assert [m.name for m in comparison.metrics] == ["clean", "pgd-20", "worst case"]
    notes = " ".join(comparison.notes)
    assert "Left out, not evaluated for every model: cw (ran for a)" in notes
    assert "No (clean + autoattack) / 2 row" in notes and "['a', 'b']" in notes
    assert "pgd-20: `step_size` differs" in notes
    assert "worst cases are over different attacks" in notes and "recomputed over those all share: clean, pgd-20" in notes
    # an explicit stand-in is named in the row, never substituted silently
    stand_in = compare_evaluations([a, b], robust_attack="pgd-20", bootstrap_samples=100)
    assert stand_in.metric("(clean + pgd-20) / 2").accuracy["a"] == pytest.approx((0.75 + 0.3) / 2)


# ---------------------------------------------------------------------------------------- files


def test_save_writes_json_markdown_and_png(tmp_path) -> None:
    a, b = pair_of_folders(tmp_path)
    comparison = compare_evaluations([a, b], names=["A", "B"], bootstrap_samples=200, output_dir=tmp_path / "cmp")
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data == json.loads(json.dumps(comparison.to_dict()))
    assert [m["name"] for m in data["models"]] == ["A", "B"] and data["num_samples"] == 40
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert markdown == format_comparison_markdown(data)  # the table can be regenerated from the JSON alone
    assert "| autoattack | A − B | −17.5 [" in markdown and "| 3 | 10 | 0.092 | 0.092 |" in markdown
    assert "| autoattack | 20.0 [" in markdown
    assert "| (clean + autoattack) / 2 | A − B |" in markdown and "| — | — | — | — |" in markdown
    assert (tmp_path / "cmp" / "comparison.png").read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------- the recipe


def load_recipe():
    spec = importlib.util.spec_from_file_location("compare_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_linear(weight: torch.Tensor, threshold: float, x: torch.Tensor, y: torch.Tensor, folder: Path) -> Path:
    """The real evaluator on the two-class linear model "class 1 iff w·x > threshold": the folder is exactly
    what recipes/evaluate.py writes."""
    model = nn.Linear(weight.numel(), 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-weight, weight]) / 2)
        model.bias.copy_(torch.tensor([threshold / 2, -threshold / 2]))
    classifier = nn.Sequential(nn.Flatten(), model)
    evaluate_robustness(classifier, x, labels=y, attacks=["clean", "pgd-5"], epsilon=2 / 255, epsilon_sweep=(),
                        output_dir=folder, progress=False, plot=False)
    return folder


def test_recipe_compares_folders_written_by_the_evaluator(tmp_path, capsys) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 4, 4, generator=generator)
    truth = torch.randn(48, generator=generator)
    scores = x.flatten(1) @ truth
    threshold = float(scores.median())
    y = (scores > threshold).long()
    noisy = truth + 0.8 * torch.randn(48, generator=generator)
    a = evaluate_linear(truth, threshold, x, y, tmp_path / "eval-truth")
    b = evaluate_linear(noisy, threshold, x, y, tmp_path / "eval-noisy")
    out = tmp_path / "cmp"
    assert load_recipe().main(["--evaluations", str(a), str(b), "--names", "truth", "noisy", "--output_dir", str(out),
                               "--bootstrap_samples", "300", "--seed", "1", "--no_progress", "true"]) == 0
    printed = capsys.readouterr().out
    assert "| | truth | noisy |" in printed and "truth − noisy" in printed and "comparison.json" in printed
    data = json.loads((out / "comparison.json").read_text())
    reports = [json.loads((f / "robustness.json").read_text()) for f in (a, b)]
    rows = {m["name"]: m for m in data["metrics"]}
    assert list(rows) == ["clean", "pgd-5", "worst case"]  # no AutoAttack was run: no mean row
    for name in ("clean", "pgd-5"):
        for model, report in zip(("truth", "noisy"), reports):
            assert rows[name]["accuracy"][model]["value"] == pytest.approx(report["attacks"][name]["accuracy"])
        correct = [load_evaluation(f).correct[name] for f in (a, b)]
        pair = rows[name]["pairs"][0]
        assert (pair["only_first_correct"], pair["only_second_correct"]) == (
            int(np.sum(correct[0] & ~correct[1])), int(np.sum(~correct[0] & correct[1])))
        assert pair["mcnemar_p"] == mcnemar_exact(pair["only_first_correct"], pair["only_second_correct"])
    assert rows["clean"]["accuracy"]["truth"]["value"] == 1.0  # the true boundary: the test has teeth
    assert rows["clean"]["accuracy"]["noisy"]["value"] < 1.0
    assert "No (clean + autoattack) / 2 row" in " ".join(data["notes"])
    assert (data["bootstrap"]["samples"], data["bootstrap"]["seed"]) == (300, 1)
    assert (out / "comparison.png").is_file() and (out / "recipe_config.yaml").is_file()

    # the same model evaluated on other images is refused by the recipe too
    c = evaluate_linear(truth, threshold, x[:40], y[:40], tmp_path / "eval-fewer")
    with pytest.raises(ValueError, match="not of the same images"):
        load_recipe().main(["--evaluations", str(a), str(c), "--output_dir", str(tmp_path / "bad")])
    with pytest.raises(ValueError, match="two or more evaluation folders"):
        load_recipe().main(["--evaluations", str(a)])


# ---------------------------------------------------------------------------------------- L2


def test_an_l2_comparison_says_l2(tmp_path) -> None:
    """The threat model in the table, the JSON and the plot is the evaluations' own: ε = 0.5 is an L2 radius,
    never printed as an L∞ budget of 127.5/255."""
    n = 20
    labels = labels_for(n)
    l2 = AttackSettings(norm="L2", epsilon=0.5)
    outcomes = {"clean": np.arange(n) < 15, "pgd-20": np.arange(n) < 6}
    a = write_evaluation(tmp_path / "a", outcomes, labels, settings=l2)
    b = write_evaluation(tmp_path / "b", {**outcomes, "pgd-20": np.arange(n) < 9}, labels, settings=l2)
    comparison = compare_evaluations([a, b], bootstrap_samples=100, output_dir=tmp_path / "cmp")
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert (data["norm"], data["epsilon"]) == ("L2", 0.5) and comparison.threat_model.norm == "L2"
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "20 images, the same indices and labels in every evaluation, L2 ε = 0.5." in markdown
    assert "L∞" not in markdown and "/255" not in markdown


def test_an_linf_and_an_l2_evaluation_are_not_paired(tmp_path) -> None:
    n = 20
    labels = labels_for(n)
    outcomes = {"clean": np.arange(n) < 15, "pgd-20": np.arange(n) < 6}
    linf = write_evaluation(tmp_path / "linf", outcomes, labels, settings=AttackSettings(norm="Linf", epsilon=0.5))
    l2 = write_evaluation(tmp_path / "l2", outcomes, labels, settings=AttackSettings(norm="L2", epsilon=0.5))
    with pytest.raises(ValueError, match=r"different threat models: L∞ ε = 127.5/255 against L2 ε = 0.5\.") as refused:
        compare_evaluations([linf, l2], bootstrap_samples=10)
    assert "\n" not in str(refused.value)


def test_a_saved_comparison_of_the_first_schema_renders_as_it_did() -> None:
    """comparison.json files written before `norm` existed were all rendered as L∞; they still are."""
    data = {"schema_version": 1, "models": [{"name": "a"}, {"name": "b"}], "num_samples": 10, "epsilon": 8 / 255,
            "bootstrap": {"samples": 10, "confidence": 0.95, "seed": 0}, "metrics": [], "notes": []}
    assert "10 images, the same indices and labels in every evaluation, L∞ ε = 8/255." in format_comparison_markdown(data)


def test_exact_halves_round_the_same_way_everywhere():
    """821/2000 is exactly 41.05 %: the float just below it must not round down while 61/2000 rounds up."""
    from mimir_hf.evaluation.comparison_markdown import format_percent

    assert format_percent(821 / 2000) == "41.1" and format_percent(61 / 2000) == "3.1"
    assert format_percent(0.558 - 0.5275, signed=True) == "+3.1" and format_percent(0.5275 - 0.558, signed=True) == "−3.1"
    assert format_percent(0.4104) == "41.0" and format_percent(-0.0004, signed=True) == "0.0"
