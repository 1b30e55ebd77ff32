"""Which stock transformers config a MIMIR classifier is, built from the encoder it starts from.

Two poolings, each a stock class, so that a finetuned classifier loads with plain transformers:

- `pooling="mean"` (the reference's and MAE's own finetuning head): the patch tokens are averaged
  and normalised by a fresh LayerNorm, with no final encoder norm. `BeitConfig` with absolute
  position embeddings, no relative position bias, no layer scale and no mask token describes
  exactly that pre-norm ViT.
- `pooling="cls"`: `ViTConfig`, the CLS token after the encoder's final norm.

Both the finetuning stage (`mimir_hf.finetuning.mae_to_classifier`) and the conversion of the
authors' timm checkpoints (`mimir_hf.convert`) build their classifiers from these configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import BeitConfig, PretrainedConfig, ViTConfig

__all__ = [
    "ENCODER_FIELDS",
    "POOLINGS",
    "beit_config_for_classification",
    "check_resolution",
    "classifier_config",
    "square_size",
    "vit_config_for_classification",
]

POOLINGS = ("mean", "cls")
"""`mean`: patch-token average + fresh LayerNorm (`BeitForImageClassification`, the reference's
head); `cls`: the CLS token after the encoder's final norm (`ViTForImageClassification`)."""

ENCODER_FIELDS = (
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
"""The fields a ViT encoder config shares with `ViTMAEConfig`: everything a classifier's encoder needs."""


def square_size(value: int | tuple[int, int] | list[int], name: str) -> int:
    """The side of a square `image_size` or `patch_size` given as an int or a pair; a `ValueError` otherwise."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"Only square {name}s are supported, got {tuple(value)}.")
        value = value[0]
    return int(value)


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
    fields: tuple[str, ...] = ENCODER_FIELDS,
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
    source_size = square_size(encoder_config.image_size, "image")
    image_size = source_size if image_size is None else int(image_size)
    patch_size = square_size(encoder_config.patch_size, "patch")
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
    fields = tuple(name for name in ENCODER_FIELDS if name != "qkv_bias")
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
