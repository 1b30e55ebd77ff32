"""From a (MIMIR) masked-autoencoder checkpoint to a stock transformers image classifier.

MIMIR's stage 2 keeps the pretrained encoder, throws the decoder away and puts a fresh linear
head on top. The result is an ordinary transformers checkpoint, so that anything we publish loads
with plain transformers (`pipeline("image-classification", model=...)`) and no custom code.

Two poolings, each a stock class:

- `pooling="mean"` (the default, as the reference and MAE's own finetuning do): the patch tokens
  are averaged and normalised by a *fresh* LayerNorm; the encoder's final norm, which the MAE only
  ever trained to feed its decoder, is dropped. `BeitForImageClassification` with absolute
  position embeddings, no relative position bias and no layer scale is exactly that network. Its
  blocks are ViT-MAE's blocks except for the key bias, which adds the same constant to every
  attention logit of a query and so cannot change the softmax: dropping it is exact.
- `pooling="cls"`: `ViTForImageClassification`, the CLS token after the pretrained final norm.

In both, the position embeddings become an ordinary trainable parameter initialised with the
MAE's fixed 2-D sin-cos table (as the reference's timm ViT does when it loads an MAE checkpoint).
ViT-MAE, ViT and BEiT name their modules alike in transformers 5.x (`embeddings.*`,
`layers.<i>.*`), so `_map_encoder_key` is the single place to adapt if a version renames one.
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
    BeitConfig,
    BeitForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
    ViTMAEConfig,
    ViTMAEModel,
    ViTModel,
)

from ..modeling import init_mae_embeddings

__all__ = [
    "HEAD_INIT_STD_LARGE",
    "HEAD_INIT_STD_SMALL",
    "POOLINGS",
    "SUPPORTED_MODEL_TYPES",
    "beit_config_for_classification",
    "check_resolution",
    "classifier_config",
    "default_head_init_std",
    "encoder_state_dict",
    "init_classifier_head",
    "interpolate_position_embeddings",
    "load_encoder",
    "mae_to_classifier",
    "random_mae_encoder",
    "reset_mae_embeddings",
    "reset_pooler_norm",
    "vit_config_for_classification",
]

HEAD_INIT_STD_LARGE = 2e-5
"""Std of the head's truncated-normal init for ImageNet-size inputs (MAE/MIMIR finetuning)."""
HEAD_INIT_STD_SMALL = 2e-2
"""Std of the head's init for small inputs (CIFAR-10, Tiny-ImageNet, the built-in digits)."""
SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")
POOLINGS = ("mean", "cls")
"""`mean`: patch-token average + fresh LayerNorm (`BeitForImageClassification`, the reference's
head); `cls`: the CLS token after the encoder's final norm (`ViTForImageClassification`)."""

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


def _classifier_config_kwargs(
    encoder_config: PretrainedConfig,
    num_labels: int,
    id2label: Mapping[int, str] | None,
    image_size: int | None,
    fields: tuple[str, ...] = _ENCODER_FIELDS,
) -> dict[str, Any]:
    """What every classifier config takes from the encoder and the data, checked.

    The config is built field by field: `ViTMAEConfig` lacks some fields of the classifier configs
    and carries others (the decoder, MIMIR's extra keys) that a classifier must not inherit.
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
    kwargs: dict[str, Any] = {name: getattr(encoder_config, name) for name in fields}
    kwargs.update(
        patch_size=patch_size,
        image_size=image_size,
        num_labels=num_labels,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
    )
    return kwargs


def vit_config_for_classification(
    encoder_config: PretrainedConfig,
    *,
    num_labels: int,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
) -> ViTConfig:
    """A `ViTConfig` (CLS pooling) with the encoder's architecture."""
    kwargs = _classifier_config_kwargs(encoder_config, num_labels, id2label, image_size)
    return ViTConfig(**kwargs, encoder_stride=kwargs["patch_size"])


def beit_config_for_classification(
    encoder_config: PretrainedConfig,
    *,
    num_labels: int,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    drop_path_rate: float = 0.0,
) -> BeitConfig:
    """A `BeitConfig` that is a mean-pooled ViT: the reference's finetuning network, as a stock class.

    BEiT's extras are switched off (relative position biases, layer scale, mask token) and its
    absolute position table switched on, which leaves a pre-norm ViT whose pooler averages the patch
    tokens and applies its own LayerNorm. Its drop path is built in, `rate · i / (L − 1)` on block
    `i` as in timm, and inert in eval mode.
    """
    if not getattr(encoder_config, "qkv_bias", True):
        raise ValueError(
            "pooling='mean' builds a BeitForImageClassification, whose query and value projections always "
            "carry a bias; this encoder was trained with qkv_bias=False. Use pooling='cls'."
        )
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f"drop_path_rate must lie in [0, 1), got {drop_path_rate}.")
    fields = tuple(name for name in _ENCODER_FIELDS if name != "qkv_bias")
    return BeitConfig(
        **_classifier_config_kwargs(encoder_config, num_labels, id2label, image_size, fields),
        use_mask_token=False,
        use_absolute_position_embeddings=True,
        use_relative_position_bias=False,
        use_shared_relative_position_bias=False,
        layer_scale_init_value=0.0,
        drop_path_rate=drop_path_rate,
        use_mean_pooling=True,
    )


def classifier_config(
    encoder_config: PretrainedConfig,
    *,
    pooling: str = "mean",
    num_labels: int,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    drop_path_rate: float = 0.0,
) -> BeitConfig | ViTConfig:
    """The classifier config for `pooling` (`mean` → `BeitConfig`, `cls` → `ViTConfig`)."""
    if pooling == "mean":
        return beit_config_for_classification(
            encoder_config, num_labels=num_labels, id2label=id2label, image_size=image_size, drop_path_rate=drop_path_rate
        )
    if pooling == "cls":
        return vit_config_for_classification(encoder_config, num_labels=num_labels, id2label=id2label, image_size=image_size)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")


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


def _map_encoder_key(key: str, pooling: str = "cls") -> str | None:
    """Encoder parameter name → the classifier's base-model name (None drops it).

    Mean pooling drops the final norm (a fresh pooler norm replaces it) and the key bias, which
    softmax cannot see (see the module docstring).
    """
    if key.startswith("pooler.") or key == "embeddings.mask_token":
        return None
    if pooling == "mean" and (key.startswith("layernorm.") or key.endswith("attention.k_proj.bias")):
        return None
    return key


def encoder_state_dict(
    encoder: ViTMAEModel | ViTModel, image_size: int | None = None, pooling: str = "cls"
) -> dict[str, torch.Tensor]:
    """The encoder's weights named for the classifier's base model, position table resized if needed."""
    state = {}
    for key, value in encoder.state_dict().items():
        mapped = _map_encoder_key(key, pooling)
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
    state = encoder_state_dict(encoder, image_size=_as_int_size(config.image_size, "image"), pooling=pooling)
    if not state["embeddings.position_embeddings"].any():
        warnings.warn(
            "The checkpoint's position embeddings are all zero, so the encoder cannot tell patches apart. "
            "A ViTMAE built from a config in transformers 5.x skips its sin-cos init; re-initialise it "
            "(`mimir_hf.finetuning.reset_mae_embeddings`) before pretraining.",
            stacklevel=2,
        )
    base = classifier.base_model
    result = base.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"The encoder weights do not fit the classifier's {type(base).__name__} (missing {missing}, unexpected "
            f"{result.unexpected_keys}); this transformers version may have renamed modules."
        )
    if pooling == "mean":
        reset_pooler_norm(classifier)
    std = default_head_init_std(_as_int_size(config.image_size, "image")) if head_init_std is None else head_init_std
    init_classifier_head(classifier.classifier, std, generator=generator)
    classifier.to(dtype=next(encoder.parameters()).dtype)
    return classifier


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


def reset_mae_embeddings(encoder: ViTMAEModel) -> None:
    """Re-run MAE's embedding init (sin-cos table, xavier patch projection, CLS token) on a stock encoder.

    transformers 5.x initialises children before parents and flags the patch projection as
    initialised, after which `ViTMAEEmbeddings.initialize_weights` returns early: a ViTMAE built from
    a config has an all-zero position table and CLS token. `init_mae_embeddings` is the one home of
    that init; here it overwrites whatever is there.
    """
    init_mae_embeddings(encoder.embeddings, encoder.config.initializer_range, keep_loaded=False)
