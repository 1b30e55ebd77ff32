"""Pieces shared by the pretraining and finetuning trainers and recipes."""

from .accumulation import MicroBatchMeanLossMixin
from .batches import CheckedCollator, check_batch_labels
from .checkpoints import ConvertedCheckpointMixin, load_checkpoint_weights
from .ema import EMA_FILE, WeightEMA, WeightEMACallback
from .learning_rate import DEFAULT_LEARNING_RATE, ScaledLearningRateArguments, scaled_learning_rate
from .runs import finish_distributed, last_complete_checkpoint, refuse_fp16_attacks, refuse_trainer_push, resolve_resume
from .sample_seeds import SeededSamples, SeededSamplesMixin

__all__ = [
    "CheckedCollator",
    "ConvertedCheckpointMixin",
    "DEFAULT_LEARNING_RATE",
    "EMA_FILE",
    "MicroBatchMeanLossMixin",
    "ScaledLearningRateArguments",
    "SeededSamples",
    "SeededSamplesMixin",
    "WeightEMA",
    "WeightEMACallback",
    "check_batch_labels",
    "finish_distributed",
    "last_complete_checkpoint",
    "load_checkpoint_weights",
    "refuse_fp16_attacks",
    "refuse_trainer_push",
    "resolve_resume",
    "scaled_learning_rate",
]
