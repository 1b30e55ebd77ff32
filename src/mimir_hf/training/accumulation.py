"""Gradient accumulation for trainers that compute their own loss, one mechanism for both stages.

`MimirTrainer` and `AdversarialTrainer` return the mean loss of one micro-batch from `compute_loss`
and never pass `num_items_in_batch` to the model. The `Trainer` decides from
`model_accepts_loss_kwargs`, which it sets by inspecting the model's `forward`, whether that loss is
already normalised over the accumulated batch: ViT, BEiT and ViT-MAE take `**kwargs`, so it would
be True, `training_step` would skip its division by the accumulation steps, and 4 × 2 accumulated
micro-batches would apply twice the update of one batch of 8. Setting it False restores the
division and also stops the Trainer counting the labels of every accumulated batch
(`_get_num_items_in_batch`), a host synchronisation (and a gather across processes) per step whose
result nothing here uses. `Trainer.loss_is_scaled_for_ga` would fix the division alone, so the
trainers do not set it. tests/test_transformers_canaries.py fails if the Trainer stops reading the
attribute; both stages test that accumulation gives the large-batch update.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MicroBatchMeanLossMixin"]


class MicroBatchMeanLossMixin:
    """Put before `Trainer` in the bases of a trainer whose `compute_loss` returns a per-micro-batch mean."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
