"""Pieces shared by the pretraining and finetuning trainers."""

from .checkpoints import ConvertedCheckpointMixin, load_checkpoint_weights

__all__ = ["ConvertedCheckpointMixin", "load_checkpoint_weights"]
