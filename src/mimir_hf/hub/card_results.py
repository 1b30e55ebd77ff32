"""The results section of a card, from the robustness report: the table rows (headline attacks and the
ε-sweep) and the `model-index` entries, every value copied from the report, never typed."""

from __future__ import annotations

import math
from typing import Any

from ..evaluation.attack_specs import format_epsilon, norm_display
from ..evaluation.results import AttackRecord
from ..evaluation.robustness_report import RobustnessReport
from .robustness_results import attack_display_name, attack_order

__all__ = ["eval_results", "percent", "result_rows"]


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _ci_percent(fraction: float, n: int) -> str:
    if n <= 0:
        return "—"
    return f"{100 * 1.96 * math.sqrt(fraction * (1 - fraction) / n):.2f}"


def _dash(value: Any) -> Any:
    return "—" if value is None else value


def _row(record: AttackRecord) -> dict[str, Any]:
    clean = record.kind == "clean"
    library = record.library or ("—" if clean else "?")
    if record.library_version:
        library = f"{library} {record.library_version}"
    return {
        "name": record.name,
        "display": attack_display_name(record),
        "accuracy": record.accuracy,
        "accuracy_pct": percent(record.accuracy),
        "ci_pct": _ci_percent(record.accuracy, record.num_samples),
        "epsilon": record.epsilon,
        "epsilon_display": "—" if clean else format_epsilon(record.epsilon, record.norm),
        "steps": "—" if clean else _dash(record.steps),
        # a clean row has no step size: a dash, not "0/255"
        "step_size_display": "—" if clean or record.step_size is None else format_epsilon(record.step_size, record.norm),
        "restarts": "—" if clean else _dash(record.restarts),
        "library": library,
    }


def result_rows(report: RobustnessReport) -> tuple[list[dict], list[dict]]:
    """The results table, and the ε-sweep: per swept attack, its budgets in increasing order with the
    headline budget (measured under the attack's plain name) among them."""
    records = sorted(report.attacks.values(), key=attack_order)
    rows = [_row(r) for r in records if not r.is_sweep]
    sweep = [_row(r) for r in records if r.is_sweep]
    swept = {report.attacks[row["name"]].family for row in sweep}
    sweep += [{**row, "headline": True} for row in rows if row["name"] in swept]
    for row in sweep:
        record = report.attacks[row["name"]]
        row["family"] = record.family
        family = report.attacks.get(record.family, record)
        row["family_display"] = attack_display_name(family, with_budget=False)
    sweep.sort(key=lambda row: (row["family"], row["epsilon"]))
    return rows, sweep


def eval_results(report: RobustnessReport, dataset_id: str | None) -> list:
    """One EvalResult per headline attack: clean accuracy, then the robust accuracies, values verbatim."""
    from huggingface_hub import EvalResult

    threat = report.threat_model
    dataset = dataset_id or report.dataset or "unknown"
    results = []
    for record in sorted(report.headline_attacks.values(), key=attack_order):
        if record.kind == "clean":
            args: dict[str, Any] = {"num_samples": record.num_samples, "seed": record.seed,
                                    "input_range": list(threat.input_range), "normalization": threat.normalization}
            metric_name, metric_type = "Clean accuracy", "accuracy"
        else:
            args = {"norm": record.norm, "epsilon": record.epsilon, "input_range": list(threat.input_range),
                    "normalization": threat.normalization, "attack": record.kind}
            for key in ("steps", "step_size", "restarts", "library", "library_version", "num_samples", "seed", "version"):
                if getattr(record, key) is not None:
                    args[key] = getattr(record, key)
            if record.autoattack_suite:
                # the suite that ran: a standard request with a component dropped is custom
                args["version"] = record.autoattack_suite.split(":")[0]
            if record.attacks_run:
                args["components"] = list(record.attacks_run)
            metric_name = (f"{attack_display_name(record)} accuracy ({norm_display(record.norm)}, "
                           f"ε={format_epsilon(record.epsilon, record.norm)})")
            metric_type = "robust_accuracy"
        results.append(
            EvalResult(
                task_type="image-classification",
                task_name="Adversarially robust image classification",
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=report.split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_config=record.name,
                metric_value=record.accuracy,
                metric_args=args,
            )
        )
    return results
