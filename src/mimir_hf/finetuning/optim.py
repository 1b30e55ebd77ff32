"""Layer-wise learning-rate decay: the parameter groups MAE-style finetuning optimises.

Block `i` of an `L`-block ViT gets `lr · decay^(L + 1 − (i + 1))`; the embeddings (patch
projection, CLS token, position table) count as layer 0 and get `lr · decay^(L + 1)`; the final
LayerNorm and the head count as layer `L + 1` and get the full `lr`. The pretrained lower layers
therefore move little while the new head learns at full speed.

Weight decay is off for every 1-D parameter (biases, LayerNorm weights) and for the CLS/mask
tokens and position embeddings, as in the MAE/MIMIR reference.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

__all__ = ["NO_WEIGHT_DECAY_NAMES", "layer_id", "num_layers_of", "param_groups_layer_decay"]

NO_WEIGHT_DECAY_NAMES = ("cls_token", "mask_token", "position_embeddings", "distillation_token")
_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|blocks)\.(\d+)\.")


def num_layers_of(model: nn.Module) -> int:
    """Number of transformer blocks (`config.num_hidden_layers` for a transformers ViT)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_hidden_layers", None) is not None:
        return int(config.num_hidden_layers)
    ids = {int(match.group(1)) for name, _ in model.named_parameters() if (match := _BLOCK.search(name))}
    if not ids:
        raise ValueError("Could not find transformer blocks (`layers.<i>.`) in the model's parameter names.")
    return max(ids) + 1


def layer_id(name: str, num_layers: int) -> int:
    """0 for the embeddings, `i + 1` for block `i`, `num_layers + 1` for the rest (final norm, head)."""
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings" in name or any(name.endswith(token) for token in NO_WEIGHT_DECAY_NAMES):
        return 0
    return num_layers + 1


def _decays(name: str, parameter: nn.Parameter) -> bool:
    return parameter.ndim > 1 and not any(name.split(".")[-1] == token for token in NO_WEIGHT_DECAY_NAMES)


def param_groups_layer_decay(
    model: nn.Module,
    *,
    weight_decay: float,
    layer_decay: float,
    learning_rate: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise lr scales and selective weight decay.

    Each group carries `lr_scale` and `layer_id` (kept by torch optimizers, handy for logging and
    tests) and, when `learning_rate` is given, its own `lr = learning_rate · lr_scale` — the value a
    `LambdaLR` schedule (warm-up + cosine) then multiplies. `layer_decay=1` gives plain AdamW groups.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must lie in (0, 1], got {layer_decay}.")
    num_layers = num_layers_of(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_id(name, num_layers)
        decays = _decays(name, parameter)
        key = (layer, decays)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - layer)
            groups[key] = {
                "params": [],
                "param_names": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": scale,
                "layer_id": layer,
            }
            if learning_rate is not None:
                groups[key]["lr"] = learning_rate * scale
        groups[key]["params"].append(parameter)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]
