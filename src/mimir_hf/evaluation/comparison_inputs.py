"""The evaluations a paired comparison reads, and what makes two of them comparable.

A paired test is only meaningful on the same images under the same threat model, so evaluations of
other images, at another budget or under another norm are refused, not noted. Settings that change what
an attack's accuracy means (its steps, AutoAttack's components) are noted when they differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artefacts import PER_SAMPLE_FILE, REPORT_FILE
from .robustness_report import RobustnessReport
from .results import ThreatModel

__all__ = ["EvaluationFolder", "check_comparable", "load_evaluation", "setting_notes"]


@dataclass(frozen=True)
class EvaluationFolder:
    """One folder written by `evaluate_robustness`, read back with its per-sample results for a comparison."""

    name: str
    folder: Path
    report: RobustnessReport

    def __post_init__(self) -> None:
        if self.report.per_sample is None:
            raise ValueError(f"The report of {self.name!r} holds no per-sample results; load it with "
                             "RobustnessReport.load(folder, per_sample=True).")

    @property
    def labels(self) -> np.ndarray:
        return self.report.per_sample.labels

    @property
    def indices(self) -> np.ndarray:
        return self.report.per_sample.indices

    @property
    def correct(self) -> dict[str, np.ndarray]:
        return self.report.per_sample.correct

    @property
    def worst_case_attacks(self) -> list[str]:
        return self.report.per_sample.worst_case_attacks

    @property
    def num_samples(self) -> int:
        return int(self.labels.size)

    @property
    def threat_model(self) -> ThreatModel:
        return self.report.threat_model


def load_evaluation(folder: str | Path, name: str | None = None) -> EvaluationFolder:
    """Read `robustness.json` and `per_sample.npz` of one evaluation (`name` defaults to the folder's name)."""
    folder = Path(folder)
    missing = [name for name in (REPORT_FILE, PER_SAMPLE_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{str(folder)!r} is not an evaluation folder: {' and '.join(missing)} missing. A comparison needs the "
            "per-sample results that recipes/evaluate.py (evaluate_robustness with output_dir) writes."
        )
    report = RobustnessReport.load(folder, per_sample=True)
    return EvaluationFolder(name=name if name is not None else folder.resolve().name, folder=folder, report=report)


def check_comparable(reference: EvaluationFolder, other: EvaluationFolder) -> None:
    """Refuse a pair that is not of the same images under the same threat model (one line each)."""
    where = f"{reference.name!r} ({reference.folder}) and {other.name!r} ({other.folder})"
    if reference.num_samples != other.num_samples:
        raise ValueError(
            f"Evaluations {where} are not of the same images: {reference.num_samples} against {other.num_samples} "
            "images. Evaluate every model with the same dataset, split and max_eval_samples."
        )
    for what, a, b in (("image indices", reference.indices, other.indices), ("labels", reference.labels, other.labels)):
        differ = np.flatnonzero(np.asarray(a) != np.asarray(b))
        if differ.size:
            first = int(differ[0])
            raise ValueError(
                f"Evaluations {where} are not of the same images: their {what} differ at {differ.size} of "
                f"{reference.num_samples} positions (first at position {first}: {a[first]} against {b[first]}). "
                "Evaluate every model with the same dataset, split and max_eval_samples."
            )
    ours, theirs = reference.threat_model, other.threat_model
    if ours.norm != theirs.norm or abs(ours.epsilon - theirs.epsilon) > 1e-9:
        raise ValueError(
            f"Evaluations {where} use different threat models: {ours.describe()} against {theirs.describe()}. "
            "Robust accuracies under different norms or budgets are not comparable."
        )


def setting_notes(attack: str, evaluations: Sequence[EvaluationFolder]) -> list[str]:
    """One note per setting of `attack` that differs between the evaluations."""
    settings = {e.name: e.report.attacks[attack].settings() for e in evaluations}
    notes = []
    for key in next(iter(settings.values())):
        seen = {name: values[key] for name, values in settings.items()}
        if len({json.dumps(v, sort_keys=True) for v in seen.values()}) > 1:
            listed = ", ".join(f"{name}: {value}" for name, value in seen.items())
            notes.append(f"{attack}: `{key}` differs between the evaluations ({listed}); the accuracies are not "
                         "measured by the same attack.")
    return notes
