"""Robust accuracy versus ε, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import RobustnessReport

__all__ = ["plot_accuracy_vs_epsilon"]


def plot_accuracy_vs_epsilon(report: RobustnessReport, path: str | Path) -> Path | None:
    """One line per attack family measured at several budgets (with clean at ε = 0); single-budget
    attacks as markers; the worst case at the headline ε as a star. Returns None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    clean = next((r for r in report.results.values() if r.spec.kind == "clean"), None)
    families: dict[str, list] = defaultdict(list)
    for name, r in report.results.items():
        if r.spec.kind == "clean":
            continue
        families[name.split("@")[0]].append(r)
    if not families and clean is None:
        return None

    figure, axis = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for family, members in families.items():
        points = sorted((r.spec.epsilon * 255, 100 * r.accuracy) for r in members)
        if clean is not None:
            points = [(0.0, 100 * clean.accuracy)] + points
        xs, ys = zip(*points)
        if len(members) > 1:
            axis.plot(xs, ys, marker="o", label=family)
        else:
            axis.plot(xs[-1:], ys[-1:], marker="s", linestyle="none", label=family)
    if clean is not None:
        axis.axhline(100 * clean.accuracy, color="grey", linestyle=":", linewidth=1, label="clean")
    axis.plot([report.epsilon * 255], [100 * report.worst_case_accuracy], marker="*", markersize=12,
              color="black", linestyle="none", label="worst case")
    axis.set_xlabel("ε (× 1/255, L∞, pixel space [0, 1])")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(-2, 102)
    axis.set_title(f"{Path(str(report.model)).name} on {report.dataset} ({report.num_samples} samples)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
