"""Turning the MIMIR authors' published `.pth` checkpoints into stock transformers checkpoints."""

from .api import (
    CIFAR10_LABELS,
    CONVERSION_RECORD,
    KINDS,
    ConversionArguments,
    ConversionResult,
    convert_reference_checkpoint,
    state_dict_to_model,
)
from .checkpoint import (
    ARCHITECTURES,
    EMA_CHOICES,
    ReferenceCheckpoint,
    UnrecognisedCheckpointError,
    UnsupportedArchitectureError,
    detect_architecture,
    load_reference_checkpoint,
    unwrap_state_dict,
)
from .swin import swin_state_dict_to_model
from .vit import HEADS_BY_WIDTH, mae_state_dict_to_model, timm_block_to_hf, vit_classifier_state_dict_to_model

__all__ = [
    "ARCHITECTURES",
    "CIFAR10_LABELS",
    "CONVERSION_RECORD",
    "EMA_CHOICES",
    "HEADS_BY_WIDTH",
    "KINDS",
    "ConversionArguments",
    "ConversionResult",
    "ReferenceCheckpoint",
    "UnrecognisedCheckpointError",
    "UnsupportedArchitectureError",
    "convert_reference_checkpoint",
    "detect_architecture",
    "load_reference_checkpoint",
    "mae_state_dict_to_model",
    "state_dict_to_model",
    "swin_state_dict_to_model",
    "timm_block_to_hf",
    "unwrap_state_dict",
    "vit_classifier_state_dict_to_model",
]
