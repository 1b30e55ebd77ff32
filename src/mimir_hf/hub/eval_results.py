"""The Hub's per-model evaluation results (`.eval_results/*.yaml`), generated from `robustness.json`.

Besides the card's `model-index`, the Hub reads evaluation scores from YAML files in a model repo's
`.eval_results/` folder (one file per score: dataset id, task id, value, source, notes) and shows them
on the model page and on the benchmark dataset's leaderboard. Every score here is a value of the
report, verbatim (a fraction, as in `robustness.json` and the card's `model-index`); the notes carry
what a reader needs to compare it: threat model, images, attack settings, what AutoAttack's components
broke. `huggingface_hub`'s own `EvalResultEntry` writes the files, so they follow its specification.

The files need a Hub dataset id: the report's dataset when it is one (`uoft-cs/cifar10`), else the id
the caller gives. A built-in or local data set has none, and then no file is written (the card still
states the results).
"""

from __future__ import annotations

from typing import Any

import yaml

from ..artefacts import REPORT_FILE, is_hub_id
from ..evaluation.attack_specs import format_epsilon, norm_display
from ..evaluation.results import AttackRecord
from ..evaluation.robustness_report import RobustnessReport
from .robustness_results import attack_display_name, attack_order

__all__ = ["EVAL_RESULTS_DIR", "eval_results_dataset_id", "eval_result_files", "eval_result_entries"]

EVAL_RESULTS_DIR = ".eval_results"


def eval_results_dataset_id(report: RobustnessReport, dataset_id: str | None = None) -> str | None:
    """The Hub dataset the scores belong to: `dataset_id` if given, else the report's dataset if it is a Hub id."""
    if dataset_id:
        return dataset_id
    return report.dataset if is_hub_id(report.dataset) else None


def _task_id(record: AttackRecord) -> str:
    if record.kind == "clean":
        return "clean"
    budget = format_epsilon(record.epsilon, record.norm).replace("/", "_").replace(" ", "")
    return f"{record.name}-{record.norm.lower()}-eps{budget}"


def _notes(record: AttackRecord, report: RobustnessReport) -> str:
    threat = report.threat_model
    images = f"{report.num_samples} {report.split} images"
    pixels = f"[0, 1] pixels, normalisation {threat.normalization}"
    version = report.versions.get("mimir_hf")
    if record.kind == "clean":
        return f"Clean accuracy (fraction) on {images}; {pixels}; mimir_hf {version}."
    parts = [f"{attack_display_name(record)} robust accuracy (fraction; correct clean and under attack)",
             f"{norm_display(record.norm)} ε = {format_epsilon(record.epsilon, record.norm)}", images, pixels]
    if record.steps:
        parts.append(f"{record.steps} steps, step size {record.step_size:.6g}, {record.restarts} restart(s)")
    if record.autoattack_suite:
        parts.append(f"AutoAttack {record.autoattack_suite} (pyautoattack {record.library_version})")
    if record.kind == "autoattack" and record.components:
        parts.append("components: " + ", ".join(f"{c.name} broke {c.broken}" for c in record.components))
    parts.append(f"seed {record.seed}; mimir_hf {version}")
    return "; ".join(parts) + "."


def eval_result_entries(
    report: RobustnessReport, *, dataset_id: str | None = None, source_url: str | None = None
) -> dict[str, Any]:
    """`{file name: EvalResultEntry}` for the clean accuracy, every attack at the headline ε and the worst case."""
    from huggingface_hub import EvalResultEntry

    dataset = eval_results_dataset_id(report, dataset_id)
    if dataset is None:
        return {}
    source = {"source_url": source_url, "source_name": REPORT_FILE} if source_url else {}
    entries: dict[str, Any] = {}
    for record in sorted(report.headline_attacks.values(), key=attack_order):
        task = _task_id(record)
        entries[f"{task}.yaml"] = EvalResultEntry(
            dataset_id=dataset, task_id=task, value=record.accuracy, notes=_notes(record, report), **source
        )
    worst = report.worst_case
    task = f"worst-case-{report.norm.lower()}-eps{report.threat_model.epsilon_text.replace('/', '_')}"
    entries[f"{task}.yaml"] = EvalResultEntry(
        dataset_id=dataset, task_id=task, value=worst.accuracy,
        notes=f"Per-image worst case over {', '.join(worst.attacks)} (fraction correct under every "
              f"one); {report.num_samples} {report.split} images.",
        **source,
    )
    return entries


def eval_result_files(
    report: RobustnessReport, *, dataset_id: str | None = None, source_url: str | None = None
) -> dict[str, bytes]:
    """`{".eval_results/<task>.yaml": YAML bytes}`, ready to commit (empty without a Hub dataset id)."""
    from huggingface_hub import eval_result_entries_to_yaml

    return {
        f"{EVAL_RESULTS_DIR}/{filename}": yaml.safe_dump(
            eval_result_entries_to_yaml([entry]), sort_keys=False, allow_unicode=True
        ).encode("utf-8")
        for filename, entry in eval_result_entries(report, dataset_id=dataset_id, source_url=source_url).items()
    }
