"""The result files committed under docs/results/ hold per-image outcomes, never images: the CIFAR-10
copy used by the experiments must not enter the repository (docs/results/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_committed_arrays_hold_no_pixels():
    files = sorted(RESULTS.rglob("*.npz"))
    assert files, "the v2 replication's per_sample.npz files are expected here"
    for path in files:
        with np.load(path, allow_pickle=False) as arrays:
            for name in arrays.files:
                array = arrays[name]
                # per-sample outcomes are vectors (images) or (attacks, images) tables; pixels would be 3-D or more
                assert array.ndim <= 2 and array.dtype != np.uint8, f"{path.relative_to(RESULTS)}: {name} {array.shape} {array.dtype}"
        assert path.stat().st_size < 2**20, path


def test_every_committed_report_loads_and_gives_back_its_numbers():
    """Reports written by earlier versions of mimir_hf load through the one reader, with their per-sample
    results, and the table printed from the loaded report is, byte for byte, the one the evaluation printed."""
    from mimir_hf.evaluation import RobustnessReport

    reports = sorted(RESULTS.rglob("robustness.json"))
    assert reports, "the v2 replication's evaluations are expected here"
    for path in reports:
        report = RobustnessReport.load(path, per_sample=True)
        assert report.format_table() + "\n" == (path.parent / "robustness_table.txt").read_text(), path
        assert report.per_sample.num_samples == report.num_samples
        for name, record in report.attacks.items():
            assert record.num_correct == int(report.per_sample.correct[name].sum()), (path, name)
            assert record.norm == report.norm and record.kind in ("clean", "pgd", "autoattack")
        autoattack = report.attacks.get("autoattack")
        if autoattack is not None:  # APGD-CE + APGD-T: a reduced suite, never labelled standard
            assert not autoattack.standard_autoattack and autoattack.autoattack_suite == "custom: APGD-CE, APGD-T"
