"""mimir_hf.evaluation: attacks against closed forms, the worst-case column, the gradient-masking
checks on a deliberately masked model, the report schema and the errors for bad requests."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mimir_hf.evaluation import (
    AttackResult,
    AttackSettings,
    GradientMaskingWarning,
    PerSampleResults,
    RobustnessReport,
    evaluate_robustness,
    parse_attack_name,
    plan_attacks,
    plot_accuracy_comparison,
)




class TwoClassLinear(nn.Module):
    """logits = (−f/2, f/2) with f = w·x + b; `quantise=True` rounds the input to 1/255 first,
    which has a zero gradient everywhere (gradient masking by construction)."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.0, quantise: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.flatten().clone())
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.quantise = quantise

    def score(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantise:
            x = torch.round(x * 255) / 255
        return x.flatten(1) @ self.weight + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.score(x)
        return torch.stack([-f / 2, f / 2], dim=1)


def closed_form_robust(model: TwoClassLinear, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Exact L∞ robustness of a linear classifier on the box [0,1]: the worst point of the box ∩ ball
    moves every pixel by ε against the class, clipped to the box."""
    s = (2 * y - 1).float()
    direction = -s[:, None] * model.weight.detach().sign()[None, :]
    worst = (x.flatten(1) + epsilon * direction).clamp(0, 1)
    with torch.no_grad():
        clean_ok = (model.score(x) > 0).long() == y
        adv_ok = (s * (worst @ model.weight + model.bias)) > 0
    return clean_ok & adv_ok


def linear_problem(n: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weight = 0.1 * torch.randn(3 * 4 * 4, generator=generator)
    x = torch.rand(n, 3, 4, 4, generator=generator)
    scores = x.flatten(1) @ weight
    bias = -float(scores.median())
    y = (scores + bias > 0).long()
    y[:4] = 1 - y[:4]  # a few clean mistakes: robust accuracy must not count them
    return TwoClassLinear(weight, bias), x, y


def masked_problem(n: int = 24, seed: int = 0, quantise: bool = True):
    """Points on the 1/255 grid at margin 30ε from a ±1-weight linear boundary: the worst case (192ε of
    margin available) breaks every point, random noise in the ball (σ ≈ 8ε) practically none."""
    generator = torch.Generator().manual_seed(seed)
    d = 3 * 8 * 8
    weight = torch.randn(d, generator=generator).sign()
    x = 0.5 + 0.1 * (2 * torch.rand(n, 3, 8, 8, generator=generator) - 1)
    y = torch.randint(0, 2, (n,), generator=generator)
    eps = 8 / 255
    target = (2 * y - 1).float() * 30 * eps
    shift = (target - x.flatten(1) @ weight) / d
    x = torch.round((x + shift[:, None, None, None] * weight.view(1, 3, 8, 8)) * 255).clamp(0, 255) / 255
    return TwoClassLinear(weight, 0.0, quantise=quantise), x, y


QUICK = dict(progress=False, plot=False, epsilon_sweep=())


# ---------------------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("attack", ["pgd-20", "cw-20"])
@pytest.mark.parametrize("epsilon", [1 / 255, 3 / 255, 32 / 255])
def test_pgd_matches_closed_form_on_linear_model(attack: str, epsilon: float) -> None:
    model, x, y = linear_problem()
    report = evaluate_robustness(model, x, labels=y, attacks=["clean", attack], epsilon=epsilon, **QUICK)
    expected = closed_form_robust(model, x, y, epsilon).numpy()
    assert report.per_sample.correct[attack].tolist() == expected.tolist()
    assert report.accuracy("clean") == pytest.approx(float(((model.score(x) > 0).long() == y).float().mean()))
    assert report.accuracy(attack) < report.accuracy("clean")  # the test has teeth
    if epsilon < 4 / 255:
        assert report.accuracy(attack) > 0


def test_attack_names_parse_and_sweep_names() -> None:
    settings = AttackSettings(epsilon=8 / 255)
    assert parse_attack_name("pgd-20", settings).step_size == pytest.approx(2 / 255)
    assert parse_attack_name("PGD-100", settings).steps == 100
    assert parse_attack_name("cw", settings).steps == settings.cw_steps
    spec = parse_attack_name("pgd-5@eps=1/255", settings)
    assert spec.name == "pgd-5@eps=1/255" and spec.epsilon == pytest.approx(1 / 255)
    assert spec.step_size == pytest.approx(0.25 / 255)  # α/ε carried over
    planned = AttackSettings(epsilon=8 / 255, attacks=["pgd-20", "autoattack"], epsilon_sweep=["8/255", "64/255"])
    names = [s.name for s in plan_attacks(planned)]
    assert names == ["clean", "pgd-20", "autoattack", "pgd-20@eps=64/255"]


# ---------------------------------------------------------------------------------------- errors


def test_negative_epsilon_is_a_clear_error() -> None:
    model, x, y = linear_problem(8)
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-5"], epsilon=-1 / 255, **QUICK)
    with pytest.raises(ValueError, match="larger than the whole"):
        evaluate_robustness(model, x, labels=y, attacks=["pgd-5"], epsilon=8, **QUICK)
    with pytest.raises(ValueError, match="epsilon_sweep value must be >= 0"):
        evaluate_robustness(model, x, labels=y, attacks=["pgd-5"], epsilon_sweep=["-2/255"], progress=False)
    with pytest.raises(ValueError, match="epsilon in 'pgd-5@eps=-1/255'|Unknown attack"):
        evaluate_robustness(model, x, labels=y, attacks=["pgd-5@eps=-1/255"], **QUICK)


def test_unknown_attack_name_is_a_clear_error() -> None:
    model, x, y = linear_problem(8)
    with pytest.raises(ValueError, match=r"Unknown attack 'pgd-mii'.*Did you mean 'pgd-mi'"):
        evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-mii"], **QUICK)
    with pytest.raises(ValueError, match="needs a step count"):
        evaluate_robustness(model, x, labels=y, attacks=["pgd"], **QUICK)


def test_labels_outside_the_model_classes_are_a_clear_error() -> None:
    model, x, y = linear_problem(8)
    y = y.clone()
    y[0] = 7
    with pytest.raises(ValueError, match=r"labels in \[0, 7\] but the model has 2 output classes"):
        evaluate_robustness(model, x, labels=y, attacks=["clean"], **QUICK)


def test_model_label_names_must_match_the_data() -> None:
    from transformers import ViTConfig, ViTForImageClassification

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=10, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
    )
    with pytest.raises(ValueError, match="labels do not match the data"):
        evaluate_robustness(ViTForImageClassification(config), "builtin:digits", num_samples=4, attacks=["clean"], **QUICK)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(OSError, match="Cannot load an image classifier"):
        evaluate_robustness(str(tmp_path / "nowhere"), "builtin:digits", attacks=["clean"], **QUICK)


def test_pixel_range_is_checked() -> None:
    model, x, y = linear_problem(8)
    with pytest.raises(ValueError, match="divide by 255"):
        evaluate_robustness(model, x * 255, labels=y, attacks=["clean"], **QUICK)


# ---------------------------------------------------------------------------------------- report


def test_worst_case_is_the_per_sample_minimum_over_attacks(tmp_path) -> None:
    model, x, y = linear_problem(48, seed=1)
    report = evaluate_robustness(
        model, x, labels=y, attacks=["clean", "pgd-1", "cw-2", "pgd-10"],
        epsilon=4 / 255, step_size=1 / 255, epsilon_sweep=["64/255"], output_dir=tmp_path, progress=False, plot=False,
    )
    saved = PerSampleResults.load(tmp_path / "per_sample.npz")
    headline = ["clean", "pgd-1", "cw-2", "pgd-10"]
    assert saved.worst_case_attacks == headline  # the ε-sweep entry is not part of the headline worst case
    table = np.stack([saved.correct[name] for name in headline]).astype(int)
    assert saved.worst_case.astype(int).tolist() == table.min(axis=0).tolist()
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["worst_case"]["accuracy"] == pytest.approx(table.min(axis=0).mean())
    assert data["worst_case"]["accuracy"] <= min(data["attacks"][n]["accuracy"] for n in headline)
    assert report.worst_case_accuracy == pytest.approx(data["worst_case"]["accuracy"])


def test_worst_case_with_disagreeing_attacks() -> None:
    settings = AttackSettings()
    labels = np.array([0, 1, 0, 1])

    def result(name: str, correct: list[bool]) -> AttackResult:
        return AttackResult(parse_attack_name(name, settings), np.array(correct), np.zeros(4, dtype=np.int64))

    results = {
        "clean": result("clean", [True, True, True, False]),
        "pgd-20": result("pgd-20", [True, False, True, False]),
        "cw": result("cw", [False, True, True, False]),
        "pgd-20@eps=64/255": result("pgd-20@eps=64/255", [False, False, False, False]),
    }
    report = RobustnessReport.from_results(model="m", dataset="d", split="test", epsilon=8 / 255, seed=0, labels=labels,
                                           results=results)
    assert report.per_sample.worst_case.tolist() == [False, False, True, False]
    assert report.worst_case_accuracy == 0.25
    assert "pgd-20@eps=64/255" not in report.worst_case.attacks


SCHEMA_ATTACK_KEYS = {
    "accuracy": float, "epsilon": float, "num_samples": int, "steps": (int, type(None)),
    "step_size": (float, type(None)), "restarts": int, "seed": int, "library": str, "library_version": str,
    "wall_time_seconds": (int, float),
}


def test_report_json_matches_the_contract_schema(tmp_path) -> None:
    model, x, y = masked_problem(12, quantise=False)
    evaluate_robustness(
        model, x, labels=y, attacks=["clean", "pgd-5", "square"], square_queries=20, epsilon_sweep=["64/255"],
        output_dir=tmp_path, progress=False, seed=3,
    )
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["schema_version"] == 2
    for key, kind in {"model": str, "dataset": str, "split": str, "num_samples": int, "seed": int}.items():
        assert isinstance(data[key], kind), key
    assert data["num_samples"] == 12 and data["seed"] == 3
    threat = data["threat_model"]
    assert threat["norm"] == "Linf" and threat["epsilon"] == pytest.approx(8 / 255)
    assert threat["input_range"] == [0.0, 1.0] and threat["normalization"] == "none"
    assert {"mimir_hf", "torch", "transformers", "autoattack"} <= set(data["versions"])
    assert set(data["attacks"]) == {"clean", "pgd-5", "square", "pgd-20@eps=64/255"}
    for name, entry in data["attacks"].items():
        for key, kind in SCHEMA_ATTACK_KEYS.items():
            assert isinstance(entry[key], kind), (name, key, entry[key])
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert entry["library"] in ("mimir_hf", "autoattack")
    assert data["attacks"]["square"]["library"] == "autoattack"
    assert data["attacks"]["square"]["library_version"] == data["versions"]["autoattack"]
    assert set(data["worst_case"]) >= {"accuracy", "attacks"}
    assert all(set(c) >= {"name", "passed", "detail"} and isinstance(c["passed"], bool) for c in data["checks"])
    assert (tmp_path / data["per_sample_file"]).is_file()
    assert (tmp_path / data["autoattack_log"]).is_file()
    assert (tmp_path / "accuracy_vs_epsilon.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------- checks


def _checks(report: RobustnessReport) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


def test_checks_fire_on_a_gradient_masked_model() -> None:
    model, x, y = masked_problem(quantise=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_robustness(
            model, x, labels=y, attacks=["clean", "pgd-20", "pgd-40", "square"], square_queries=300,
            epsilon_sweep=["4/255", "64/255"], progress=False, plot=False,
        )
    assert report.accuracy("clean") == 1.0
    assert report.accuracy("pgd-20") == 1.0  # PGD is starved of gradients ...
    assert report.accuracy("square") < 0.5  # ... while the black-box attack breaks the model
    checks = _checks(report)
    assert checks["square_not_better_than_white_box"] is False
    assert checks["large_epsilon_accuracy_near_zero"] is False
    assert checks["nonzero_input_gradients"] is False
    assert any(issubclass(w.category, GradientMaskingWarning) for w in caught)
    assert report.worst_case_accuracy == pytest.approx(report.accuracy("square"))  # the worst case is honest
    assert "FAILED" in report.format_table()


def test_checks_pass_on_the_same_model_without_masking() -> None:
    model, x, y = masked_problem(quantise=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientMaskingWarning)
        report = evaluate_robustness(
            model, x, labels=y, attacks=["clean", "pgd-20", "pgd-40", "square"], square_queries=300,
            epsilon_sweep=["4/255", "64/255"], progress=False, plot=False,
        )
    assert report.accuracy("pgd-20") == 0.0
    assert not report.failed_checks, report.format_table()
    assert {"accuracy_decreases_with_epsilon", "accuracy_decreases_with_steps", "square_not_better_than_white_box",
            "large_epsilon_accuracy_near_zero", "nonzero_input_gradients"} <= set(_checks(report))


def test_check_on_steps_and_autoattack_fire_on_inconsistent_figures() -> None:
    from mimir_hf.evaluation import run_checks

    settings = AttackSettings()
    labels = np.zeros(10, dtype=np.int64)

    def result(name: str, accuracy: float) -> AttackResult:
        correct = np.arange(10) < round(10 * accuracy)
        return AttackResult(parse_attack_name(name, settings), correct, np.zeros(10, dtype=np.int64))

    results = {n: result(n, a) for n, a in [("clean", 1.0), ("pgd-20", 0.3), ("pgd-100", 0.6), ("autoattack", 0.8)]}
    checks = {c.name: c.passed for c in run_checks(results, epsilon=8 / 255, labels=labels)[0]}
    assert checks["accuracy_decreases_with_steps"] is False
    assert checks["autoattack_at_most_pgd"] is False


def test_autoattack_above_pgd_within_the_tolerance_says_so() -> None:
    """A reduced AutoAttack one image above PGD-20 (23.44 % against 21.88 % of 64) passes only through the
    check's one-image tolerance: the check says what happened, and the table does not print a plain [ok]."""
    from mimir_hf.evaluation import run_checks

    settings = AttackSettings(autoattack_version="custom", autoattack_attacks=("apgd-ce",))
    n = 64
    labels = np.zeros(n, dtype=np.int64)

    def result(name: str, correct: int, **extra) -> AttackResult:
        outcome = np.arange(n) < correct
        return AttackResult(parse_attack_name(name, settings), outcome, np.zeros(n, dtype=np.int64), extra=extra)

    results = {"clean": result("clean", n), "pgd-20": result("pgd-20", 14),
               "autoattack": result("autoattack", 15, attacks_run=["apgd-ce"])}
    (check,) = [c for c in run_checks(results, epsilon=8 / 255, labels=labels)[0] if c.name == "autoattack_at_most_pgd"]
    assert check.passed and check.within_tolerance
    assert check.detail.startswith("a reduced AutoAttack (APGD-CE) is weaker than pgd-20 on this model, by 1 of 64 images")
    assert "autoattack 23.44% vs pgd-20 21.88%" in check.detail
    report = RobustnessReport.from_results(model="m", dataset="d", split="test", epsilon=8 / 255, seed=0, labels=labels,
                                           results=results, checks=[check])
    assert "[ok, within tolerance] autoattack_at_most_pgd: a reduced AutoAttack" in report.format_table()
    # at or below PGD it is a plain pass; beyond the tolerance, a failure
    results["autoattack"] = result("autoattack", 14, attacks_run=["apgd-ce"])
    (check,) = [c for c in run_checks(results, epsilon=8 / 255, labels=labels)[0] if c.name == "autoattack_at_most_pgd"]
    assert check.passed and not check.within_tolerance and check.detail.startswith("autoattack 21.88%")
    results["autoattack"] = result("autoattack", 16, attacks_run=["apgd-ce"])
    (check,) = [c for c in run_checks(results, epsilon=8 / 255, labels=labels)[0] if c.name == "autoattack_at_most_pgd"]
    assert not check.passed and not check.within_tolerance


def test_every_check_is_a_named_function_that_says_what_it_needs() -> None:
    from mimir_hf.evaluation.checks import CHECKS, CheckInputs

    inputs = CheckInputs(results={}, epsilon=8 / 255, labels=np.zeros(0, dtype=np.int64))
    for check in CHECKS:
        outcome = check(inputs)
        assert outcome == [] or (isinstance(outcome, str) and outcome.startswith(check.__name__)), check.__name__


def test_a_model_that_ignores_its_input_is_flagged() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 1.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 2) + 0 * x.flatten(1).sum(1, keepdim=True)

    x = torch.rand(20, 3, 4, 4)
    y = torch.tensor([1] * 4 + [0] * 16)
    report = evaluate_robustness(Constant(), x, labels=y, attacks=["clean", "pgd-10"], epsilon_sweep=["64/255"],
                                 progress=False, plot=False)
    checks = _checks(report)
    assert report.accuracy("pgd-10") == pytest.approx(0.2)  # "robust" on its favourite class
    assert checks["predictions_depend_on_input"] is False
    assert checks["large_epsilon_accuracy_near_zero"] is False
    assert checks["nonzero_input_gradients"] is False
    assert report.per_class["0"]["clean_accuracy"] == 0.0


def _plotted_axis(draw):
    """Run `draw()` and return (its result, the axes of the figure it saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captured = {}
    savefig = plt.Figure.savefig

    def keep_figure(figure, path, *args, **kwargs):
        captured["axis"] = figure.axes[0]
        return savefig(figure, path, *args, **kwargs)

    plt.Figure.savefig = keep_figure
    try:
        result = draw()
    finally:
        plt.Figure.savefig = savefig
    return result, captured["axis"]


def test_comparison_plot_draws_each_value_where_it_belongs(tmp_path) -> None:
    rows = {"scratch": {"clean": 0.5, "pgd-20": 0.25}, "mimir": {"clean": 0.75, "autoattack": 0.125}}
    path, axis = _plotted_axis(lambda: plot_accuracy_comparison(rows, tmp_path / "cmp.png", title="t"))
    assert path.read_bytes().startswith(b"\x89PNG")
    labels = {text.get_text() for text in axis.texts}
    assert labels == {"50.0", "25.0", "75.0", "12.5"}  # one label per measured value, none for the gaps
    assert not axis.collections  # no intervals given, no error bars
    heights = sorted(round(p.get_height(), 6) for p in axis.patches)
    assert heights == [0.0, 0.0, 12.5, 25.0, 50.0, 75.0]
    assert plot_accuracy_comparison({}, tmp_path / "none.png") is None
    with pytest.raises(ValueError, match="fraction"):
        plot_accuracy_comparison({"m": {"clean": 75.0}}, tmp_path / "bad.png")


def test_comparison_plot_draws_the_intervals_given(tmp_path) -> None:
    rows = {"m": {"clean": 0.5, "pgd-20": 0.25}}
    _, axis = _plotted_axis(lambda: plot_accuracy_comparison(rows, tmp_path / "ci.png",
                                                             intervals={"m": {"clean": (0.4, 0.6)}}))
    segments = [seg for collection in axis.collections for seg in collection.get_segments()]
    assert [tuple(np.round(seg[:, 1], 6)) for seg in segments] == [(40.0, 60.0)]  # one bar, from low to high
    with pytest.raises(ValueError, match="low <= high"):
        plot_accuracy_comparison({"m": {"clean": 0.5}}, tmp_path / "bad.png", intervals={"m": {"clean": (0.6, 0.4)}})


def test_one_epsilon_formatter_that_round_trips():
    """Reports, attack names and cards share one formatter; L∞ text parses back to the budget that ran."""
    from mimir_hf.evaluation import format_epsilon, parse_budget
    from mimir_hf.hub import robustness_results as hub_report

    assert hub_report.format_epsilon is format_epsilon
    for epsilon in (8 / 255, 0.5 / 255, 4 / 255, 0.0314, 0.123):
        assert abs(parse_budget(format_epsilon(epsilon)) - epsilon) < 1e-6
    assert format_epsilon(0.0314) == "8.007/255"  # never rounded to a nicer fraction than what ran
    assert (format_epsilon(None), format_epsilon(0.5, "L2")) == ("—", "0.5")


def test_evaluate_from_args_leaves_the_callers_thread_count_alone(tmp_path, monkeypatch):
    import torch

    import mimir_hf.evaluation.from_args as from_args
    from mimir_hf.data import DataArguments
    from mimir_hf.evaluation import EvaluationArguments

    seen = []
    monkeypatch.setattr(from_args, "evaluate_robustness", lambda *a, **k: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    from_args.evaluate_from_args(EvaluationArguments(output_dir=str(tmp_path), num_threads=before + 1), DataArguments())
    assert seen == [before + 1] and torch.get_num_threads() == before


def test_attack_run_state_goes_to_details_not_into_the_shared_spec(monkeypatch):
    """AttackSpec is frozen and shared by every batch: a run's counts must not leak into it."""
    import torch
    from torch import nn

    from mimir_hf.evaluation import Attack, AttackSettings, parse_attack_name
    from mimir_hf.mutual_information import ESTIMATORS
    from mimir_hf.evaluation.wrapper import LogitsModel

    def singular(*args, **kwargs):
        raise torch.linalg.LinAlgError("singular")

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Flatten()  # the encoder whose output the adaptive attacks read
            self.head = nn.Linear(48, 3)

        def forward(self, x):
            return self.head(self.features(x))

    monkeypatch.setitem(ESTIMATORS, "hsic_cca", singular)
    model = LogitsModel(Tiny())
    spec = parse_attack_name("pgd-mi-3", AttackSettings(epsilon=8 / 255))
    options_before = dict(spec.options)
    details: dict = {}
    Attack(spec).run(model, torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 0]), details=details)
    assert details["mi_dropped_steps"] == 3  # every step fell back to CE, counted where the run reports it
    assert dict(spec.options) == options_before
