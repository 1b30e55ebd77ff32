"""The MIMIR pretraining model and its configuration (checkpoints are stock `vit_mae` ones), and the
stock classifier configs a pretrained encoder becomes."""

from .classifier_configs import (
    POOLINGS,
    beit_config_for_classification,
    check_resolution,
    classifier_config,
    vit_config_for_classification,
)
from .configuration_mimir import ATTACK_TARGETS, MI_ESTIMATORS, MimirConfig
from .modeling_mimir import MimirForPreTraining, MimirForPreTrainingOutput, init_mae_embeddings
from .presets import DECODER, DEFAULT_PATCH_SIZES, ENCODER_SIZES, encoder_kwargs, mimir_config, size_name

__all__ = [
    "ATTACK_TARGETS",
    "DECODER",
    "DEFAULT_PATCH_SIZES",
    "ENCODER_SIZES",
    "MI_ESTIMATORS",
    "MimirConfig",
    "MimirForPreTraining",
    "MimirForPreTrainingOutput",
    "POOLINGS",
    "beit_config_for_classification",
    "check_resolution",
    "classifier_config",
    "encoder_kwargs",
    "init_mae_embeddings",
    "mimir_config",
    "size_name",
    "vit_config_for_classification",
]
