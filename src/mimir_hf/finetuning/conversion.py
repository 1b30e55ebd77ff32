"""From a (MIMIR) masked-autoencoder checkpoint to a stock `ViTForImageClassification`.

MIMIR's stage 2 keeps the pretrained encoder, throws the decoder away and puts a fresh linear
head on top. The result here is an ordinary `vit` checkpoint, so that anything we publish loads
with plain transformers (`pipeline("image-classification", model=...)`) and no custom code.

Two consequences of keeping the stock class, both documented in `docs/finetuning.md`:

- pooling is the CLS token's final hidden state (the reference averages the patch tokens and
  applies a LayerNorm); the MAE pretrains the CLS token and its position, so it is a sound start;
- the position embeddings become an ordinary trainable parameter initialised with the MAE's
  fixed 2-D sin-cos table (as the reference's timm ViT does when it loads an MAE checkpoint).

`ViTMAEModel` and `ViTModel` name their modules alike in transformers 5.x (`embeddings.*`,
`layers.<i>.*`, `layernorm.*`), so the encoder state dict loads into the classifier's `vit`
with nothing missing; `_map_encoder_key` is the single place to adapt if a version renames one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
    ViTMAEConfig,
    ViTMAEModel,
    ViTModel,
)

__all__ = [
    "HEAD_INIT_STD_LARGE",
    "HEAD_INIT_STD_SMALL",
    "SUPPORTED_MODEL_TYPES",
    "check_resolution",
    "default_head_init_std",
    "encoder_state_dict",
    "init_classifier_head",
    "interpolate_position_embeddings",
    "load_encoder",
    "mae_to_classifier",
    "random_mae_encoder",
    "reset_mae_embeddings",
    "vit_config_for_classification",
]

HEAD_INIT_STD_LARGE = 2e-5
"""Std of the head's truncated-normal init for ImageNet-size inputs (MAE/MIMIR finetuning)."""
HEAD_INIT_STD_SMALL = 2e-2
"""Std of the head's init for small inputs (CIFAR-10, Tiny-ImageNet, the built-in digits)."""
SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")

logger = logging.getLogger(__name__)

# ViTConfig fields an encoder shares with ViTMAEConfig (everything the classifier's ViT needs).
_ENCODER_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "patch_size",
    "num_channels",
    "qkv_bias",
)


def _as_int_size(value: int | tuple[int, int] | list[int], name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"Only square {name}s are supported, got {tuple(value)}.")
        value = value[0]
    return int(value)


def default_head_init_std(image_size: int) -> float:
    """2e-5 for ImageNet-size inputs (≥ 224 px), 2e-2 otherwise, as in MIMIR's finetuning scripts."""
    return HEAD_INIT_STD_LARGE if image_size >= 224 else HEAD_INIT_STD_SMALL


def check_resolution(image_size: int, patch_size: int) -> None:
    """Raise a `ValueError` with a remedy when `patch_size` does not tile `image_size`."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    if image_size % patch_size:
        lower = image_size - image_size % patch_size
        raise ValueError(
            f"The patch size {patch_size} does not divide the resolution {image_size}: a ViT needs a whole number "
            f"of patches per side. Use an image_size that is a multiple of {patch_size} (e.g. {lower} or "
            f"{lower + patch_size})."
        )


def vit_config_for_classification(
    encoder_config: PretrainedConfig,
    *,
    num_labels: int,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
) -> ViTConfig:
    """A `ViTConfig` with the encoder's architecture, built field by field.

    `ViTMAEConfig` lacks some `ViTConfig` fields (`encoder_stride`, the pooler's) and carries others
    (the decoder, MIMIR's extra keys), so the config is never copied wholesale.
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
    if id2label is not None:
        id2label = {int(key): str(value) for key, value in id2label.items()}
        if sorted(id2label) != list(range(num_labels)):
            raise ValueError(
                f"id2label has {len(id2label)} entries (ids {sorted(id2label)[:10]}...) but num_labels is "
                f"{num_labels}: the label names and the number of classes in the data do not match."
            )
    else:
        id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    source_size = _as_int_size(encoder_config.image_size, "image")
    image_size = source_size if image_size is None else int(image_size)
    patch_size = _as_int_size(encoder_config.patch_size, "patch")
    check_resolution(image_size, patch_size)
    kwargs: dict[str, Any] = {name: getattr(encoder_config, name) for name in _ENCODER_FIELDS}
    kwargs["patch_size"] = patch_size
    return ViTConfig(
        **kwargs,
        image_size=image_size,
        encoder_stride=patch_size,
        num_labels=num_labels,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
    )


def interpolate_position_embeddings(position_embeddings: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Resize a `(1, 1 + g·g, D)` table to `(1, 1 + grid_size², D)`: 2-D bicubic on the patch grid, CLS kept.

    Done once, in float32, when the finetuning resolution differs from the pretraining one (e.g. a
    224-px MAE finetuned at 384 px); the saved classifier then needs no `interpolate_pos_encoding`.
    """
    num_positions = position_embeddings.shape[1] - 1
    old_grid = math.isqrt(num_positions)
    if old_grid * old_grid != num_positions:
        raise ValueError(f"Position embeddings for {num_positions} patches do not form a square grid.")
    if old_grid == grid_size:
        return position_embeddings.clone()
    logger.info("Position embeddings interpolated from a %dx%d to a %dx%d patch grid (bicubic).", old_grid, old_grid, grid_size, grid_size)
    dim = position_embeddings.shape[-1]
    cls_position, patch_positions = position_embeddings[:, :1], position_embeddings[:, 1:]
    grid = patch_positions.float().reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    patch_positions = grid.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, dim)
    return torch.cat([cls_position, patch_positions.to(position_embeddings.dtype)], dim=1)


def _model_type_error(path: str, model_type: str | None) -> ValueError:
    return ValueError(
        f"{path!r} is a {model_type!r} checkpoint; finetuning starts from a ViT masked autoencoder "
        f"(`vit_mae`, e.g. the output of recipes/pretrain.py or facebook/vit-mae-base) or a ViT (`vit`). "
        "Other architectures are not supported."
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REPORT_STATUSES = ("UNEXPECTED", "MISSING", "MISMATCH", "CONVERSION")


class _DecoderOnlyReportFilter(logging.Filter):
    """Drops transformers' LOAD REPORT when its only entries are a pretraining checkpoint's decoder weights.

    Loading `ViTMAEForPreTraining` weights into the bare encoder is what finetuning always does, and
    stock transformers lists every decoder tensor as UNEXPECTED in a 20-odd line table. The decoder is
    dropped by design, so that report (and only that one: a missing or mismatched key still shows) is
    replaced by one line. tests/test_finetuning_conversion_log.py fails if the report's format changes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", str(record.getMessage()))
        if "LOAD REPORT" not in text:
            return True
        entries = []
        for line in text.splitlines():
            cells = [cell.strip() for cell in line.split("|")]
            if len(cells) > 1 and cells[1] in _REPORT_STATUSES:
                entries.append((cells[0], cells[1]))
        return not entries or not all(status == "UNEXPECTED" and key.startswith("decoder.") for key, status in entries)


@contextlib.contextmanager
def _decoder_keys_expected() -> Iterator[None]:
    target = logging.getLogger("transformers.modeling_utils")
    report_filter = _DecoderOnlyReportFilter()
    target.addFilter(report_filter)
    try:
        yield
    finally:
        target.removeFilter(report_filter)


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
        with _decoder_keys_expected():
            encoder = ViTMAEModel.from_pretrained(path)
        if "ForPreTraining" in " ".join(getattr(config, "architectures", None) or []):
            logger.info("Loaded the encoder of %s; its MAE decoder is not part of a classifier and is dropped.", path)
        return encoder
    if config.model_type == "vit":
        return ViTModel.from_pretrained(path, add_pooling_layer=False)
    raise _model_type_error(path, config.model_type)


def _map_encoder_key(key: str) -> str | None:
    """Encoder parameter name → the classifier's `vit.*` name (None drops it)."""
    if key.startswith("pooler.") or key == "embeddings.mask_token":
        return None
    return key


def encoder_state_dict(encoder: ViTMAEModel | ViTModel, image_size: int | None = None) -> dict[str, torch.Tensor]:
    """The encoder's weights named for `ViTForImageClassification.vit`, position table resized if needed."""
    state = {}
    for key, value in encoder.state_dict().items():
        mapped = _map_encoder_key(key)
        if mapped is not None:
            state[mapped] = value.detach().clone()
    if image_size is not None:
        patch_size = _as_int_size(encoder.config.patch_size, "patch")
        check_resolution(image_size, patch_size)
        key = "embeddings.position_embeddings"
        state[key] = interpolate_position_embeddings(state[key], image_size // patch_size)
    return state


def mae_to_classifier(
    source: str | os.PathLike | PreTrainedModel,
    *,
    num_labels: int | None = None,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    head_init_std: float | None = None,
    generator: torch.Generator | None = None,
) -> ViTForImageClassification:
    """Build a stock `ViTForImageClassification` from the encoder of a `vit_mae` (or `vit`) checkpoint.

    Args:
        source: checkpoint path / Hub id, or a loaded `ViTMAEForPreTraining`, `ViTMAEModel`, `ViTModel`
            or `ViTForImageClassification`. The decoder (and any old head or pooler) is dropped.
        num_labels: number of classes; inferred from `id2label` when omitted.
        id2label: class names by id, saved in the config (the pipeline reports these).
        image_size: finetuning resolution; the position embeddings are interpolated (2-D bicubic on
            the patch grid) when it differs from the checkpoint's. Must be a multiple of the patch size.
        head_init_std: std of the truncated-normal head init (cut at ±2 std, bias zero). Default:
            `default_head_init_std(image_size)` (2e-5 at ImageNet size, 2e-2 below).
        generator: random source for the head init.
    """
    if num_labels is None:
        if id2label is None:
            raise ValueError("Pass num_labels or id2label: the classifier needs to know how many classes there are.")
        num_labels = len(id2label)
    encoder = load_encoder(source)
    config = vit_config_for_classification(encoder.config, num_labels=num_labels, id2label=id2label, image_size=image_size)
    classifier = ViTForImageClassification(config)
    state = encoder_state_dict(encoder, image_size=_as_int_size(config.image_size, "image"))
    if not state["embeddings.position_embeddings"].any():
        warnings.warn(
            "The checkpoint's position embeddings are all zero, so the encoder cannot tell patches apart. "
            "A ViTMAE built from a config in transformers 5.x skips its sin-cos init; re-initialise it "
            "(`mimir_hf.finetuning.reset_mae_embeddings`) before pretraining.",
            stacklevel=2,
        )
    result = classifier.vit.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"The encoder weights do not fit the classifier's ViT (missing {missing}, unexpected "
            f"{result.unexpected_keys}); this transformers version may have renamed modules."
        )
    std = default_head_init_std(_as_int_size(config.image_size, "image")) if head_init_std is None else head_init_std
    init_classifier_head(classifier.classifier, std, generator=generator)
    classifier.to(dtype=next(encoder.parameters()).dtype)
    return classifier


@torch.no_grad()
def init_classifier_head(head: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """Truncated normal (±2 std) weights and zero bias, as MAE-style finetuning initialises the new head."""
    if not isinstance(head, nn.Linear):
        raise TypeError(f"Expected the classifier head to be an nn.Linear, got {type(head).__name__}.")
    if std <= 0:
        raise ValueError(f"head_init_std must be > 0, got {std}.")
    nn.init.trunc_normal_(head.weight, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=generator)
    nn.init.zeros_(head.bias)


def random_mae_encoder(config: ViTMAEConfig | ViTConfig | Mapping[str, Any]) -> ViTMAEModel:
    """A freshly initialised MAE encoder (fixed sin-cos positions, MAE's init), the "from scratch" start.

    Converting it with `mae_to_classifier` gives a from-scratch classifier that differs from a
    pretrained one only in its weights, which is what the paper's comparison needs.
    """
    if not isinstance(config, PretrainedConfig):
        config = ViTMAEConfig(**dict(config))
    elif not isinstance(config, ViTMAEConfig):
        config = ViTMAEConfig(**{name: getattr(config, name) for name in (*_ENCODER_FIELDS, "image_size")})
    encoder = ViTMAEModel(config)
    reset_mae_embeddings(encoder)
    return encoder


@torch.no_grad()
def reset_mae_embeddings(encoder: ViTMAEModel) -> None:
    """Run ViTMAE's own embedding init (sin-cos table, xavier patch projection, CLS token).

    transformers 5.x initialises children before parents and flags the patch projection as
    initialised, after which `ViTMAEEmbeddings.initialize_weights` returns early: a ViTMAE built from
    a config has an all-zero position table and CLS token. Clearing the flag re-runs the stock init.
    """
    embeddings = encoder.embeddings
    embeddings.patch_embeddings.projection._is_hf_initialized = False
    embeddings.initialize_weights()
