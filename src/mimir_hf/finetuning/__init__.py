"""Stage 2 of MIMIR: adversarial finetuning of a stock transformers image classifier.

- `mae_to_classifier`: a (MIMIR) `vit_mae` checkpoint → the reference's mean-pooled classifier as a
  stock `BeitForImageClassification` (or, with `pooling="cls"`, a `ViTForImageClassification`):
  decoder dropped, position embeddings interpolated if the resolution changes, fresh head.
- `AdversarialTrainingArguments` / `AdversarialTrainer`: PGD-AT, TRADES, MART or plain training
  on the shared PGD core, layer-wise lr decay, robust validation (`eval_robust_accuracy`),
  Mixup / CutMix with soft targets (`BatchMixing`).
- `ModelArguments`: the recipe's choice of starting point (a checkpoint or `scratch`).
"""

from .arguments import ADVERSARIAL_METHODS, TRADES_STARTS, AdversarialTrainingArguments, ModelArguments
from ..modeling.classifier_configs import (
    POOLINGS,
    beit_config_for_classification,
    check_resolution,
    classifier_config,
    vit_config_for_classification,
)
from .classifier_from_mae import (
    HEAD_INIT_STD_LARGE,
    HEAD_INIT_STD_SMALL,
    default_head_init_std,
    init_classifier_head,
    mae_to_classifier,
    reset_pooler_norm,
)
from .drop_path import add_drop_path
from .encoder import load_encoder, random_mae_encoder, reset_mae_embeddings
from .encoder_weights import interpolate_position_embeddings
from .losses import mart_loss, pgd_at_loss, plain_loss, soft_target_cross_entropy, trades_loss
from .mixup import BatchMixing, MixParameters, cutmix_box, mix_images, smoothed_one_hot, soft_targets
from .model import build_classifier
from .optim import param_groups_layer_decay
from .trainer import AdversarialTrainer

__all__ = [
    "ADVERSARIAL_METHODS",
    "AdversarialTrainer",
    "AdversarialTrainingArguments",
    "BatchMixing",
    "HEAD_INIT_STD_LARGE",
    "HEAD_INIT_STD_SMALL",
    "MixParameters",
    "ModelArguments",
    "POOLINGS",
    "TRADES_STARTS",
    "add_drop_path",
    "beit_config_for_classification",
    "build_classifier",
    "check_resolution",
    "classifier_config",
    "cutmix_box",
    "default_head_init_std",
    "init_classifier_head",
    "interpolate_position_embeddings",
    "load_encoder",
    "mae_to_classifier",
    "mart_loss",
    "mix_images",
    "param_groups_layer_decay",
    "pgd_at_loss",
    "plain_loss",
    "random_mae_encoder",
    "reset_mae_embeddings",
    "reset_pooler_norm",
    "smoothed_one_hot",
    "soft_target_cross_entropy",
    "soft_targets",
    "trades_loss",
    "vit_config_for_classification",
]
