"""Batch checks that run in the data pipeline, so that the training step never waits for the device.

The [0, 1] pixel-range check and the label-range check each read numbers back from a tensor.
Inside a training step on a GPU that is a host synchronisation which stalls the queue (and a
graph break under `torch.compile`). The trainers therefore check each batch once, where it is
made: their collator is wrapped in `CheckedCollator`, which runs on the host (in the DataLoader's
workers when there are any) before the batch is moved to the device, and raises the same errors
the model's forward would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..validation import check_pixel_values

__all__ = ["CheckedCollator", "check_batch_labels"]


def check_batch_labels(labels: torch.Tensor | None, num_classes: int) -> None:
    """Raise a `ValueError` naming the fix when a training batch has no `labels` or labels outside [0, num_classes)."""
    if labels is None:
        raise ValueError("AdversarialTrainer needs `labels` in every batch (the attack maximises the label's loss).")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes - 1}] for a model with {num_classes} classes, got values in "
            f"[{int(labels.min())}, {int(labels.max())}]: the label count of the model does not match the data."
        )


@dataclass
class CheckedCollator:
    """`collator(features)`, then the checks of `check_pixel_values` (and `check_batch_labels` when `num_labels` is set).

    A plain dataclass (not a closure) so that DataLoader worker processes can pickle it.
    """

    collator: Callable[[list[Any]], dict[str, Any]]
    num_channels: int | None = None
    num_labels: int | None = None

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = self.collator(features)
        if isinstance(batch, dict):
            pixel_values = batch.get("pixel_values")
            if isinstance(pixel_values, torch.Tensor):
                check_pixel_values(pixel_values, num_channels=self.num_channels, name="pixel_values")
            if self.num_labels is not None:
                check_batch_labels(batch.get("labels"), self.num_labels)
        return batch
