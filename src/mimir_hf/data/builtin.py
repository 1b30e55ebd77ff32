"""Real images that ship inside an installed package, so the quickstart runs with no download.

scikit-learn bundles 1,797 genuine 8x8 handwritten digits (UCI "optdigits"). They are upscaled to
24x24 inside a 4-px black margin (32x32 RGB) so that the CIFAR-10 model shapes (patch size 2, 256 patches) and transforms apply
unchanged, and split once, stratified and with a fixed seed, so every run sees the same test set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from datasets import Dataset
from PIL import Image

from .npz import dataset_from_arrays

__all__ = ["BUILTIN_DATASETS", "load_builtin_dataset"]

BUILTIN_DATASETS = ("builtin:digits",)
_DIGITS_SIZE = 32
# Digits fill their 8x8 frame edge to edge; a black margin (as MNIST has) keeps strokes inside a
# 4-px-padded random crop.
_DIGITS_MARGIN = 4
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SEED = 0


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Values are ink counts 0..16; bicubic upscaling smooths the 8x8 blocks into pen strokes.
    small = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    inner = _DIGITS_SIZE - 2 * _DIGITS_MARGIN
    large = np.zeros((len(small), _DIGITS_SIZE, _DIGITS_SIZE), dtype=np.uint8)
    large[:, _DIGITS_MARGIN:-_DIGITS_MARGIN, _DIGITS_MARGIN:-_DIGITS_MARGIN] = np.stack(
        [np.asarray(Image.fromarray(im).resize((inner, inner), Image.Resampling.BICUBIC)) for im in small]
    )
    images = np.repeat(large[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    # Stratified split by hand (per class, fixed permutation) so it does not depend on sklearn's splitter.
    rng = np.random.RandomState(_DIGITS_SEED)
    test_mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        test_mask[idx[: int(round(len(idx) * _DIGITS_TEST_FRACTION))]] = True
    order = rng.permutation(len(labels))  # interleave classes so "first N" is a fair subset
    train_idx = order[~test_mask[order]]
    test_idx = order[test_mask[order]]
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def load_builtin_dataset(name: str, split: str) -> Dataset:
    """`builtin:digits` with splits `train` (1,438 images) and `test` (359), 10 classes "0".."9"."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"Unknown built-in data set {name!r}; available: {list(BUILTIN_DATASETS)}.")
    train_x, train_y, test_x, test_y = _digits_arrays()
    splits = {"train": (train_x, train_y), "test": (test_x, test_y), "validation": (test_x, test_y)}
    if split not in splits:
        raise ValueError(f"{name} has splits 'train' and 'test' (alias 'validation'); got {split!r}.")
    images, labels = splits[split]
    return dataset_from_arrays(images, labels, [str(i) for i in range(10)], name=name)
