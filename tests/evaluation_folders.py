"""Evaluation folders with per-sample outcomes chosen by a test, written by the evaluator's own writer
(`RobustnessReport.save`), for the paired statistics of mimir_hf.evaluation.comparison and the
replication driver that uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimir_hf.evaluation import AttackResult, AttackSettings, RobustnessReport, parse_attack_name


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
    report = RobustnessReport(folder.name, "synthetic", "test", settings.epsilon, 0, labels, results, indices=indices)
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
