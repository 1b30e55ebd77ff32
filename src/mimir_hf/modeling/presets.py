"""The paper's architectures, by name, for the resolutions MIMIR was run at.

Encoders are the usual ViT-T/S/B/L (MLP ratio 4, LayerNorm eps 1e-6, qkv bias); every size
shares MIMIR's small decoder (128 wide, 2 layers, 16 heads). The patch size follows the
resolution so that the token count stays manageable: 2 for 32×32 (256 tokens, as in the paper),
4 for 64×64 (our choice for Tiny-ImageNet: again 256 tokens), 16 for 224×224.
"""

from __future__ import annotations

from typing import Any

from .configuration_mimir import MimirConfig

__all__ = ["ENCODER_SIZES", "DEFAULT_PATCH_SIZES", "DECODER", "encoder_kwargs", "mimir_config", "size_name"]

ENCODER_SIZES: dict[str, dict[str, int]] = {
    "vit-t": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3},
    "vit-s": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "vit-b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "vit-l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
}
DEFAULT_PATCH_SIZES: dict[int, int] = {32: 2, 64: 4, 224: 16}
DECODER: dict[str, int] = {
    "decoder_hidden_size": 128,
    "decoder_num_hidden_layers": 2,
    "decoder_num_attention_heads": 16,
    "decoder_intermediate_size": 512,
}


def size_name(hidden_size: int | None, num_hidden_layers: int | None, num_attention_heads: int | None) -> str | None:
    """"ViT-T" … "ViT-L" for an encoder of one of the paper's sizes, None for any other shape."""
    for name, shape in ENCODER_SIZES.items():
        if (shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"]) == (
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
        ):
            return "ViT-" + name.split("-")[1].upper()
    return None


def encoder_kwargs(size: str, image_size: int = 32, patch_size: int | None = None) -> dict[str, Any]:
    """ViT encoder hyper-parameters (shared by `ViTMAEConfig` and `ViTConfig`) for a named size."""
    key = size.lower().replace("_", "-")
    if key not in ENCODER_SIZES:
        raise ValueError(f"Unknown model size {size!r}; choose one of {sorted(ENCODER_SIZES)}.")
    if patch_size is None:
        if image_size not in DEFAULT_PATCH_SIZES:
            raise ValueError(
                f"No default patch size for {image_size}x{image_size} images; pass patch_size "
                f"(defaults exist for {sorted(DEFAULT_PATCH_SIZES)})."
            )
        patch_size = DEFAULT_PATCH_SIZES[image_size]
    if image_size % patch_size:
        raise ValueError(f"patch_size {patch_size} does not divide image_size {image_size}.")
    sizes = ENCODER_SIZES[key]
    return {
        **sizes,
        "intermediate_size": 4 * sizes["hidden_size"],
        "image_size": image_size,
        "patch_size": patch_size,
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
    }


def mimir_config(size: str = "vit-t", image_size: int = 32, patch_size: int | None = None, **overrides: Any) -> MimirConfig:
    """A `MimirConfig` for one of the paper's architectures, e.g. `mimir_config("vit-b", 224)`.

    Any `MimirConfig` argument can be overridden, including the encoder's (for the shrunken
    models the quickstart and the CPU-scale experiments use).
    """
    kwargs: dict[str, Any] = {**encoder_kwargs(size, image_size, patch_size), **DECODER}
    kwargs.update(overrides)
    return MimirConfig(**kwargs)
