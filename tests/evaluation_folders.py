"""Reports and evaluation folders with per-sample outcomes chosen by a test, built by the evaluator's own
`RobustnessReport.from_results` and written by `RobustnessReport.save`: for the paired statistics of
mimir_hf.evaluation.comparison, the replication driver, RobustBench export, cards and publishing. The
numbers are fixtures, not measured results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mimir_hf.evaluation import AttackResult, AttackSettings, RobustnessReport, parse_attack_name


def measured_report(
    accuracies: dict[str, float],
    *,
    num_samples: int = 64,
    settings: AttackSettings | None = None,
    extras: dict[str, dict[str, Any]] | None = None,
    model: str = "outputs/tiny-finetune",
    dataset: str = "builtin:digits",
    **fields: Any,
) -> RobustnessReport:
    """A report whose attacks have exactly these accuracies on `num_samples` images: attack k is correct on
    the first round(accuracy · N) images (list robust attacks below clean, so that robust implies clean).
    `extras[name]` is what the attack itself reports (AutoAttack's `attacks_run`, `components`)."""
    settings = settings or AttackSettings()
    labels = labels_for(num_samples)
    results = {}
    for name, accuracy in accuracies.items():
        spec = parse_attack_name(name, settings)
        correct = np.arange(num_samples) < round(accuracy * num_samples)
        results[name] = AttackResult(
            spec, correct, np.where(correct, labels, -1), wall_time_seconds=1.0, max_perturbation=spec.epsilon,
            library_version="0.2.0" if spec.library == "autoattack" else "0.1.0", extra=dict((extras or {}).get(name, {})),
        )
    return RobustnessReport.from_results(
        model=model, dataset=dataset, split="test", epsilon=settings.epsilon, seed=0, labels=labels, results=results,
        norm=settings.norm, versions={"mimir_hf": "0.1.0", "torch": "2.13.0", "autoattack": "0.2.0"}, **fields,
    )


def write_evaluation(
    folder: Path,
    correct: dict[str, np.ndarray],
    labels: np.ndarray,
    settings: AttackSettings | None = None,
    indices: np.ndarray | None = None,
) -> Path:
    """An evaluation folder written by the evaluator's own writer (`RobustnessReport.save`), with
    per-sample outcomes chosen by the test. Robust implies clean-correct, as in a real evaluation."""
    settings = settings or AttackSettings()
    results = {}
    for name, outcome in correct.items():
        outcome = np.asarray(outcome, dtype=bool)
        if name != "clean":
            assert not np.any(outcome & ~np.asarray(correct["clean"], dtype=bool)), "robust but not clean-correct"
        results[name] = AttackResult(parse_attack_name(name, settings), outcome, np.where(outcome, labels, -1))
    report = RobustnessReport.from_results(model=folder.name, dataset="synthetic", split="test", epsilon=settings.epsilon,
                                           seed=0, labels=labels, results=results, indices=indices, norm=settings.norm)
    report.save(folder)
    return folder


def labels_for(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % 10


def pair_of_folders(tmp_path: Path, n: int = 40, only_first: int = 3, only_second: int = 10):
    """Two models on n images; under AutoAttack exactly `only_first` images favour A and `only_second` B."""
    clean_a = np.ones(n, bool)
    clean_b = np.ones(n, bool)
    clean_b[:2] = False  # B misses two images clean; A gets them right
    aa_a = np.zeros(n, bool)
    aa_b = np.zeros(n, bool)
    both = slice(2, 7)  # five images both models survive
    aa_a[both] = aa_b[both] = True
    aa_a[7 : 7 + only_first] = True
    aa_b[7 + only_first : 7 + only_first + only_second] = True
    labels = labels_for(n)
    a = write_evaluation(tmp_path / "eval-a", {"clean": clean_a, "pgd-20": aa_a, "autoattack": aa_a}, labels)
    b = write_evaluation(tmp_path / "eval-b", {"clean": clean_b, "pgd-20": aa_b, "autoattack": aa_b}, labels)
    return a, b
