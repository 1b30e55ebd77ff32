"""Paired statistics of per-image outcomes: the exact McNemar test, Holm's adjustment, the paired bootstrap.

Two robust accuracies measured on the same 1000 test images are not independent: most images are
easy or hard for every model, so each accuracy's own error bar (±2.5 points at 20 % on 1000 images)
says little about their difference. The information is in the images on which two models disagree:
the exact McNemar test counts them, and a bootstrap that resamples the images jointly for every model
gives an interval of the difference itself. Plain numpy; `compare_evaluations` applies them to
evaluation folders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_means", "holm_adjust", "mcnemar_exact", "percentile_interval"]

_BOOTSTRAP_CHUNK = 256  # resamples per matrix product: bounds memory at 256 × N counts


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts of a paired binary outcome.

    Under "both models are equally accurate" each of the n = b + c images that exactly one model
    gets right is equally likely to favour either, so min(b, c) is the tail of Binomial(n, 1/2).
    The exact test stays valid for the few-dozen discordant images typical of robust accuracy,
    where the χ² approximation does not. The sum is done in integers (no scipy, no rounding before
    the last division), so it is exact for any n.

    Args:
        only_first: images the first model classifies correctly and the second does not (b).
        only_second: images the second model classifies correctly and the first does not (c).

    Returns:
        min(1, 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2ⁿ); 1.0 when there is no discordant image.
    """
    for name, value in (("only_first", only_first), ("only_second", only_second)):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer count, got {value!r}.")
    b, c = int(only_first), int(only_second)
    n = b + c
    if n == 0:
        return 1.0
    tail, term = 0, 1  # term = C(n, k), updated exactly
    for k in range(min(b, c) + 1):
        tail += term
        term = term * (n - k) // (k + 1)
    return min(1.0, 2 * tail / 2**n)  # int / int is correctly rounded even for huge n


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    Comparing k models tests k(k−1)/2 pairs at once; the adjusted values can be read against the
    usual threshold with the family-wise error controlled, and Holm is uniformly more powerful than
    plain Bonferroni without assuming independence between the tests.
    """
    values = [float(p) for p in p_values]
    if any(not 0.0 <= p <= 1.0 for p in values):
        raise ValueError(f"p-values must lie in [0, 1], got {values}.")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def bootstrap_means(values: np.ndarray, samples: int, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Means of each column over `samples` resamples of the rows (with replacement), shape (samples, M).

    Each resample draws N row indices and turns them into per-row counts, so every column (a model's
    per-image outcome under one attack) is averaged over the *same* resampled images: differences
    between columns are then paired bootstrap replicates. Seeded: the same call gives the same numbers.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"values must be a non-empty (rows, columns) array, got shape {values.shape}.")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    from tqdm.auto import tqdm

    n = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((samples, values.shape[1]))
    with tqdm(total=samples, desc="bootstrap", unit="resample", disable=not progress, leave=False) as bar:
        for start in range(0, samples, _BOOTSTRAP_CHUNK):
            rows = min(_BOOTSTRAP_CHUNK, samples - start)
            drawn = rng.integers(0, n, size=(rows, n))
            counts = np.bincount((drawn + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
            means[start : start + rows] = counts @ values / n
            bar.update(rows)
    return means


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap replicates (percentile method), within their range."""
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    # interpolation may round one ulp past the replicates (e.g. above an accuracy of 1)
    return float(max(low, replicates.min())), float(min(high, replicates.max()))
