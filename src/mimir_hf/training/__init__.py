"""Pieces shared by the pretraining and finetuning trainers and recipes."""

from .checkpoints import ConvertedCheckpointMixin, load_checkpoint_weights
from .ema import EMA_FILE, WeightEMA, WeightEMACallback
from .learning_rate import DEFAULT_LEARNING_RATE, ScaledLearningRateArguments, scaled_learning_rate
from .runs import finish_distributed, resolve_resume

__all__ = [
    "ConvertedCheckpointMixin",
    "EMA_FILE",
    "DEFAULT_LEARNING_RATE",
    "ScaledLearningRateArguments",
    "WeightEMA",
    "WeightEMACallback",
    "finish_distributed",
    "load_checkpoint_weights",
    "resolve_resume",
    "scaled_learning_rate",
]
