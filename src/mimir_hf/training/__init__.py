"""Pieces shared by the pretraining and finetuning trainers and recipes."""

from .checkpoints import ConvertedCheckpointMixin, load_checkpoint_weights
from .runs import finish_distributed, resolve_resume

__all__ = ["ConvertedCheckpointMixin", "finish_distributed", "load_checkpoint_weights", "resolve_resume"]
