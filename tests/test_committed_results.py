"""The result files committed under docs/results/ hold per-image outcomes, never images: the CIFAR-10
copy used by the experiments must not enter the repository (docs/results/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _image_size(folder: Path) -> int:
    """The side of the images the evaluation beside the arrays attacked (its robustness.json's centre crop)."""
    report = json.loads((folder / "robustness.json").read_text(encoding="utf-8"))
    return int(report["preprocessing"]["center_crop"])


def pixel_like_arrays(path: Path) -> list[str]:
    """Arrays of a per_sample.npz that could hold images rather than per-image outcomes.

    Outcomes are names (strings) or one value per image for each attack: a vector over the images or an
    (attacks, images) table, so each image gets a handful of values. An image, even flattened to floats,
    brings at least one value per pixel, image_size² of them.
    """
    pixels_per_image = _image_size(path.parent) ** 2
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
    files = sorted(RESULTS.rglob("per_sample.npz"))
    assert files, "the v2 replication's per_sample.npz files are expected here"
    assert sorted(RESULTS.rglob("*.npz")) == files  # no other array file slips past the check
    for path in files:
        assert pixel_like_arrays(path) == [], path.relative_to(RESULTS)
        assert path.stat().st_size < 2**20, path


def test_the_check_catches_flattened_float_images(tmp_path):
    (tmp_path / "robustness.json").write_text(json.dumps({"preprocessing": {"center_crop": 32}}), encoding="utf-8")
    labels = np.arange(6) % 10
    outcomes = {"attacks": np.array(["clean", "pgd-20"]), "correct": np.ones((2, 6), bool), "labels": labels}
    np.savez(tmp_path / "per_sample.npz", **outcomes)
    assert pixel_like_arrays(tmp_path / "per_sample.npz") == []
    flat = np.random.default_rng(0).random((6, 32 * 32 * 3), dtype=np.float32)
    for leak in (flat, flat.T.copy(), flat.reshape(-1)):
        np.savez(tmp_path / "per_sample.npz", **outcomes, images=leak)
        assert [problem.split()[0] for problem in pixel_like_arrays(tmp_path / "per_sample.npz")] == ["images"]
