"""Pieces shared by the pretraining and finetuning trainers and recipes."""

from .batches import CheckedCollator, check_labels
from .checkpoints import ConvertedCheckpointMixin, load_checkpoint_weights
from .runs import finish_distributed, resolve_resume

__all__ = [
    "CheckedCollator",
    "ConvertedCheckpointMixin",
    "check_labels",
    "finish_distributed",
    "load_checkpoint_weights",
    "resolve_resume",
]
