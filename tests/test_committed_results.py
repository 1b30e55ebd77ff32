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
