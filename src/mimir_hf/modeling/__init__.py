"""The MIMIR pretraining model and its configuration; checkpoints are stock `vit_mae` ones."""

from .configuration_mimir import ATTACK_TARGETS, MI_ESTIMATORS, MimirConfig
from .modeling_mimir import MimirForPreTraining, MimirForPreTrainingOutput, init_mae_embeddings
from .presets import DECODER, DEFAULT_PATCH_SIZES, ENCODER_SIZES, encoder_kwargs, mimir_config, size_name

__all__ = [
    "init_mae_embeddings",
    "ATTACK_TARGETS",
    "DECODER",
    "DEFAULT_PATCH_SIZES",
    "ENCODER_SIZES",
    "MI_ESTIMATORS",
    "MimirConfig",
    "MimirForPreTraining",
    "MimirForPreTrainingOutput",
    "encoder_kwargs",
    "mimir_config",
    "size_name",
]
