"""The recipe's starting point: a pretrained checkpoint or a from-scratch encoder of a named size."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from transformers import BeitForImageClassification, ViTForImageClassification, ViTMAEConfig

from ..artefacts import is_hub_id
from ..modeling.presets import encoder_kwargs
from .arguments import ModelArguments
from .classifier_from_mae import mae_to_classifier
from .encoder import random_mae_encoder

__all__ = ["QUICKSTART_HINT", "build_classifier", "check_checkpoint_exists", "scratch_encoder_kwargs"]


def scratch_encoder_kwargs(model_args: ModelArguments, image_size: int) -> dict[str, Any]:
    """Encoder hyper-parameters of `model_args.model_size` at `image_size`, with the explicit overrides."""
    kwargs = encoder_kwargs(model_args.model_size, image_size=image_size, patch_size=model_args.patch_size)
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        value = getattr(model_args, name)
        if value is not None:
            kwargs[name] = value
            if name == "hidden_size":
                kwargs["intermediate_size"] = 4 * value
    if kwargs["hidden_size"] % kwargs["num_attention_heads"]:
        raise ValueError(
            f"hidden_size {kwargs['hidden_size']} is not divisible by num_attention_heads {kwargs['num_attention_heads']}."
        )
    return kwargs


def build_classifier(
    model_args: ModelArguments,
    *,
    num_labels: int,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    drop_path_rate: float = 0.0,
    generator: torch.Generator | None = None,
) -> BeitForImageClassification | ViTForImageClassification:
    """The classifier to finetune: converted from `model_name_or_path`, or a fresh MAE-initialised ViT.

    "From scratch" converts a randomly initialised `ViTMAEModel` (sin-cos positions, MAE's init), so the
    three runs of the paper's comparison (scratch / plain MAE / MIMIR) differ only in their weights.
    `drop_path_rate` is built into the mean-pooled classifier; the CLS one gets it from the trainer.
    """
    source = model_args.model_name_or_path
    if model_args.from_scratch:
        if image_size is None:
            raise ValueError("Training from scratch needs an image_size (set it in the data arguments).")
        source = random_mae_encoder(ViTMAEConfig(**scratch_encoder_kwargs(model_args, image_size)))
    else:
        check_checkpoint_exists(source)
    return mae_to_classifier(
        source,
        num_labels=num_labels,
        id2label=id2label,
        image_size=image_size,
        pooling=model_args.pooling,
        drop_path_rate=drop_path_rate if model_args.pooling == "mean" else 0.0,
        head_init_std=model_args.head_init_std,
        generator=generator,
    )


QUICKSTART_HINT = (
    "Run the pretraining quickstart first: `accelerate launch -q --config_file "
    "recipes/accelerate_configs/single_process.yaml recipes/pretrain.py`."
)


def check_checkpoint_exists(source: str) -> None:
    """A `FileNotFoundError` (with the quickstart hint where it applies) for a local path that is not there.

    Hub ids (`org/name`) are left to `from_pretrained`, which says whether they exist.
    """
    if _looks_local(source) and not os.path.isdir(source):
        hint = f" {QUICKSTART_HINT}" if "quickstart-pretrain" in source else ""
        raise FileNotFoundError(f"Pretrained checkpoint {source!r} does not exist.{hint}")


def _looks_local(source: str) -> bool:
    """A path rather than a Hub id (`org/name`); `outputs/<run>` is the recipes' own output, never a Hub id."""
    return not is_hub_id(source) or source.startswith("outputs/")
