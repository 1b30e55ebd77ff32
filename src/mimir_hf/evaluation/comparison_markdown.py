"""The markdown tables of a paired comparison, rendered from its JSON form alone (`Comparison.to_dict()`
or a saved comparison.json), so that a table can always be regenerated from the file."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .attack_specs import format_epsilon, norm_display

__all__ = ["format_comparison_markdown", "format_percent", "threat_model_text"]


def format_percent(value: float, signed: bool = False) -> str:
    """A fraction in percent with one decimal, exact halves rounded away from zero (41.05 -> 41.1, 3.05 -> 3.1).

    Accuracies and their differences are counts over the images, so 821/2000 is exactly 41.05 %; the binary
    float just below it would round down while 61/2000 = 3.05 % rounds up. Rounding the decimal text to 7
    places first removes the float's last-bit error, then the half rounds one way everywhere.
    """
    points = Decimal(f"{100 * value:.7f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if not signed:
        return f"{points:.1f}"
    if points == 0:
        return "0.0"
    return f"{points:+.1f}".replace("-", "−")


def _percent(value: float) -> str:
    return format_percent(value)


def _signed(value: float) -> str:
    return format_percent(value, signed=True)


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def threat_model_text(data: Mapping[str, Any]) -> str:
    """"L∞ ε = 8/255" of a comparison's JSON form. Schema 1 files have no `norm`: they were written when every
    comparison was rendered as L∞, and are rendered as they were."""
    norm = data["norm"] if data["schema_version"] >= 2 else "Linf"
    return f"{norm_display(norm)} ε = {format_epsilon(data['epsilon'], norm)}"


def format_comparison_markdown(data: Mapping[str, Any], title: str | None = "Paired comparison", level: int = 1) -> str:
    """The markdown tables of a comparison, from its JSON form (`Comparison.to_dict()` or comparison.json)."""
    models = [m["name"] for m in data["models"]]
    bootstrap = data["bootstrap"]
    level_pct = f"{100 * bootstrap['confidence']:g} %"
    lines = [f"{'#' * level} {title}", ""] if title else []
    lines += [
        f"{data['num_samples']} images, the same indices and labels in every evaluation, {threat_model_text(data)}. Values in %; brackets: "
        f"{level_pct} percentile bootstrap interval ({bootstrap['samples']} resamples of the images, seed "
        f"{bootstrap['seed']}, the same resamples for every model and row). McNemar p: exact two-sided test on the "
        "images exactly one of the two models gets right; Holm: adjusted over the pairs of that row.",
        "",
        "| | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for metric in data["metrics"]:
        cells = [f"{_percent(a['value'])} [{_percent(a['interval'][0])}, {_percent(a['interval'][1])}]"
                 for a in (metric["accuracy"][m] for m in models)]
        lines.append(f"| {metric['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| row | first − second | difference (points) [{level_pct}] | only first correct | only second correct "
        "| McNemar p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric in data["metrics"]:
        for pair in metric["pairs"]:
            low, high = pair["interval"]
            only = [str(pair[k]) if pair[k] is not None else "—" for k in ("only_first_correct", "only_second_correct")]
            lines.append(
                f"| {metric['name']} | {pair['first']} − {pair['second']} | {_signed(pair['difference'])} "
                f"[{_signed(low)}, {_signed(high)}] | {only[0]} | {only[1]} | {_p(pair['mcnemar_p'])} "
                f"| {_p(pair['mcnemar_p_holm'])} |"
            )
    means = [m["name"] for m in data["metrics"] if m["kind"] == "clean_robust_mean"]
    notes = list(data.get("notes", []))
    if means:
        notes.insert(0, f"{means[0]} is not a yes/no outcome per image, so it has an interval but no McNemar test.")
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
