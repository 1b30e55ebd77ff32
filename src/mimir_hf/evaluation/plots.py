"""Robustness pictures as PNGs (matplotlib, headless): accuracy versus ε for one model, and several
models side by side under the same attacks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .robustness_report import RobustnessReport

__all__ = ["plot_accuracy_comparison", "plot_accuracy_vs_epsilon"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, figure, axis, path: str | Path) -> Path:
    """Legend, layout, write, and free the figure (pyplot keeps every open figure alive otherwise)."""
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_accuracy_vs_epsilon(report: RobustnessReport, path: str | Path) -> Path | None:
    """Accuracy against the budget, and every attack at the headline budget side by side.

    Left: one line per attack family measured at several budgets (with clean at ε = 0), attacks run at
    another single budget as markers, and the worst case at the headline ε as a star. Right: one bar
    per attack at the headline ε, labelled with its value. Strong attacks often reach the same accuracy
    (PGD-50, AutoAttack and the worst case on the same images); drawn as points at one ε they hide each
    other, as bars each stays visible. Returns None if there is nothing to plot.
    """
    plt = _pyplot()

    clean = next((r for r in report.attacks.values() if r.kind == "clean"), None)
    families: dict[str, list] = defaultdict(list)
    for r in report.attacks.values():
        if r.kind != "clean":
            families[r.family].append(r)
    if not families and clean is None:
        return None

    norm = report.norm
    scale = 255 if norm == "Linf" else 1  # L∞ budgets read in grey levels, L2 radii as they are
    headline = report.epsilon * scale
    at_headline: list[tuple[str, float]] = []
    figure, (curve, bars) = plt.subplots(1, 2, figsize=(9.6, 4.4), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    for family, members in families.items():
        points = sorted((r.epsilon * scale, 100 * r.accuracy) for r in members)
        at_headline += [(family, y) for x, y in points if abs(x - headline) < 1e-6]
        if len(members) > 1:
            if clean is not None:
                points = [(0.0, 100 * clean.accuracy)] + points
            xs, ys = zip(*points)
            curve.plot(xs, ys, marker="o", label=family)
        elif abs(points[0][0] - headline) >= 1e-6:
            curve.plot([points[0][0]], [points[0][1]], marker="s", linestyle="none", label=f"{family} (at its own ε)")
    if clean is not None:
        curve.axhline(100 * clean.accuracy, color="grey", linestyle=":", linewidth=1, label="clean")
    worst = 100 * report.worst_case.accuracy
    curve.axvline(headline, color="grey", linestyle="--", linewidth=0.8, alpha=0.6)
    curve.plot([headline], [worst], marker="*", markersize=13, color="black", linestyle="none",
               label=f"worst case at ε = {report.threat_model.epsilon_text} (every attack: right)", zorder=4)
    curve.set_xlabel("ε (× 1/255, L∞, pixel space [0, 1])" if norm == "Linf" else "ε (L2 radius, pixel space [0, 1])")
    curve.set_ylabel("accuracy (%)")
    curve.set_ylim(-2, 102)
    curve.grid(alpha=0.3)
    curve.legend(fontsize=7, loc="upper right")

    rows = sorted(at_headline, key=lambda row: (-row[1], row[0]))
    head = [("clean", 100 * clean.accuracy)] if clean is not None else []
    labels = [name for name, _ in head + rows] + ["worst case"]
    values = [value for _, value in head + rows] + [worst]
    colours = ["silver"] * len(head) + ["tab:blue"] * len(rows) + ["black"]
    positions = list(range(len(labels)))[::-1]
    drawn = bars.barh(positions, values, color=colours, height=0.65)
    for bar, value in zip(drawn, values):
        bars.annotate(f"{value:.1f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                      textcoords="offset points", va="center", fontsize=7)
    bars.set_yticks(positions, labels, fontsize=8)
    bars.set_xlim(0, 112)
    bars.set_xlabel("accuracy (%)")
    bars.set_title(f"at {report.threat_model.describe()}", fontsize=9)
    bars.grid(axis="x", alpha=0.3)

    figure.suptitle(f"{Path(str(report.model)).name} on {report.dataset} ({report.num_samples} samples)", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_accuracy_comparison(
    accuracies: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    title: str = "",
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> Path | None:
    """Grouped bars, one group per model and one bar per attack, each labelled with its value.

    A comparison of defences is read across models at a fixed attack, so the attacks keep one colour
    throughout; a model without a value for an attack gets an empty slot rather than a shifted bar.
    Values are fractions in [0, 1]. `intervals` (same keys, (low, high) fractions) adds error bars:
    without them a one-point gap between two bars looks like a result. Returns None if there is
    nothing to plot.
    """
    attacks: list[str] = []
    for row in accuracies.values():
        attacks += [name for name in row if name not in attacks]
    if not accuracies or not attacks:
        return None
    for model, row in accuracies.items():
        for name, value in row.items():
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"Accuracy of {model!r} under {name!r} must be a fraction in [0, 1], got {value}.")
            bound = (intervals or {}).get(model, {}).get(name)
            if bound is not None and not 0.0 <= bound[0] <= bound[1] <= 1.0:
                raise ValueError(f"Interval of {model!r} under {name!r} must be fractions 0 <= low <= high <= 1, "
                                 f"got {tuple(bound)}.")
    plt = _pyplot()
    models = list(accuracies)
    width = 0.8 / len(attacks)
    figure, axis = plt.subplots(figsize=(max(6.4, 1.6 * len(models) * max(1, len(attacks)) / 3), 4.4), dpi=120)
    for index, name in enumerate(attacks):
        xs = [m + (index - (len(attacks) - 1) / 2) * width for m in range(len(models))]
        values = [accuracies[model].get(name) for model in models]
        heights = [0.0 if v is None else 100 * v for v in values]
        bars = axis.bar(xs, heights, width=width * 0.95, label=name)
        bounds = [(intervals or {}).get(model, {}).get(name) for model in models]
        for bar, value, bound in zip(bars, values, bounds):
            if value is None:
                continue
            top = bar.get_height()
            if bound is not None:
                low, high = 100 * bound[0], 100 * bound[1]
                axis.errorbar([bar.get_x() + bar.get_width() / 2], [(low + high) / 2], yerr=[(high - low) / 2],
                              fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
                top = max(top, high)
            axis.annotate(f"{100 * value:.1f}", (bar.get_x() + bar.get_width() / 2, top),
                          ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    axis.set_xticks(range(len(models)), models, fontsize=8)
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 105)
    if title:
        axis.set_title(title, fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    return _finish(plt, figure, axis, path)
