"""Sanity checks against gradient masking (the ones careful robustness evaluations apply).

A model whose gradients are useless (quantised or shattered inputs, saturated losses, a model
that ignores its input) looks robust to gradient attacks without being robust. These checks
compare the attacks with each other, on the same samples, and flag the tell-tale patterns:

- accuracy rises with ε, or with more PGD steps (a stronger attack must not help the defender);
- AutoAttack reports more accuracy than a PGD attack it should dominate;
- the black-box Square attack beats every white-box attack (the gradients are lying);
- accuracy at a large ε (64/255) stays well above zero (an unbounded attack must succeed);
- inputs whose loss gradient is exactly zero (nothing for PGD to follow);
- adversarial examples outside the ε-ball (a bug, or an attack with a different budget);
- one class predicted for most inputs (the "robust favourite class" trap).

Each check is a small function of the results (`CHECKS` lists them, in the order they are reported)
that returns its `Check`s, or says what it needs when the results cannot show it. The runner warns
loudly on a failure and writes every check into `robustness.json`. A comparison between two attacks
allows a small tolerance (at least one image, since random starts differ); a check that passes only
through it says so (`Check.within_tolerance`) instead of a plain pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .attack_specs import format_epsilon, norm_display
from .autoattack_suite import autoattack_suite
from .results import AttackResult, Check

__all__ = ["CHECKS", "LARGE_EPSILON", "CheckInputs", "run_checks"]

LARGE_EPSILON = {"Linf": 64 / 255, "L2": 8.0}
"""Per threat model, the budget at which an attack must succeed almost everywhere (L2 8.0: an average
move of 37/255 per value of a 32×32 RGB image; pass a larger `large_epsilon` for larger images)."""
_EPS_MATCH = 1e-9


def _fmt(value: float) -> str:
    return f"{100 * value:.2f}%"


def _same_eps(a: float, b: float) -> bool:
    return abs(a - b) <= _EPS_MATCH


@dataclass(frozen=True)
class CheckInputs:
    """What the checks look at: every attack's per-sample results on the same samples, and the thresholds."""

    results: Mapping[str, AttackResult]
    epsilon: float
    labels: np.ndarray
    zero_gradient: np.ndarray | None = None
    tolerance: float = 0.005
    large_epsilon: float = LARGE_EPSILON["Linf"]
    large_epsilon_max_accuracy: float = 0.05
    norm: str = "Linf"

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def slack(self) -> float:
        """The accuracy difference a comparison between two attacks tolerates: `tolerance`, at least one sample."""
        return max(self.tolerance, 1.0 / max(self.n, 1)) + 1e-12

    @property
    def clean(self) -> AttackResult | None:
        return next((r for r in self.results.values() if r.spec.kind == "clean"), None)

    @property
    def attacked(self) -> list[AttackResult]:
        return [r for r in self.results.values() if r.spec.kind != "clean"]

    def white_box_at(self, epsilon: float) -> list[AttackResult]:
        return [r for r in self.attacked if r.spec.white_box and _same_eps(r.spec.epsilon, epsilon)]

    def suffix(self, epsilon: float) -> str:
        """A check's name at a budget other than the headline one ends in `@<ε>`."""
        return "" if _same_eps(epsilon, self.epsilon) else "@" + format_epsilon(epsilon, self.norm)


CheckFunction = Callable[[CheckInputs], "list[Check] | str"]
"""A check: its `Check`s, or (a string) what it needs when the results cannot show it."""


def accuracy_decreases_with_epsilon(inputs: CheckInputs) -> list[Check] | str:
    """Per attack family, accuracy must not rise with ε (clean counts as ε = 0 for every family)."""
    families: dict[tuple, list[AttackResult]] = defaultdict(list)
    for r in inputs.attacked:
        families[(r.spec.kind, r.spec.steps, r.spec.restarts)].append(r)
    clean = inputs.clean
    sequences = []
    for members in families.values():
        points = sorted({r.spec.epsilon: r for r in members}.items())
        if clean is not None:
            points = [(0.0, clean)] + points
        if len(points) >= 3 or (len(points) == 2 and clean is None):
            sequences.append(points)
    if not sequences:
        return "accuracy_decreases_with_epsilon (needs one attack at two or more budgets, e.g. the epsilon sweep)"
    bad = [
        f"{r1.name} ({_fmt(r1.accuracy)}) > {r0.name} ({_fmt(r0.accuracy)})"
        for points in sequences
        for (_, r0), (_, r1) in zip(points, points[1:])
        if r1.accuracy > r0.accuracy + inputs.slack
    ]
    curves = "; ".join(
        ", ".join(f"{format_epsilon(e, inputs.norm)}: {_fmt(r.accuracy)}" for e, r in points) for points in sequences
    )
    detail = ("accuracy rises with epsilon: " + "; ".join(bad) + ". " if bad else "") + f"Curves: {curves}."
    return [Check("accuracy_decreases_with_epsilon", not bad, detail)]


def accuracy_decreases_with_steps(inputs: CheckInputs) -> list[Check] | str:
    """A white-box attack with more steps (same kind, budget and step size) must not find fewer adversarial examples."""
    by_steps: dict[tuple, list[AttackResult]] = defaultdict(list)
    for r in inputs.attacked:
        if r.spec.white_box:
            by_steps[(r.spec.kind, round(r.spec.epsilon, 9), round(r.spec.step_size or 0, 9))].append(r)
    groups = [sorted(g, key=lambda r: r.spec.steps or 0) for g in by_steps.values() if len({r.spec.steps for r in g}) > 1]
    if not groups:
        return "accuracy_decreases_with_steps (needs e.g. pgd-20 and pgd-100)"
    bad = [
        f"{b.name} ({_fmt(b.accuracy)}) > {a.name} ({_fmt(a.accuracy)})"
        for g in groups
        for a, b in zip(g, g[1:])
        if b.accuracy > a.accuracy + inputs.slack
    ]
    text = "; ".join(", ".join(f"{r.name}: {_fmt(r.accuracy)}" for r in g) for g in groups)
    detail = ("more steps helped the defender: " + "; ".join(bad) + ". " if bad else "") + f"{text}."
    return [Check("accuracy_decreases_with_steps", not bad, detail)]


def _autoattack_text(aa: AttackResult) -> str:
    suite = autoattack_suite(aa.spec.options.get("version"), aa.extra.get("attacks_run"), aa.spec.options.get("attacks"))
    if suite and suite.startswith("custom: "):
        return f"a reduced AutoAttack ({suite.removeprefix('custom: ')})"
    return f"AutoAttack ({suite})" if suite else "AutoAttack"


def autoattack_at_most_pgd(inputs: CheckInputs) -> list[Check] | str:
    """AutoAttack must find at least what every white-box attack at its budget finds.

    Above a white-box attack by more than the tolerance, the check fails. Above it by less, the check
    passes within tolerance and says what happened: on this model AutoAttack (often a reduced suite)
    was weaker than PGD, which the per-sample worst case absorbs, but a reader of a plain pass would
    not know.
    """
    checks = []
    for aa in (r for r in inputs.attacked if r.spec.kind == "autoattack"):
        white = inputs.white_box_at(aa.spec.epsilon)
        if not white:
            continue
        above = [r for r in white if aa.accuracy > r.accuracy]
        bad = [r for r in above if aa.accuracy > r.accuracy + inputs.slack]
        only_pgd = int(np.sum(aa.correct & ~np.logical_and.reduce([r.correct for r in white])))
        detail = f"{aa.name} {_fmt(aa.accuracy)} vs " + ", ".join(f"{r.name} {_fmt(r.accuracy)}" for r in white)
        detail += f"; {only_pgd} point(s) broken by a white-box attack but not by AutoAttack."
        if bad:
            detail = "AutoAttack is weaker than " + ", ".join(r.name for r in bad) + ": " + detail
        elif above:
            gap = round((aa.accuracy - min(r.accuracy for r in above)) * inputs.n)
            allowed = max(inputs.tolerance, 1.0 / max(inputs.n, 1))
            detail = (f"{_autoattack_text(aa)} is weaker than {', '.join(r.name for r in above)} on this model, by "
                      f"{gap} of {inputs.n} images: within the check's tolerance ({_fmt(allowed)}, at least one image), "
                      f"so not a failure, and the worst case counts both. " + detail)
        checks.append(Check(f"autoattack_at_most_pgd{inputs.suffix(aa.spec.epsilon)}", not bad, detail,
                            within_tolerance=bool(above) and not bad))
    return checks or "autoattack_at_most_pgd (needs autoattack and a white-box attack at the same budget)"


def square_not_better_than_white_box(inputs: CheckInputs) -> list[Check] | str:
    """The black-box Square attack must not beat every white-box attack at its budget (the gradients would be lying)."""
    checks = []
    for sq in (r for r in inputs.attacked if r.spec.kind == "square"):
        white = inputs.white_box_at(sq.spec.epsilon)
        if not white:
            continue
        best = min(white, key=lambda r: r.accuracy)
        only_square = int(np.sum(~sq.correct & np.logical_and.reduce([r.correct for r in white])))
        failed = sq.accuracy < best.accuracy - inputs.slack
        detail = (
            ("the black-box Square attack beats every white-box attack — a sign of gradient masking: " if failed else "")
            + f"{sq.name} {_fmt(sq.accuracy)} vs best white-box {best.name} {_fmt(best.accuracy)}; "
            f"{only_square} point(s) broken by Square and by no white-box attack."
        )
        checks.append(Check(f"square_not_better_than_white_box{inputs.suffix(sq.spec.epsilon)}", not failed, detail))
    return checks or "square_not_better_than_white_box (needs square and a white-box attack at the same budget)"


def large_epsilon_accuracy_near_zero(inputs: CheckInputs) -> list[Check] | str:
    """An attack at a large budget (64/255 L∞) must succeed almost everywhere."""
    large = [r for r in inputs.attacked if r.spec.epsilon >= inputs.large_epsilon - 1e-9 and r.spec.kind != "square"]
    budget = format_epsilon(inputs.large_epsilon, inputs.norm)
    if not large:
        return f"large_epsilon_accuracy_near_zero (needs an attack at ε ≥ {budget})"
    best = min(large, key=lambda r: r.accuracy)
    passed = best.accuracy <= inputs.large_epsilon_max_accuracy
    detail = ((f"an attack at ε ≥ {budget} should succeed almost everywhere; " if not passed else "")
              + f"{best.name}: {_fmt(best.accuracy)} (threshold {_fmt(inputs.large_epsilon_max_accuracy)}).")
    return [Check("large_epsilon_accuracy_near_zero", passed, detail)]


def nonzero_input_gradients(inputs: CheckInputs) -> list[Check] | str:
    """Inputs whose loss gradient is exactly zero leave PGD nothing to follow."""
    zero = inputs.zero_gradient
    if zero is None or not zero.size:
        return "nonzero_input_gradients"
    count = int(np.sum(zero))
    allowed = int(np.floor(inputs.tolerance * zero.size))
    detail = (f"{count} of {zero.size} sample(s) have an exactly zero input gradient of the margin loss"
              + (" — PGD has nothing to follow there (quantised or non-differentiable input path?)" if count > allowed else "")
              + ".")
    return [Check("nonzero_input_gradients", count <= allowed, detail)]


def perturbation_within_budget(inputs: CheckInputs) -> list[Check] | str:
    """Every adversarial example must lie in its ε-ball and in [0, 1] (else a bug, or an attack with another budget)."""
    if not inputs.attacked:
        return []
    outside = [r for r in inputs.attacked if r.max_perturbation > r.spec.epsilon + 1e-5]
    detail = (
        "outside the ε-ball: " + ", ".join(f"{r.name} ({r.max_perturbation:.5f} > {r.spec.epsilon:.5f})" for r in outside)
        if outside
        else f"every adversarial example lies in its {norm_display(inputs.norm)} ball and in [0, 1]."
    )
    return [Check("perturbation_within_budget", not outside, detail)]


def predictions_depend_on_input(inputs: CheckInputs) -> list[Check] | str:
    """A model that (nearly) ignores its input is not robust, however flat its curve: it is "robust" on its
    favourite class only. Flags a class predicted for over half the inputs and for more than twice its
    share of the labels."""
    clean, n, labels = inputs.clean, inputs.n, inputs.labels
    if clean is None or not n:
        return []
    values, counts = np.unique(clean.predictions, return_counts=True)
    top, share = int(values[np.argmax(counts)]), float(counts.max() / n)
    label_share = float(np.mean(labels == top))
    passed = not (share > 0.5 and share > 2 * label_share)
    at_eps = [r for r in inputs.attacked if _same_eps(r.spec.epsilon, inputs.epsilon)]
    robust = np.logical_and.reduce([clean.correct] + [r.correct for r in at_eps])
    in_top = int(np.sum(robust & (labels == top)))
    detail = (
        ("the model predicts one class for most inputs; its 'robust' accuracy is largely that class's frequency, "
         "not robustness — " if not passed else "")
        + f"most frequent clean prediction: class {top} on {_fmt(share)} of samples ({_fmt(label_share)} of "
        f"labels); {in_top} of {int(robust.sum())} robust point(s) are of that class."
    )
    return [Check("predictions_depend_on_input", passed, detail)]


CHECKS: tuple[CheckFunction, ...] = (
    accuracy_decreases_with_epsilon,
    accuracy_decreases_with_steps,
    autoattack_at_most_pgd,
    square_not_better_than_white_box,
    large_epsilon_accuracy_near_zero,
    nonzero_input_gradients,
    perturbation_within_budget,
    predictions_depend_on_input,
)


def run_checks(
    results: Mapping[str, AttackResult],
    *,
    epsilon: float,
    labels: np.ndarray,
    zero_gradient: np.ndarray | None = None,
    tolerance: float = 0.005,
    large_epsilon: float | None = None,
    large_epsilon_max_accuracy: float = 0.05,
    norm: str = "Linf",
) -> tuple[list[Check], list[str]]:
    """Compute every check the results allow. Returns (checks, names of checks skipped for lack of data).

    Args:
        results: attack name → result, all on the same samples.
        epsilon: the headline budget.
        labels: the true labels (N,).
        zero_gradient: per sample, whether the margin loss's input gradient at the clean point is exactly zero.
        tolerance: accuracy slack for the comparisons (at least one sample).
        large_epsilon: the budget at or above which accuracy must be near zero (default: the norm's `LARGE_EPSILON`).
        large_epsilon_max_accuracy: what "near zero" means.
    """
    inputs = CheckInputs(
        results=results, epsilon=epsilon, labels=labels, zero_gradient=zero_gradient, tolerance=tolerance,
        large_epsilon=LARGE_EPSILON[norm] if large_epsilon is None else large_epsilon,
        large_epsilon_max_accuracy=large_epsilon_max_accuracy, norm=norm,
    )
    checks: list[Check] = []
    skipped: list[str] = []
    for check in CHECKS:
        found = check(inputs)
        if isinstance(found, str):
            skipped.append(found)
        else:
            checks += found
    return checks, skipped
