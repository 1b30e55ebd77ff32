"""Stage 1 of MIMIR: adversarial masked-autoencoder pretraining with an MI penalty."""

from .arguments import METHOD_FIELDS, MimirTrainingArguments, PretrainModelArguments
from .attack import craft_adversarial_pixels, mae_attack_objective
from .trainer import MimirTrainer

__all__ = [
    "METHOD_FIELDS",
    "MimirTrainer",
    "MimirTrainingArguments",
    "PretrainModelArguments",
    "craft_adversarial_pixels",
    "mae_attack_objective",
]
