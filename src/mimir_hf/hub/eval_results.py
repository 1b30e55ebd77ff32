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

import re
from pathlib import Path
from typing import Any

import yaml

from .robustness_results import attack_display_name, attack_order, autoattack_suite, format_epsilon, is_sweep_entry

__all__ = ["EVAL_RESULTS_DIR", "eval_results_dataset_id", "eval_result_files", "eval_result_entries"]

EVAL_RESULTS_DIR = ".eval_results"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def eval_results_dataset_id(report: dict[str, Any], dataset_id: str | None = None) -> str | None:
    """The Hub dataset the scores belong to: `dataset_id` if given, else the report's dataset if it is a Hub id."""
    if dataset_id:
        return dataset_id
    dataset = str(report.get("dataset") or "")
    if _HUB_ID.match(dataset) and not Path(dataset).exists():
        return dataset
    return None


def _task_id(name: str, norm: str, epsilon: float) -> str:
    if name == "clean":
        return "clean"
    budget = format_epsilon(epsilon, norm).replace("/", "_").replace(" ", "")
    return f"{name}-{norm.lower()}-eps{budget}"


def _notes(name: str, entry: dict[str, Any], report: dict[str, Any]) -> str:
    threat = report.get("threat_model", {})
    norm = threat.get("norm", "Linf")
    norm_text = {"Linf": "L∞", "L2": "L2"}.get(norm, norm)
    images = f"{report.get('num_samples')} {report.get('split')} images"
    pixels = f"[0, 1] pixels, normalisation {threat.get('normalization', 'none')}"
    version = report.get("versions", {}).get("mimir_hf")
    if name == "clean":
        return f"Clean accuracy (fraction) on {images}; {pixels}; mimir_hf {version}."
    parts = [f"{attack_display_name(name, entry)} robust accuracy (fraction; correct clean and under attack)",
             f"{norm_text} ε = {format_epsilon(entry.get('epsilon', threat.get('epsilon')), norm)}", images, pixels]
    if entry.get("steps"):
        parts.append(f"{entry['steps']} steps, step size {entry.get('step_size'):.6g}, {entry.get('restarts', 1)} restart(s)")
    if name == "autoattack":
        suite = autoattack_suite(entry)
        if suite:
            parts.append(f"AutoAttack {suite} (pyautoattack {entry.get('library_version')})")
        components = entry.get("components") or []
        if components:
            parts.append("components: " + ", ".join(f"{c['name']} broke {c['broken']}" for c in components))
    parts.append(f"seed {entry.get('seed', report.get('seed'))}; mimir_hf {version}")
    return "; ".join(parts) + "."


def eval_result_entries(
    report: dict[str, Any], *, dataset_id: str | None = None, source_url: str | None = None
) -> dict[str, Any]:
    """`{file name: EvalResultEntry}` for the clean accuracy, every attack at the headline ε and the worst case."""
    from huggingface_hub import EvalResultEntry

    dataset = eval_results_dataset_id(report, dataset_id)
    if dataset is None:
        return {}
    threat = report.get("threat_model", {})
    norm = threat.get("norm", "Linf")
    epsilon = float(threat.get("epsilon", 0.0))
    source = {"source_url": source_url, "source_name": "robustness.json"} if source_url else {}
    entries: dict[str, Any] = {}
    for name in sorted(report.get("attacks", {}), key=attack_order):
        if is_sweep_entry(name):
            continue
        entry = report["attacks"][name]
        task = _task_id(name, norm, float(entry.get("epsilon", epsilon)))
        entries[f"{task}.yaml"] = EvalResultEntry(
            dataset_id=dataset, task_id=task, value=entry["accuracy"], notes=_notes(name, entry, report), **source
        )
    worst = report.get("worst_case")
    if worst and worst.get("accuracy") is not None:
        task = f"worst-case-{norm.lower()}-eps{format_epsilon(epsilon, norm).replace('/', '_')}"
        entries[f"{task}.yaml"] = EvalResultEntry(
            dataset_id=dataset, task_id=task, value=worst["accuracy"],
            notes=f"Per-image worst case over {', '.join(worst.get('attacks', []))} (fraction correct under every "
                  f"one); {report.get('num_samples')} {report.get('split')} images.",
            **source,
        )
    return entries


def eval_result_files(
    report: dict[str, Any], *, dataset_id: str | None = None, source_url: str | None = None
) -> dict[str, bytes]:
    """`{".eval_results/<task>.yaml": YAML bytes}`, ready to commit (empty without a Hub dataset id)."""
    from huggingface_hub import eval_result_entries_to_yaml

    return {
        f"{EVAL_RESULTS_DIR}/{filename}": yaml.safe_dump(
            eval_result_entries_to_yaml([entry]), sort_keys=False, allow_unicode=True
        ).encode("utf-8")
        for filename, entry in eval_result_entries(report, dataset_id=dataset_id, source_url=source_url).items()
    }
