"""The results section of a card, from `robustness.json`: the table rows (headline attacks and the
ε-sweep) and the `model-index` entries, every value copied from the report, never typed."""

from __future__ import annotations

import math
from typing import Any

from .robustness_results import attack_display_name, attack_order, autoattack_suite, format_epsilon, is_sweep_entry

__all__ = ["eval_results", "percent", "result_rows"]


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _ci_percent(fraction: float, n: Any) -> str:
    if not isinstance(n, int) or n <= 0:
        return "—"
    return f"{100 * 1.96 * math.sqrt(fraction * (1 - fraction) / n):.2f}"


def _cell(entry: dict[str, Any], key: str) -> Any:
    value = entry.get(key)
    return "—" if value is None else value


def result_rows(report: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The results table, and the ε-sweep: per swept attack, its budgets in increasing order with the
    headline budget (measured under the attack's plain name) among them."""
    rows, sweep = [], []
    default_n = report.get("num_samples")
    headline = report["threat_model"]["epsilon"]
    norm = report["threat_model"].get("norm", "Linf")
    for name in sorted(report["attacks"], key=attack_order):
        entry = report["attacks"][name]
        library = entry.get("library") or ("—" if name == "clean" else "?")
        if entry.get("library_version"):
            library = f"{library} {entry['library_version']}"
        row = {
            "name": name,
            "display": attack_display_name(name, entry),
            "accuracy": entry["accuracy"],
            "accuracy_pct": percent(entry["accuracy"]),
            "ci_pct": _ci_percent(entry["accuracy"], entry.get("num_samples", default_n)),
            "epsilon_display": "—" if name == "clean" else format_epsilon(entry.get("epsilon"), norm),
            "steps": "—" if name == "clean" else _cell(entry, "steps"),
            "step_size_display": format_epsilon(entry.get("step_size"), norm) if entry.get("step_size") is not None else "—",
            "restarts": "—" if name == "clean" else _cell(entry, "restarts"),
            "library": library,
        }
        (sweep if is_sweep_entry(name) else rows).append(row)
    swept = {row["name"].partition("@")[0] for row in sweep}
    sweep += [{**row, "headline": True} for row in rows if row["name"] in swept]
    for row in sweep:
        row["family"] = row["name"].partition("@")[0]
        row["epsilon"] = report["attacks"][row["name"]].get("epsilon", headline)
        row["family_display"] = attack_display_name(row["family"], report["attacks"].get(row["family"]))
    sweep.sort(key=lambda row: (row["family"], row["epsilon"]))
    return rows, sweep


def eval_results(report: dict[str, Any], dataset_id: str | None) -> list:
    """One EvalResult per non-sweep entry: clean accuracy, then the robust accuracies, values verbatim."""
    from huggingface_hub import EvalResult

    threat = report["threat_model"]
    dataset = dataset_id or report.get("dataset") or "unknown"
    results = []
    for name in sorted(report["attacks"], key=attack_order):
        if is_sweep_entry(name):
            continue
        entry = report["attacks"][name]
        args: dict[str, Any] = {
            "norm": threat.get("norm", "Linf"),
            "epsilon": entry.get("epsilon", threat["epsilon"]),
            "input_range": list(threat.get("input_range", [0.0, 1.0])),
            "normalization": threat.get("normalization", "none"),
        }
        for key in ("steps", "step_size", "restarts", "library", "library_version", "num_samples", "seed", "version"):
            if entry.get(key) is not None:
                args[key] = entry[key]
        if name == "autoattack" and (suite := autoattack_suite(entry)):
            args["version"] = suite.split(":")[0]  # the suite that ran: a standard request with a component dropped is custom
        if entry.get("attacks_run"):
            args["components"] = list(entry["attacks_run"])
        if name == "clean":
            args = {k: v for k, v in args.items() if k in ("num_samples", "seed", "input_range", "normalization")}
            metric_name = "Clean accuracy"
            metric_type = "accuracy"
        else:
            norm_text = "L∞" if args["norm"] == "Linf" else args["norm"]
            metric_name = f"{attack_display_name(name, entry)} accuracy ({norm_text}, ε={format_epsilon(args['epsilon'], args['norm'])})"
            metric_type = "robust_accuracy"
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Adversarially robust image classification",
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=report.get("split"),
                metric_type=metric_type,
                metric_name=metric_name,
                metric_config=name,
                metric_value=entry["accuracy"],
                metric_args=args,
            )
        )
    return results
