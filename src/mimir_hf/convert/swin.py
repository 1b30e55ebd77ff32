"""Swin classifiers (the reference's ARES-trained Swin-B/L) as stock `SwinForImageClassification`.

Two layouts are read:

- the original Swin layout that the reference's `models/swin_transformer.py` and ARES use: stage
  `i` ends with its patch merging (`layers.i.downsample.*`), the head is `head.*`;
- timm ≥ 0.9's: stage `i` *starts* with the merging of the previous stage's output
  (`layers.i.downsample.*` for i ≥ 1) and the head is `head.fc.*`.

transformers' Swin follows the original (merging at the end of a stage, same 2×2 concatenation
order), so only names move. Everything but the LayerNorm eps is read from the weights: widths from
the patch projection, depths from the block indices, heads from the relative-position tables,
the window from their size ((2w − 1)² rows). The relative-position index and the shift masks are
buffers both sides recompute, so they are not copied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from transformers import SwinConfig, SwinForImageClassification

from .checkpoint import UnrecognisedCheckpointError, describe_keys

__all__ = ["swin_state_dict_to_model"]

_BUFFERS = ("relative_position_index", "attn_mask")


def _indices(keys: set[str], prefix: str) -> list[int]:
    found = sorted({int(k[len(prefix) :].split(".", 1)[0]) for k in keys if k.startswith(prefix)})
    if found != list(range(len(found))):
        raise UnrecognisedCheckpointError(f"{prefix}* indices are not contiguous: {found}.")
    return found


def swin_state_dict_to_model(
    state: Mapping[str, torch.Tensor],
    *,
    image_size: int = 224,
    layer_norm_eps: float = 1e-6,
    id2label: Mapping[int, str] | None = None,
) -> SwinForImageClassification:
    """Build the stock classifier and load the weights (LayerNorm eps 1e-6 as the reference's Swin builders)."""
    keys = set(state)
    if "absolute_pos_embed" in keys:
        raise UnrecognisedCheckpointError("Swin with absolute position embeddings (ape=True) is not supported.")
    timm_layout = "head.fc.weight" in keys
    config = _swin_config(state, "head.fc" if timm_layout else "head", image_size, layer_norm_eps, id2label)
    model = SwinForImageClassification(config)
    out, used = _swin_weights(state, config.depths, timm_layout)
    unused = sorted(k for k in keys - used if not k.endswith(_BUFFERS))
    if unused:
        raise UnrecognisedCheckpointError(f"Swin tensors this conversion does not know: {unused[:10]}; refusing to drop them.")
    result = model.load_state_dict(out, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_BUFFERS)]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"The converted Swin weights do not fit SwinForImageClassification (missing {missing[:10]}, unexpected "
            f"{result.unexpected_keys[:10]}): the depths/heads read from the file disagree with the layout, or this "
            "transformers version renamed modules."
        )
    return model.eval()


def _swin_config(
    state: Mapping[str, torch.Tensor],
    head_key: str,
    image_size: int,
    layer_norm_eps: float,
    id2label: Mapping[int, str] | None,
) -> SwinConfig:
    """The architecture, read from the tensors' shapes: stages, blocks, heads and window from the position tables."""
    keys = set(state)
    try:
        projection = state["patch_embed.proj.weight"]
        head = state[f"{head_key}.weight"]
    except KeyError as error:
        raise UnrecognisedCheckpointError(f"Missing {error.args[0]!r}: not a Swin classifier. The file has {describe_keys(state)}.") from None
    embed_dim, channels, patch, _ = projection.shape
    depths, heads, windows = [], [], []
    for stage in _indices(keys, "layers."):
        depths.append(len(_indices(keys, f"layers.{stage}.blocks.")))
        table = state[f"layers.{stage}.blocks.0.attn.relative_position_bias_table"]
        side = math.isqrt(table.shape[0])
        if side * side != table.shape[0] or side % 2 == 0:
            raise UnrecognisedCheckpointError(f"Relative position table of stage {stage} has {table.shape[0]} rows, not (2w-1)².")
        heads.append(int(table.shape[1]))
        windows.append((side + 1) // 2)
    return SwinConfig(
        image_size=image_size,
        patch_size=int(patch),
        num_channels=int(channels),
        embed_dim=int(embed_dim),
        depths=depths,
        num_heads=heads,
        # A stage whose feature map is no larger than the window uses the whole map; its table still has the
        # configured size, which is the largest one.
        window_size=max(windows),
        mlp_ratio=float(state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim),
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in keys,
        layer_norm_eps=layer_norm_eps,
        drop_path_rate=0.0,
        use_absolute_embeddings=False,
        num_labels=int(head.shape[0]),
        **({"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}} if id2label else {}),
    )


def _swin_weights(
    state: Mapping[str, torch.Tensor], depths: list[int], timm_layout: bool
) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The tensors renamed to SwinForImageClassification's keys (q, k, v split), and the source keys used."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(source: str, target: str) -> None:
        for suffix in ("weight", "bias"):
            key = f"{source}.{suffix}"
            if key in state:
                out[f"{target}.{suffix}"] = state[key].clone()
                used.add(key)

    take("patch_embed.proj", "swin.embeddings.patch_embeddings.projection")
    take("patch_embed.norm", "swin.embeddings.norm")
    for stage, depth in enumerate(depths):
        for block in range(depth):
            source, target = f"layers.{stage}.blocks.{block}", f"swin.encoder.layers.{stage}.blocks.{block}"
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), state[f"{source}.attn.qkv.weight"].chunk(3)):
                out[f"{target}.attention.{name}.weight"] = chunk.clone()
            if f"{source}.attn.qkv.bias" in state:
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), state[f"{source}.attn.qkv.bias"].chunk(3)):
                    out[f"{target}.attention.{name}.bias"] = chunk.clone()
            used |= {f"{source}.attn.qkv.weight", f"{source}.attn.qkv.bias"}
            table = f"{source}.attn.relative_position_bias_table"
            out[f"{target}.attention.relative_position_bias.relative_position_bias_table"] = state[table].clone()
            used.add(table)
            take(f"{source}.attn.proj", f"{target}.attention.o_proj")
            take(f"{source}.norm1", f"{target}.layernorm_before")
            take(f"{source}.norm2", f"{target}.layernorm_after")
            take(f"{source}.mlp.fc1", f"{target}.mlp.fc1")
            take(f"{source}.mlp.fc2", f"{target}.mlp.fc2")
        # Original layout: stage i's merging sits at its end; timm's: at the start of stage i + 1.
        merging_source = stage + 1 if timm_layout else stage
        if f"layers.{merging_source}.downsample.reduction.weight" in state:
            take(f"layers.{merging_source}.downsample.reduction", f"swin.encoder.layers.{stage}.downsample.reduction")
            take(f"layers.{merging_source}.downsample.norm", f"swin.encoder.layers.{stage}.downsample.norm")
    take("norm", "swin.layernorm")
    take("head.fc" if timm_layout else "head", "classifier")
    return out, used
