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

Each check returns `Check(name, passed, detail)`; the runner warns loudly on a failure and writes
every check into `robustness.json`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from .attack_specs import format_epsilon, norm_display
from .results import AttackResult, Check

__all__ = ["run_checks", "LARGE_EPSILON"]

LARGE_EPSILON = {"Linf": 64 / 255, "L2": 8.0}
"""Per threat model, the budget at which an attack must succeed almost everywhere (L2 8.0: an average
move of 37/255 per value of a 32×32 RGB image; pass a larger `large_epsilon` for larger images)."""
_EPS_MATCH = 1e-9


def _fmt(value: float) -> str:
    return f"{100 * value:.2f}%"


def _same_eps(a: float, b: float) -> bool:
    return abs(a - b) <= _EPS_MATCH


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
        large_epsilon: the budget at or above which accuracy must be near zero.
        large_epsilon_max_accuracy: what "near zero" means.
    """
    if large_epsilon is None:
        large_epsilon = LARGE_EPSILON[norm]
    n = int(labels.size)
    slack = max(tolerance, 1.0 / max(n, 1)) + 1e-12
    checks: list[Check] = []
    skipped: list[str] = []
    attacked = {name: r for name, r in results.items() if r.spec.kind != "clean"}
    clean = next((r for r in results.values() if r.spec.kind == "clean"), None)

    # 1. monotone in epsilon, per attack family (clean counts as ε = 0 for every family)
    families: dict[tuple, list[AttackResult]] = defaultdict(list)
    for r in attacked.values():
        families[(r.spec.kind, r.spec.steps, r.spec.restarts)].append(r)
    sequences = []
    for members in families.values():
        points = sorted({r.spec.epsilon: r for r in members}.items())
        if clean is not None:
            points = [(0.0, clean)] + points
        if len(points) >= 3 or (len(points) == 2 and clean is None):
            sequences.append(points)
    if sequences:
        bad = []
        for points in sequences:
            for (e0, r0), (e1, r1) in zip(points, points[1:]):
                if r1.accuracy > r0.accuracy + slack:
                    bad.append(f"{r1.name} ({_fmt(r1.accuracy)}) > {r0.name} ({_fmt(r0.accuracy)})")
        seq_text = "; ".join(
            ", ".join(f"{format_epsilon(e, norm)}: {_fmt(r.accuracy)}" for e, r in points) for points in sequences
        )
        checks.append(
            Check(
                "accuracy_decreases_with_epsilon",
                not bad,
                ("accuracy rises with epsilon: " + "; ".join(bad) + ". " if bad else "") + f"Curves: {seq_text}.",
            )
        )
    else:
        skipped.append("accuracy_decreases_with_epsilon (needs one attack at two or more budgets, e.g. the epsilon sweep)")

    # 2. monotone in steps, per kind at the same budget and step size
    by_steps: dict[tuple, list[AttackResult]] = defaultdict(list)
    for r in attacked.values():
        if r.spec.white_box:
            by_steps[(r.spec.kind, round(r.spec.epsilon, 9), round(r.spec.step_size or 0, 9))].append(r)
    groups = [sorted(g, key=lambda r: r.spec.steps or 0) for g in by_steps.values() if len({r.spec.steps for r in g}) > 1]
    if groups:
        bad = [
            f"{b.name} ({_fmt(b.accuracy)}) > {a.name} ({_fmt(a.accuracy)})"
            for g in groups
            for a, b in zip(g, g[1:])
            if b.accuracy > a.accuracy + slack
        ]
        text = "; ".join(", ".join(f"{r.name}: {_fmt(r.accuracy)}" for r in g) for g in groups)
        checks.append(
            Check(
                "accuracy_decreases_with_steps",
                not bad,
                ("more steps helped the defender: " + "; ".join(bad) + ". " if bad else "") + f"{text}.",
            )
        )
    else:
        skipped.append("accuracy_decreases_with_steps (needs e.g. pgd-20 and pgd-100)")

    # 3. AutoAttack at or below every white-box figure at its budget
    autoattacks = [r for r in attacked.values() if r.spec.kind == "autoattack"]
    compared = False
    for aa in autoattacks:
        white = [r for r in attacked.values() if r.spec.white_box and _same_eps(r.spec.epsilon, aa.spec.epsilon)]
        if not white:
            continue
        compared = True
        bad = [r for r in white if aa.accuracy > r.accuracy + slack]
        only_pgd = int(np.sum(aa.correct & ~np.logical_and.reduce([r.correct for r in white])))
        detail = f"{aa.name} {_fmt(aa.accuracy)} vs " + ", ".join(f"{r.name} {_fmt(r.accuracy)}" for r in white)
        detail += f"; {only_pgd} point(s) broken by a white-box attack but not by AutoAttack."
        checks.append(
            Check(
                f"autoattack_at_most_pgd{'' if _same_eps(aa.spec.epsilon, epsilon) else '@' + format_epsilon(aa.spec.epsilon, norm)}",
                not bad,
                ("AutoAttack is weaker than " + ", ".join(r.name for r in bad) + ": " if bad else "") + detail,
            )
        )
    if not compared:
        skipped.append("autoattack_at_most_pgd (needs autoattack and a white-box attack at the same budget)")

    # 4. the black-box attack must not beat the white-box ones
    squares = [r for r in attacked.values() if r.spec.kind == "square"]
    compared = False
    for sq in squares:
        white = [r for r in attacked.values() if r.spec.white_box and _same_eps(r.spec.epsilon, sq.spec.epsilon)]
        if not white:
            continue
        compared = True
        best = min(white, key=lambda r: r.accuracy)
        any_white = np.logical_and.reduce([r.correct for r in white])
        only_square = int(np.sum(~sq.correct & any_white))
        failed = sq.accuracy < best.accuracy - slack
        checks.append(
            Check(
                f"square_not_better_than_white_box{'' if _same_eps(sq.spec.epsilon, epsilon) else '@' + format_epsilon(sq.spec.epsilon, norm)}",
                not failed,
                (
                    "the black-box Square attack beats every white-box attack — a sign of gradient masking: "
                    if failed
                    else ""
                )
                + f"{sq.name} {_fmt(sq.accuracy)} vs best white-box {best.name} {_fmt(best.accuracy)}; "
                f"{only_square} point(s) broken by Square and by no white-box attack.",
            )
        )
    if not compared:
        skipped.append("square_not_better_than_white_box (needs square and a white-box attack at the same budget)")

    # 5. large budget → accuracy near zero
    large = [r for r in attacked.values() if r.spec.epsilon >= large_epsilon - 1e-9 and r.spec.kind != "square"]
    if large:
        best = min(large, key=lambda r: r.accuracy)
        passed = best.accuracy <= large_epsilon_max_accuracy
        checks.append(
            Check(
                "large_epsilon_accuracy_near_zero",
                passed,
                (f"an attack at ε ≥ {format_epsilon(large_epsilon, norm)} should succeed almost everywhere; " if not passed else "")
                + f"{best.name}: {_fmt(best.accuracy)} (threshold {_fmt(large_epsilon_max_accuracy)}).",
            )
        )
    else:
        skipped.append(f"large_epsilon_accuracy_near_zero (needs an attack at ε ≥ {format_epsilon(large_epsilon, norm)})")

    # 6. exactly-zero input gradients
    if zero_gradient is not None and zero_gradient.size:
        count = int(np.sum(zero_gradient))
        allowed = int(np.floor(tolerance * zero_gradient.size))
        checks.append(
            Check(
                "nonzero_input_gradients",
                count <= allowed,
                f"{count} of {zero_gradient.size} sample(s) have an exactly zero input gradient of the margin loss"
                + (" — PGD has nothing to follow there (quantised or non-differentiable input path?)" if count > allowed else "")
                + ".",
            )
        )
    else:
        skipped.append("nonzero_input_gradients")

    # 7. perturbations inside the budget
    outside = [r for r in attacked.values() if r.max_perturbation > r.spec.epsilon + 1e-5]
    if attacked:
        checks.append(
            Check(
                "perturbation_within_budget",
                not outside,
                ("outside the ε-ball: " + ", ".join(f"{r.name} ({r.max_perturbation:.5f} > {r.spec.epsilon:.5f})" for r in outside))
                if outside
                else f"every adversarial example lies in its {norm_display(norm)} ball and in [0, 1].",
            )
        )

    # 8. a model that (nearly) ignores its input is not robust, however flat its curve: it is "robust"
    #    on its favourite class only. Flag a class predicted for over half the inputs and for more than
    #    twice its share of the labels.
    if clean is not None and n:
        predictions = clean.predictions
        values, counts = np.unique(predictions, return_counts=True)
        top, share = int(values[np.argmax(counts)]), float(counts.max() / n)
        label_share = float(np.mean(labels == top))
        passed = not (share > 0.5 and share > 2 * label_share)
        attacked_at_eps = [r for r in attacked.values() if _same_eps(r.spec.epsilon, epsilon)]
        robust = np.logical_and.reduce([clean.correct] + [r.correct for r in attacked_at_eps])
        in_top = int(np.sum(robust & (labels == top)))
        checks.append(
            Check(
                "predictions_depend_on_input",
                passed,
                (
                    "the model predicts one class for most inputs; its 'robust' accuracy is largely that class's "
                    "frequency, not robustness — "
                    if not passed
                    else ""
                )
                + f"most frequent clean prediction: class {top} on {_fmt(share)} of samples ({_fmt(label_share)} of "
                f"labels); {in_top} of {int(robust.sum())} robust point(s) are of that class.",
            )
        )
    return checks, skipped
