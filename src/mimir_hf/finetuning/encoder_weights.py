"""The encoder's weights, named and shaped for the classifier's base model.

ViT-MAE, ViT and BEiT name their modules alike in transformers 5.x (`embeddings.*`,
`layers.<i>.*`), so the mapping is mostly the identity; `_map_encoder_key` is the single place to
adapt if a version renames one. The position table is resized here, once, when the finetuning
resolution differs from the pretraining one.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from transformers import ViTMAEModel, ViTModel

from ..modeling.classifier_configs import check_resolution, square_size

__all__ = ["encoder_state_dict", "interpolate_position_embeddings"]

logger = logging.getLogger(__name__)


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


def _map_encoder_key(key: str, pooling: str = "cls") -> str | None:
    """Encoder parameter name → the classifier's base-model name (None drops it).

    Mean pooling drops the final norm (a fresh pooler norm replaces it) and the key bias, which adds
    the same constant to every attention logit of a query and so cannot change the softmax.
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
        patch_size = square_size(encoder.config.patch_size, "patch")
        check_resolution(image_size, patch_size)
        key = "embeddings.position_embeddings"
        state[key] = interpolate_position_embeddings(state[key], image_size // patch_size)
    return state
