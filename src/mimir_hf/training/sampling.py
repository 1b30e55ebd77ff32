"""Trainer hook that samples a `MixedDataset` batch by batch with the reference's composition.

The stock `Trainer` samples training rows uniformly; with generated data mixed in, each batch must
instead hold a fixed share of generated images (`mimir_hf.data.mixing`). `_get_train_sampler` is
the Trainer's (private) hook for the sampler; `MixedBatchSampler` yields its indices in blocks of
the per-device batch size, so the DataLoader — and accelerate, which deals whole batches out to
the processes — keep every batch's composition. tests/test_mixing.py has a canary for the hook.
"""

from __future__ import annotations

import sys

from torch.utils.data import Dataset, Sampler

__all__ = ["MixedSamplingMixin"]


class MixedSamplingMixin:
    """Put before `Trainer` in the bases; only a `MixedDataset` training set changes the sampling."""

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        # A MixedDataset exists only if its module was imported; importing it here would pull in the
        # data layer and `datasets`, which the trainers (and the GPU machine) otherwise do without.
        mixing = sys.modules.get("mimir_hf.data.mixing")
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if mixing is None or not isinstance(dataset, mixing.MixedDataset):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return mixing.MixedBatchSampler(
            dataset.num_real, dataset.num_generated, self._train_batch_size, dataset.unsup_fraction, seed=seed
        )
