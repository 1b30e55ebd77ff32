"""Reading the authors' `.pth` files safely and recognising which network they hold.

The files come from a file-share, so they are untrusted: they are read with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers but never runs pickled
code. The reference's training scripts store `args` (an `argparse.Namespace`) next to the
weights, and timm's checkpoint saver may store numpy scalars; those few data-only classes are
allow-listed, anything else is refused with the name of the class that would have been imported.

Wrappers differ between the reference's scripts (MAE-style `{"model": ...}`, timm/ARES
`{"state_dict": ..., "state_dict_ema": ...}`, `{"model_state_dict": ...}`, a bare state dict) and
key prefixes (`module.` from DDP, `base_model.` from the APGD-AT wrapper of Singh et al.);
`unwrap_state_dict` peels them off and records what it did.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "ARCHITECTURES",
    "EMA_CHOICES",
    "ReferenceCheckpoint",
    "UnrecognisedCheckpointError",
    "UnsupportedArchitectureError",
    "describe_keys",
    "detect_architecture",
    "load_reference_checkpoint",
    "unwrap_state_dict",
]

ARCHITECTURES = ("mae", "vit", "swin")
"""Layouts that convert: a timm-style MAE (pretraining), a timm VisionTransformer classifier, a Swin classifier."""
EMA_CHOICES = ("auto", "ema", "raw")
"""Which copy of the weights to convert when a file holds both: `auto` takes the EMA copy (the one the
reference validates and selects on when it trains with EMA), `ema` requires it, `raw` ignores it."""

_WEIGHT_KEYS = ("model", "state_dict", "model_state_dict", "module", "net")
_EMA_KEYS = ("model_ema", "state_dict_ema", "ema", "ema_state_dict")
_PREFIXES = ("module.", "base_model.", "_orig_mod.")


class UnrecognisedCheckpointError(ValueError):
    """The file's keys match no layout we can convert."""


class UnsupportedArchitectureError(ValueError):
    """The file holds a network transformers has no class for (CaiT, ConViT, a conv-stem ViT)."""


@dataclass
class ReferenceCheckpoint:
    """A state dict read from an authors' file, with where it came from."""

    state_dict: dict[str, torch.Tensor]
    path: str
    sha256: str
    wrapper: str | None
    """The top-level key the weights were under (`model`, `state_dict_ema`, ...), None for a bare state dict."""
    used_ema: bool
    stripped_prefixes: list[str] = field(default_factory=list)
    other_entries: list[str] = field(default_factory=list)
    """Top-level entries that are not weights (`optimizer`, `epoch`, `args`, ...), kept for the record."""
    epoch: int | None = None


def _safe_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace]
    try:  # numpy scalars and dtypes, as timm's checkpoint saver writes metrics (data only, no code)
        import numpy as np

        allowed += [np.dtype, np.ndarray]
        multiarray = getattr(np, "_core", getattr(np, "core", None)).multiarray
        allowed += [multiarray.scalar, multiarray._reconstruct]
        allowed += [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    except Exception:  # pragma: no cover - numpy layout differs; Namespace alone still works
        pass
    return allowed


def _looks_like_torch_save(path: str) -> bool:
    """torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle (protocol >= 2)."""
    import zipfile

    with open(path, "rb") as handle:
        head = handle.read(2)
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_keys(state: Mapping[str, Any], limit: int = 12) -> str:
    """A short listing of a mapping's keys for error messages."""
    keys = list(state)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"{len(keys)} keys: {shown}" + (", ..." if len(keys) > limit else "")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(torch.is_tensor(v) for v in value.values())


def unwrap_state_dict(obj: Any, ema: str = "auto") -> tuple[dict[str, torch.Tensor], str | None, bool, list[str], list[str]]:
    """The tensor state dict inside a loaded checkpoint: (state, wrapper key, used EMA, prefixes stripped, other entries)."""
    if ema not in EMA_CHOICES:
        raise ValueError(f"ema must be one of {EMA_CHOICES}, got {ema!r}.")
    if not isinstance(obj, Mapping):
        raise UnrecognisedCheckpointError(
            f"The file holds a {type(obj).__name__}, not a state dict or a dict of them; save `model.state_dict()`."
        )
    wrapper: str | None = None
    used_ema = False
    other: list[str] = []
    if _is_state_dict(obj):
        state = dict(obj)
    else:
        ema_key = next((k for k in _EMA_KEYS if _is_state_dict(obj.get(k))), None)
        raw_key = next((k for k in _WEIGHT_KEYS if _is_state_dict(obj.get(k))), None)
        if ema == "ema" and ema_key is None:
            raise UnrecognisedCheckpointError(
                f"ema='ema' but the file has no EMA copy (looked for {_EMA_KEYS}); it has {describe_keys(obj)}."
            )
        if ema == "raw" and raw_key is None and ema_key is not None:
            raise UnrecognisedCheckpointError(
                f"ema='raw' but the file holds only an EMA copy ({ema_key!r}); use ema='auto' or 'ema'."
            )
        wrapper = ema_key if ema_key is not None and ema != "raw" else raw_key
        if wrapper is None:
            raise UnrecognisedCheckpointError(
                f"No state dict found in the file: expected a bare state dict or one under {_WEIGHT_KEYS + _EMA_KEYS}; "
                f"the file has {describe_keys(obj)}."
            )
        used_ema = wrapper in _EMA_KEYS
        state = dict(obj[wrapper])
        other = [str(k) for k in obj if k != wrapper]
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, wrapper, used_ema, stripped, other


def load_reference_checkpoint(path: str | os.PathLike, ema: str = "auto") -> ReferenceCheckpoint:
    """Read an authors' `.pth` with `weights_only=True` and unwrap its state dict (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    if not _looks_like_torch_save(path):
        raise UnrecognisedCheckpointError(
            f"{path!r} is not a PyTorch checkpoint: a file written by torch.save (a zip archive, or a pickle in the "
            "legacy format) was expected, such as the authors' checkpoint-*.pth."
        )
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", message)
        if found is None:
            raise UnrecognisedCheckpointError(
                f"{path!r} is not a readable PyTorch checkpoint (truncated, or another kind of archive). torch said: "
                f"{message.splitlines()[0] if message else type(error).__name__}"
            ) from error
        raise UnrecognisedCheckpointError(
            f"Refusing to read {path!r}: beside its weights it stores an object of class {found.group(1)!r}, which "
            "only running pickled code could rebuild, and converting never runs code from a file "
            "(torch.load(weights_only=True)). Ask its publisher for a weights-only file (a state dict, or "
            "model.safetensors)."
        ) from error
    state, wrapper, used_ema, stripped, other = unwrap_state_dict(obj, ema)
    epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    return ReferenceCheckpoint(
        state_dict=state,
        path=path,
        sha256=_sha256(path),
        wrapper=wrapper,
        used_ema=used_ema,
        stripped_prefixes=stripped,
        other_entries=other,
        epoch=int(epoch) if isinstance(epoch, int) else None,
    )


def detect_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """`mae`, `vit` or `swin` from the key names; the architectures without a transformers class are refused."""
    keys = set(state)
    if any(k.startswith("blocks_token_only.") for k in keys) or any(".gamma_1" in k for k in keys):
        raise UnsupportedArchitectureError(
            "This is a CaiT checkpoint (class-attention blocks `blocks_token_only.*`, layer-scale `gamma_1`). "
            "transformers has no CaiT class, so it cannot become a stock checkpoint; use the reference code."
        )
    if any(k.endswith("attn.gating_param") or ".attn.pos_proj." in k for k in keys):
        raise UnsupportedArchitectureError(
            "This is a ConViT checkpoint (gated positional self-attention `attn.gating_param`/`attn.pos_proj`). "
            "transformers has no ConViT class, so it cannot become a stock checkpoint; use the reference code."
        )
    if any(k.startswith("layers.0.blocks.0.attn.relative_position_bias_table") for k in keys):
        if any(k.startswith(("decoder", "mask_token")) for k in keys):
            raise UnsupportedArchitectureError(
                "This is an MAE-pretrained Swin (a Swin encoder with `decoder*`/`mask_token`, the reference's "
                "'green' Swin). transformers has no masked-autoencoder Swin class, so it cannot become a stock "
                "pretraining checkpoint; its finetuned Swin classifiers convert (kind='swin')."
            )
        return "swin"
    if "patch_embed.proj.weight" not in keys and any(k.startswith(("patch_embed.proj.0.", "stem.")) for k in keys):
        raise UnsupportedArchitectureError(
            "This ViT has a convolutional stem (ConvStem / CvSt: `patch_embed.proj.<i>.*`), which no transformers "
            "ViT class has; it cannot become a stock checkpoint."
        )
    if "blocks.0.attn.qkv.weight" in keys and "patch_embed.proj.weight" in keys:
        if "decoder_embed.weight" in keys:
            return "mae"
        if "head.weight" in keys:
            return "vit"
        raise UnrecognisedCheckpointError(
            "A ViT encoder without a decoder (`decoder_embed.*`) or a head (`head.weight`): neither an MAE "
            f"pretraining checkpoint nor a classifier. The file has {describe_keys(state)}."
        )
    raise UnrecognisedCheckpointError(
        "Unrecognised layout: expected an MAE (`patch_embed.proj`, `blocks.N.attn.qkv`, `decoder_*`), a timm ViT "
        f"classifier (`blocks.N.*`, `head`) or a Swin (`layers.N.blocks.M.*`). The file has {describe_keys(state)}."
    )
