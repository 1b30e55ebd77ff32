"""The encoder a classifier starts from: loaded from a `vit_mae` or `vit` checkpoint, or freshly initialised.

A pretraining checkpoint (`ViTMAEForPreTraining`, which MIMIR's `MimirForPreTraining` saves as) is
loaded whole and its `.vit` kept. Loading it into the bare `ViTMAEModel` instead would make
transformers list every decoder tensor as an unexpected key, a warning about weights that finetuning
drops by design; loading the class the checkpoint was saved from leaves nothing to report, so any
report that does appear is a real mismatch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from transformers import (
    AutoConfig,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTMAEModel,
    ViTModel,
)

from ..modeling import init_mae_embeddings
from ..modeling.classifier_configs import ENCODER_FIELDS

__all__ = ["SUPPORTED_MODEL_TYPES", "load_encoder", "random_mae_encoder", "reset_mae_embeddings"]

SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")

logger = logging.getLogger(__name__)


def _model_type_error(path: str, model_type: str | None) -> ValueError:
    return ValueError(
        f"{path!r} is a {model_type!r} checkpoint; finetuning starts from a ViT masked autoencoder "
        f"(`vit_mae`, e.g. the output of recipes/pretrain.py or facebook/vit-mae-base) or a ViT (`vit`). "
        "Other architectures are not supported."
    )


def _saved_with_decoder(config: PretrainedConfig) -> bool:
    """Whether a `vit_mae` checkpoint holds a whole pretraining model (encoder and decoder)."""
    return any(name.endswith("ForPreTraining") for name in getattr(config, "architectures", None) or [])


def load_encoder(source: str | os.PathLike | PreTrainedModel) -> ViTMAEModel | ViTModel:
    """The encoder of a `vit_mae` or `vit` checkpoint (a path, a Hub id, or a loaded model).

    Accepts `ViTMAEForPreTraining` (MIMIR's pretraining output), `ViTMAEModel`, `ViTModel` and
    `ViTForImageClassification`; anything else is a `ValueError` naming the model type it found.
    """
    if isinstance(source, PreTrainedModel):
        model_type = getattr(source.config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise _model_type_error(type(source).__name__, model_type)
        encoder = source if isinstance(source, (ViTMAEModel, ViTModel)) else getattr(source, "vit", None)
        if not isinstance(encoder, (ViTMAEModel, ViTModel)):
            raise ValueError(f"Could not find a ViT encoder (`.vit`) in {type(source).__name__}.")
        return encoder
    path = os.fspath(source)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{path!r} is a directory without config.json, so it is not a transformers checkpoint.")
    config = AutoConfig.from_pretrained(path)
    if config.model_type == "vit_mae":
        if not _saved_with_decoder(config):
            return ViTMAEModel.from_pretrained(path)
        encoder = ViTMAEForPreTraining.from_pretrained(path).vit
        logger.info("Loaded the encoder of %s; its MAE decoder is not part of a classifier and is dropped.", path)
        return encoder
    if config.model_type == "vit":
        return ViTModel.from_pretrained(path, add_pooling_layer=False)
    raise _model_type_error(path, config.model_type)


def random_mae_encoder(config: ViTMAEConfig | ViTConfig | Mapping[str, Any]) -> ViTMAEModel:
    """A freshly initialised MAE encoder (fixed sin-cos positions, MAE's init), the "from scratch" start.

    Converting it with `mae_to_classifier` gives a from-scratch classifier that differs from a
    pretrained one only in its weights, which is what the paper's comparison needs.
    """
    if not isinstance(config, PretrainedConfig):
        config = ViTMAEConfig(**dict(config))
    elif not isinstance(config, ViTMAEConfig):
        config = ViTMAEConfig(**{name: getattr(config, name) for name in (*ENCODER_FIELDS, "image_size")})
    encoder = ViTMAEModel(config)
    reset_mae_embeddings(encoder)
    return encoder


def reset_mae_embeddings(encoder: ViTMAEModel) -> None:
    """Re-run MAE's embedding init (sin-cos table, xavier patch projection, CLS token) on a stock encoder.

    transformers 5.x initialises children before parents and flags the patch projection as
    initialised, after which `ViTMAEEmbeddings.initialize_weights` returns early: a ViTMAE built from
    a config has an all-zero position table and CLS token. `init_mae_embeddings` is the one home of
    that init; here it overwrites whatever is there.
    """
    init_mae_embeddings(encoder.embeddings, encoder.config.initializer_range, keep_loaded=False)
