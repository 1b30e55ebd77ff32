"""timm-layout ViTs (the reference's MAE and its finetuned classifiers) as stock transformers models.

Both the MAE (`models/mae_vit.py` in the reference) and the classifier (`models/models_vit.py`,
a timm `VisionTransformer`) use timm's block layout: `blocks.N.norm1`, a fused `attn.qkv` whose
rows are the query, key and value projections in that order, `attn.proj`, `norm2`, `mlp.fc1/fc2`.
transformers 5.x names the same pieces `layers.N.layernorm_before`, `attention.{q,k,v,o}_proj`,
`layernorm_after`, `mlp.fc1/fc2` in ViT, ViT-MAE and BEiT alike, so one block mapping serves all three.

- MAE pretraining checkpoint → `MimirForPreTraining` (a `vit_mae` checkpoint).
- Classifier with `global_pool` (patch-token mean + `fc_norm`, no final `norm`) → the mean-pooled
  `BeitForImageClassification` of `mimir_hf.finetuning.mae_to_classifier`. BEiT has no key bias;
  dropping it is exact because it adds `q · b_k`, the same for every key of a query, to the
  attention logits, which softmax ignores (the equivalence test checks the logits).
- Classifier with token pooling (final `norm`, CLS token, as timm's stock ViT) → `ViTForImageClassification`.

The number of attention heads is not visible in the weights; it comes from the width (ViT-T/S/B/L:
3/6/12/16 heads, the reference's models) unless given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from transformers import BeitForImageClassification, ViTConfig, ViTForImageClassification

from ..modeling import MimirConfig, MimirForPreTraining, classifier_config
from .checkpoint import UnrecognisedCheckpointError, describe_keys

__all__ = [
    "HEADS_BY_WIDTH",
    "REFERENCE_DECODER_HEADS",
    "mae_state_dict_to_model",
    "timm_block_to_hf",
    "vit_classifier_state_dict_to_model",
    "vit_encoder_shape",
]

HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
"""Attention heads of the reference's ViTs by width (ViT-T/S/B/L/H)."""
REFERENCE_DECODER_HEADS = 16
"""The reference's MAE decoders (`*_dec128d2b`) all use 16 heads."""


def _heads(width: int, given: int | None, what: str) -> int:
    heads = given if given is not None else HEADS_BY_WIDTH.get(width)
    if heads is None:
        raise ValueError(
            f"The {what} is {width} wide, not a standard ViT width {sorted(HEADS_BY_WIDTH)}; the number of attention "
            "heads cannot be read from the weights. Pass it explicitly (num_attention_heads / decoder_num_attention_heads)."
        )
    if width % heads:
        raise ValueError(f"{heads} heads do not divide the {what}'s width {width}.")
    return heads


def _block_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = f"{prefix}."
    indices = {int(k[len(pattern) :].split(".", 1)[0]) for k in state if k.startswith(pattern)}
    if not indices:
        return 0
    if sorted(indices) != list(range(len(indices))):
        raise UnrecognisedCheckpointError(f"{prefix}.* block indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def vit_encoder_shape(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Encoder hyper-parameters readable from a timm ViT's weights (everything but the heads)."""
    try:
        projection = state["patch_embed.proj.weight"]
        positions = state["pos_embed"]
        fc1 = state["blocks.0.mlp.fc1.weight"]
    except KeyError as error:
        raise UnrecognisedCheckpointError(f"Missing {error.args[0]!r}: not a timm ViT. The file has {describe_keys(state)}.") from None
    hidden, channels, patch, patch_w = projection.shape
    if patch != patch_w:
        raise ValueError(f"Non-square patches {patch}x{patch_w} are not supported.")
    num_patches = positions.shape[1] - 1
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches or positions.shape[-1] != hidden:
        raise UnrecognisedCheckpointError(
            f"pos_embed {tuple(positions.shape)} is not a (1, 1 + g², {hidden}) table with a CLS row; models without "
            "a class token are not supported."
        )
    return {
        "hidden_size": int(hidden),
        "num_channels": int(channels),
        "patch_size": int(patch),
        "image_size": int(grid * patch),
        "num_hidden_layers": _block_count(state, "blocks"),
        "intermediate_size": int(fc1.shape[0]),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
    }


def timm_block_to_hf(
    state: Mapping[str, torch.Tensor],
    source: str,
    target: str,
    *,
    drop_key_bias: bool = False,
    used: set[str] | None = None,
) -> dict[str, torch.Tensor]:
    """One timm block (`source` = `blocks.3`) as transformers' names under `target` (`vit.layers.3`).

    The source keys it read are added to `used`, so the caller can refuse tensors nobody mapped.
    """
    out: dict[str, torch.Tensor] = {}
    used = set() if used is None else used
    qkv_weight = state[f"{source}.attn.qkv.weight"]
    used.update({f"{source}.attn.qkv.weight", f"{source}.attn.qkv.bias"})
    for name, chunk in zip(("q_proj", "k_proj", "v_proj"), qkv_weight.chunk(3, dim=0)):
        out[f"{target}.attention.{name}.weight"] = chunk.clone()
    if f"{source}.attn.qkv.bias" in state:
        for name, chunk in zip(("q_proj", "k_proj", "v_proj"), state[f"{source}.attn.qkv.bias"].chunk(3, dim=0)):
            if not (drop_key_bias and name == "k_proj"):
                out[f"{target}.attention.{name}.bias"] = chunk.clone()
    renames = {
        "attn.proj": "attention.o_proj",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for old, new in renames.items():
        for suffix in ("weight", "bias"):
            key = f"{source}.{old}.{suffix}"
            if key in state:
                out[f"{target}.{new}.{suffix}"] = state[key].clone()
                used.add(key)
    return out


def _embeddings_to_hf(state: Mapping[str, torch.Tensor], target: str) -> dict[str, torch.Tensor]:
    return {
        f"{target}.embeddings.cls_token": state["cls_token"].clone(),
        f"{target}.embeddings.position_embeddings": state["pos_embed"].clone(),
        f"{target}.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"].clone(),
        f"{target}.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"].clone(),
    }


def _load_exactly(model: torch.nn.Module, state: dict[str, torch.Tensor], source_keys: set[str], used: set[str]) -> None:
    """Load `state` strictly and make sure no source tensor was silently left behind."""
    unused = sorted(source_keys - used)
    if unused:
        raise UnrecognisedCheckpointError(
            f"The checkpoint has tensors this conversion does not know what to do with: {unused[:10]}"
            f"{' ...' if len(unused) > 10 else ''}. Refusing to drop them silently."
        )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"The converted weights do not fit {type(model).__name__} (missing {result.missing_keys[:10]}, unexpected "
            f"{result.unexpected_keys[:10]}); this transformers version may have renamed modules."
        )


def mae_state_dict_to_model(
    state: Mapping[str, torch.Tensor],
    *,
    num_attention_heads: int | None = None,
    decoder_num_attention_heads: int | None = None,
    layer_norm_eps: float = 1e-6,
    norm_pix_loss: bool = True,
    mask_ratio: float = 0.75,
    **config_overrides: Any,
) -> MimirForPreTraining:
    """The reference's MAE/MIMIR pretraining weights as a `MimirForPreTraining` (a stock `vit_mae` checkpoint).

    Defaults are the reference's pretraining scripts (`--norm_pix_loss --mask_ratio 0.75`, LayerNorm eps 1e-6).
    """
    shape = vit_encoder_shape(state)
    decoder_embed = state["decoder_embed.weight"]
    decoder_hidden = int(decoder_embed.shape[0])
    decoder_layers = _block_count(state, "decoder_blocks")
    if decoder_layers == 0:
        raise UnrecognisedCheckpointError("The MAE checkpoint has no decoder blocks (`decoder_blocks.N.*`).")
    pred = state["decoder_pred.weight"]
    expected_pred = shape["patch_size"] ** 2 * shape["num_channels"]
    if pred.shape[0] != expected_pred:
        raise UnrecognisedCheckpointError(f"decoder_pred outputs {pred.shape[0]} values per patch, expected {expected_pred}.")
    config = MimirConfig(
        **shape,
        num_attention_heads=_heads(shape["hidden_size"], num_attention_heads, "encoder"),
        decoder_hidden_size=decoder_hidden,
        decoder_num_hidden_layers=decoder_layers,
        decoder_num_attention_heads=_heads(decoder_hidden, decoder_num_attention_heads or REFERENCE_DECODER_HEADS, "decoder"),
        decoder_intermediate_size=int(state["decoder_blocks.0.mlp.fc1.weight"].shape[0]),
        layer_norm_eps=layer_norm_eps,
        norm_pix_loss=norm_pix_loss,
        mask_ratio=mask_ratio,
        **config_overrides,
    )
    model = MimirForPreTraining(config)
    out = _embeddings_to_hf(state, "vit")
    used = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    for i in range(shape["num_hidden_layers"]):
        out.update(timm_block_to_hf(state, f"blocks.{i}", f"vit.layers.{i}", used=used))
    for i in range(decoder_layers):
        out.update(timm_block_to_hf(state, f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}", used=used))
    renames = {
        "norm": "vit.layernorm",
        "decoder_embed": "decoder.decoder_embed",
        "decoder_norm": "decoder.decoder_norm",
        "decoder_pred": "decoder.decoder_pred",
    }
    for old, new in renames.items():
        for suffix in ("weight", "bias"):
            out[f"{new}.{suffix}"] = state[f"{old}.{suffix}"].clone()
            used.add(f"{old}.{suffix}")
    out["decoder.mask_token"] = state["mask_token"].clone()
    out["decoder.decoder_pos_embed"] = state["decoder_pos_embed"].clone()
    used |= {"mask_token", "decoder_pos_embed"}
    _load_exactly(model, out, set(state), used)
    return model.eval()


def vit_classifier_state_dict_to_model(
    state: Mapping[str, torch.Tensor],
    *,
    num_attention_heads: int | None = None,
    id2label: Mapping[int, str] | None = None,
    layer_norm_eps: float = 1e-6,
) -> BeitForImageClassification | ViTForImageClassification:
    """A finetuned timm ViT as a stock classifier: global pool + `fc_norm` → BEiT (mean), token pool + `norm` → ViT (CLS)."""
    shape = vit_encoder_shape(state)
    if "fc_norm.weight" in state and "norm.weight" not in state:
        pooling = "mean"
    elif "norm.weight" in state and "fc_norm.weight" not in state:
        pooling = "cls"
    else:
        raise UnrecognisedCheckpointError(
            "A timm ViT classifier has either `fc_norm` (global average pooling, the reference's default) or a final "
            f"`norm` (CLS token); this one has {'both' if 'norm.weight' in state else 'neither'}."
        )
    if pooling == "mean" and not shape["qkv_bias"]:
        raise ValueError("A mean-pooled (BEiT) classifier needs query/value biases; this ViT was trained without qkv bias.")
    head = state["head.weight"]
    num_labels = int(head.shape[0])
    encoder_config = ViTConfig(
        **shape,
        num_attention_heads=_heads(shape["hidden_size"], num_attention_heads, "encoder"),
        layer_norm_eps=layer_norm_eps,
    )
    config = classifier_config(encoder_config, pooling=pooling, num_labels=num_labels, id2label=id2label)
    model = BeitForImageClassification(config) if pooling == "mean" else ViTForImageClassification(config)
    base = "beit" if pooling == "mean" else "vit"
    out = _embeddings_to_hf(state, base)
    used = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias"}
    for i in range(shape["num_hidden_layers"]):
        out.update(timm_block_to_hf(state, f"blocks.{i}", f"{base}.layers.{i}", drop_key_bias=pooling == "mean", used=used))
    norm_source, norm_target = ("fc_norm", "beit.pooler.layernorm") if pooling == "mean" else ("norm", "vit.layernorm")
    for suffix in ("weight", "bias"):
        out[f"{norm_target}.{suffix}"] = state[f"{norm_source}.{suffix}"].clone()
        used.add(f"{norm_source}.{suffix}")
    out["classifier.weight"] = head.clone()
    out["classifier.bias"] = state["head.bias"].clone()
    _load_exactly(model, out, set(state), used)
    return model.eval()
