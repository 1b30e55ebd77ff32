"""From a (MIMIR) masked-autoencoder checkpoint to a stock transformers image classifier.

MIMIR's stage 2 keeps the pretrained encoder, throws the decoder away and puts a fresh linear
head on top. The result is an ordinary transformers checkpoint, so that anything we publish loads
with plain transformers (`pipeline("image-classification", model=...)`) and no custom code.

With `pooling="mean"` (the default, as the reference and MAE's own finetuning do) the classifier is
a `BeitForImageClassification` (see `mimir_hf.modeling.classifier_configs`): the encoder's final
norm, which the MAE only ever trained to feed its decoder, is dropped and a fresh pooler LayerNorm
normalises the mean of the patch tokens. Its blocks are ViT-MAE's except for the key bias, which
adds the same constant to every attention logit of a query and so cannot change the softmax:
dropping it is exact. `pooling="cls"` gives a `ViTForImageClassification` reading the CLS token
after the pretrained final norm.

In both, the position embeddings become an ordinary trainable parameter initialised with the
MAE's fixed 2-D sin-cos table (as the reference's timm ViT does when it loads an MAE checkpoint).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch
from torch import nn
from transformers import BeitForImageClassification, PreTrainedModel, ViTForImageClassification

from ..modeling.classifier_configs import classifier_config, square_size
from .encoder import load_encoder
from .encoder_weights import encoder_state_dict

__all__ = [
    "HEAD_INIT_STD_LARGE",
    "HEAD_INIT_STD_SMALL",
    "default_head_init_std",
    "init_classifier_head",
    "mae_to_classifier",
    "reset_pooler_norm",
]

HEAD_INIT_STD_LARGE = 2e-5
"""Std of the head's truncated-normal init for ImageNet-size inputs (MAE/MIMIR finetuning)."""
HEAD_INIT_STD_SMALL = 2e-2
"""Std of the head's init for small inputs (CIFAR-10, Tiny-ImageNet, the built-in digits)."""


def default_head_init_std(image_size: int) -> float:
    """2e-5 for ImageNet-size inputs (≥ 224 px), 2e-2 otherwise, as in MIMIR's finetuning scripts."""
    return HEAD_INIT_STD_LARGE if image_size >= 224 else HEAD_INIT_STD_SMALL


def mae_to_classifier(
    source: str | os.PathLike | PreTrainedModel,
    *,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    pooling: str = "mean",
    drop_path_rate: float = 0.0,
    head_init_std: float | None = None,
    generator: torch.Generator | None = None,
) -> BeitForImageClassification | ViTForImageClassification:
    """Build a stock image classifier from the encoder of a `vit_mae` (or `vit`) checkpoint.

    Args:
        source: checkpoint path / Hub id, or a loaded `ViTMAEForPreTraining`, `ViTMAEModel`, `ViTModel`
            or `ViTForImageClassification`. The decoder (and any old head or pooler) is dropped.
        num_labels: number of classes; inferred from `id2label` when omitted.
        id2label: class names by id, saved in the config (the pipeline reports these).
        image_size: finetuning resolution; the position embeddings are interpolated (2-D bicubic on
            the patch grid) when it differs from the checkpoint's. Must be a multiple of the patch size.
        pooling: `mean` (default, the reference's: a `BeitForImageClassification` averaging the patch
            tokens through a fresh LayerNorm, the encoder's final norm dropped) or `cls` (a
            `ViTForImageClassification` reading the CLS token after the pretrained final norm).
        drop_path_rate: with `mean`, the stochastic-depth rate stored in the config (BEiT applies it
            itself while training). With `cls` it must stay 0: that class has no drop path, so the
            trainer adds it with hooks (`AdversarialTrainingArguments.drop_path_rate`).
        head_init_std: std of the normal head init (bias zero). Default:
            `default_head_init_std(image_size)` (2e-5 at ImageNet size, 2e-2 below).
        generator: random source for the head init.
    """
    if num_labels is None:
        if id2label is None:
            raise ValueError("Pass num_labels or id2label: the classifier needs to know how many classes there are.")
        num_labels = len(id2label)
    if pooling == "cls" and drop_path_rate:
        raise ValueError(
            "ViTForImageClassification (pooling='cls') has no built-in drop path; leave drop_path_rate at 0 here "
            "and set AdversarialTrainingArguments.drop_path_rate, which adds it while training."
        )
    encoder = load_encoder(source)
    config = classifier_config(
        encoder.config,
        pooling=pooling,
        num_labels=num_labels,
        id2label=id2label,
        image_size=image_size,
        drop_path_rate=drop_path_rate,
    )
    classifier = BeitForImageClassification(config) if pooling == "mean" else ViTForImageClassification(config)
    resolution = square_size(config.image_size, "image")
    _load_encoder_weights(classifier, encoder_state_dict(encoder, image_size=resolution, pooling=pooling))
    if pooling == "mean":
        reset_pooler_norm(classifier)
    std = default_head_init_std(resolution) if head_init_std is None else head_init_std
    init_classifier_head(classifier.classifier, std, generator=generator)
    classifier.to(dtype=next(encoder.parameters()).dtype)
    return classifier


def _load_encoder_weights(classifier: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
    """Every encoder weight into the classifier's base model; only the pooler may be left new."""
    if not state["embeddings.position_embeddings"].any():
        warnings.warn(
            "The checkpoint's position embeddings are all zero, so the encoder cannot tell patches apart. "
            "A ViTMAE built from a config in transformers 5.x skips its sin-cos init; re-initialise it "
            "(`mimir_hf.finetuning.reset_mae_embeddings`) before pretraining.",
            stacklevel=3,
        )
    base = classifier.base_model
    result = base.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"The encoder weights do not fit the classifier's {type(base).__name__} (missing {missing}, unexpected "
            f"{result.unexpected_keys}); this transformers version may have renamed modules."
        )


@torch.no_grad()
def reset_pooler_norm(classifier: BeitForImageClassification) -> None:
    """Weight 1, bias 0: the reference's `fc_norm` is a fresh LayerNorm, never part of the checkpoint."""
    norm = classifier.base_model.pooler.layernorm
    nn.init.ones_(norm.weight)
    nn.init.zeros_(norm.bias)


@torch.no_grad()
def init_classifier_head(head: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """Normal(0, std) weights truncated at ±2 (absolute, as timm's `trunc_normal_` the reference calls) and zero bias.

    At the stds MAE-style finetuning uses (2e-2, 2e-5) the ±2 cut never bites: the head starts as
    an untruncated normal, exactly as in the reference.
    """
    if not isinstance(head, nn.Linear):
        raise TypeError(f"Expected the classifier head to be an nn.Linear, got {type(head).__name__}.")
    if std <= 0:
        raise ValueError(f"head_init_std must be > 0, got {std}.")
    nn.init.trunc_normal_(head.weight, mean=0.0, std=std, a=-2.0, b=2.0, generator=generator)
    nn.init.zeros_(head.bias)
