"""A validation split carved out of the training set, so that no choice is ever made on test images.

Checkpoint selection, early stopping and hyper-parameter tuning all "look" at the data they are
judged on. CIFAR-10 ships only train and test, so the honest place to look is a seeded slice of
the training images, removed from training. The slice depends only on the seed and the dataset
size, so the three arms of a comparison hold out the same images.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasets import Dataset

    from .shards import ShardedStream

__all__ = ["hold_out_validation", "looks_like_test_split"]

_REPORTING_SPLITS = ("validation", "val", "valid")  # ImageNet's "validation" is where its results are reported


def hold_out_validation(dataset: "Dataset | ShardedStream", size: int, seed: int = 0) -> tuple["Dataset | ShardedStream", "Dataset"]:
    """Split `dataset` into (training rest, held-out validation of `size` rows), both in their original order.

    Rows are drawn uniformly without replacement by `numpy.random.default_rng(seed)`; keeping the
    original order of the remaining training rows keeps the data order of a seeded run unchanged
    apart from the removed images. A stream (`DataArguments.training_stream`) holds out its first
    `size` images instead, with its shards in a seeded order (`ShardedStream.hold_out`).
    """
    from .shards import ShardedStream

    if isinstance(dataset, ShardedStream):
        return dataset.hold_out(size, seed)
    total = len(dataset)
    if not 0 < size < total:
        raise ValueError(
            f"validation_split_size must lie in [1, {total - 1}] for a training set of {total} images, got {size}."
        )
    order = np.random.default_rng(seed).permutation(total)
    held_out = np.sort(order[:size])
    rest = np.sort(order[size:])
    return dataset.select(rest.tolist()), dataset.select(held_out.tolist())


def looks_like_test_split(split: str) -> bool:
    """True for split names that usually hold the images results are reported on (`test`, `test[:1000]`,
    ImageNet's `validation`); a held-out slice of the training set is never one of them."""
    base = re.split(r"[\[.]", split.strip().lower(), maxsplit=1)[0]
    return "test" in base or base in _REPORTING_SPLITS
