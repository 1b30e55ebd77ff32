"""The result files committed under docs/results/ hold per-image outcomes, never images: the CIFAR-10
copy used by the experiments must not enter the repository (docs/results/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimir_hf.artefacts import PER_SAMPLE_FILE, REPORT_FILE

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _image_size(folder: Path) -> int:
    """The side of the images the evaluation beside the arrays attacked (its report's centre crop)."""
    from mimir_hf.evaluation import RobustnessReport

    return int(RobustnessReport.load(folder / REPORT_FILE).preprocessing["center_crop"])


def pixel_like_arrays(path: Path, image_size: int) -> list[str]:
    """Arrays of a per_sample.npz that could hold images rather than per-image outcomes.

    Outcomes are names (strings) or one value per image for each attack: a vector over the images or an
    (attacks, images) table, so each image gets a handful of values. An image, even flattened to floats,
    brings at least one value per pixel, image_size² of them.
    """
    pixels_per_image = image_size**2
    problems = []
    with np.load(path, allow_pickle=False) as arrays:
        num_images = len(arrays["labels"])
        for name in arrays.files:
            array = arrays[name]
            described = f"{name} {array.shape} {array.dtype}"
            if array.dtype.kind == "U":
                if array.ndim != 1 or len(array) >= pixels_per_image:
                    problems.append(described)
            elif array.dtype == np.uint8 or array.ndim > 2 or array.shape[-1] != num_images:
                problems.append(described)
            elif array.size // num_images >= pixels_per_image:
                problems.append(described)
    return problems


def test_committed_arrays_hold_no_pixels():
    files = sorted(RESULTS.rglob(PER_SAMPLE_FILE))
    assert files, "docs/results/cpu-v2's per_sample.npz files are expected here"
    assert sorted(RESULTS.rglob("*.npz")) == files  # no other array file slips past the check
    for path in files:
        assert pixel_like_arrays(path, _image_size(path.parent)) == [], path.relative_to(RESULTS)
        assert path.stat().st_size < 2**20, path


def test_the_check_catches_flattened_float_images(tmp_path):
    labels = np.arange(6) % 10
    outcomes = {"attacks": np.array(["clean", "pgd-20"]), "correct": np.ones((2, 6), bool), "labels": labels}
    np.savez(tmp_path / PER_SAMPLE_FILE, **outcomes)
    assert pixel_like_arrays(tmp_path / PER_SAMPLE_FILE, image_size=32) == []
    flat = np.random.default_rng(0).random((6, 32 * 32 * 3), dtype=np.float32)
    for leak in (flat, flat.T.copy(), flat.reshape(-1)):
        np.savez(tmp_path / PER_SAMPLE_FILE, **outcomes, images=leak)
        assert [problem.split()[0] for problem in pixel_like_arrays(tmp_path / PER_SAMPLE_FILE, image_size=32)] == ["images"]


def test_every_committed_report_loads_and_gives_back_its_numbers():
    """Reports written by earlier versions of mimir_hf load through the one reader, with their per-sample
    results, and the table printed from the loaded report is, byte for byte, the one the evaluation printed."""
    from mimir_hf.evaluation import RobustnessReport

    reports = sorted(RESULTS.rglob("robustness.json"))
    assert reports, "docs/results/cpu-v2's evaluations are expected here"
    for path in reports:
        report = RobustnessReport.load(path, per_sample=True)
        assert report.format_table() + "\n" == (path.parent / "robustness_table.txt").read_text(), path
        assert report.per_sample.num_samples == report.num_samples
        for name, record in report.attacks.items():
            assert record.num_correct == int(report.per_sample.correct[name].sum()), (path, name)
            assert record.norm == report.norm and record.kind in ("clean", "pgd", "autoattack", "pgd-mi", "pgd-feature")
        autoattack = report.attacks.get("autoattack")
        if autoattack is not None:  # APGD-CE + APGD-T: a reduced suite, never labelled standard
            assert not autoattack.standard_autoattack and autoattack.autoattack_suite == "custom: APGD-CE, APGD-T"
