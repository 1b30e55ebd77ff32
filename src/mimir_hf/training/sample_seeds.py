"""Augmentation randomness keyed by (seed, epoch, sample), so that a resume anywhere is exact.

The training transforms (crops, flips, RandAugment, random erasing) draw from torch's global
generator, and so does the training step (mask, attack start, dropout). The Trainer saves that
generator with each checkpoint and restores it on a resume, which is exact at an epoch boundary but
not in the middle of an epoch: accelerate's `DataLoaderShard` reads one batch ahead, so when a
checkpoint is saved the next batch has already been augmented, interleaved with the training step's
draws; the resumed run augments it again from another state and every draw after it shifts (the
quickstart pretraining, killed after a mid-epoch checkpoint, ended up to 3e-4 away from an
uninterrupted run). With DataLoader workers the augmentations come from per-worker generators seeded
at the start of the epoch, which a resume cannot replay either.

`SeededSamples` takes the data out of that stream: each `dataset[i]` runs under a generator seeded
from (seed, epoch, i) and leaves the global generator as it found it. A sample's augmentation then
depends on its index and the epoch only, not on when or in which process it is read, and the global
generator carries the training step's randomness alone, which the checkpoint's saved state restores
exactly. Persistent workers keep the dataset copy they started with, so they would see one epoch for
ever: with `dataloader_persistent_workers` the data is read as before (exact at epoch boundaries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset
from transformers import TrainerCallback

__all__ = ["SeededSamples", "SeededSamplesMixin"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one sample of one epoch (NumPy's SeedSequence, any sizes of the three)."""
    low, high = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


class SeededSamples(Dataset):
    """`dataset[i]` under torch's global generator seeded from (seed, `epoch`, i), then restored."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, int(index)))
            return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        # the DataLoader's batched fetch; one seed per sample keeps a sample's draws independent of its batch
        return [self[index] for index in indices]


class _EpochOfSamples(TrainerCallback):
    """Tell the `SeededSamples` which epoch is read; on a resume `state.epoch` is the checkpoint's (e.g. 1.82 -> 1)."""

    def __init__(self, samples: SeededSamples) -> None:
        self.samples = samples

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.samples.epoch = int(state.epoch or 0)


class SeededSamplesMixin:
    """Put before the other samplers' mixins and `Trainer` in the bases: the training set is read through
    `SeededSamples` (map-style data sets; an `IterableDataset` is read as it is)."""

    def get_train_dataloader(self):
        dataset = self.train_dataset
        persistent = self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0
        if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__") or persistent:
            return super().get_train_dataloader()
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        samples = SeededSamples(dataset, seed)
        self.callback_handler.pop_callback(_EpochOfSamples)
        self.add_callback(_EpochOfSamples(samples))
        self.train_dataset = samples
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = dataset

    def _get_train_sampler(self, train_dataset: Dataset | None = None):
        # the sampler (stock, or the mixed-batch one that looks at the data set's type) sees the data set itself
        if train_dataset is None:
            train_dataset = self.train_dataset
        if isinstance(train_dataset, SeededSamples):
            train_dataset = train_dataset.dataset
        return super()._get_train_sampler(train_dataset)
