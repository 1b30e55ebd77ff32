"""Numerical equivalence of the reference-checkpoint conversions against timm, the source architecture.

The reference's ViTs are timm `VisionTransformer`s (its classifier subclass only adds global pooling
+ `fc_norm`, which timm ≥ 0.9 has built in) and its MAE is made of timm blocks; its Swin is the
original Swin layout, which timm's `SwinTransformer` reads through its own checkpoint filter. Each
test builds the timm network with perturbed weights (so that a swapped norm or a transposed
projection shows), converts its state dict in the reference's key layout, and compares outputs on
the same images.

timm needs torchvision, which does not install beside the CPU torch of the main environment; the
module skips without it. `benchmarks/verify_conversions.py` runs these comparisons in an
environment that has timm and prints the measured differences.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm", reason="timm (and torchvision) not installed: see benchmarks/verify_conversions.py")
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from timm.models.vision_transformer import Block, VisionTransformer  # noqa: E402

from mimir_hf.convert import mae_state_dict_to_model, swin_state_dict_to_model, vit_classifier_state_dict_to_model  # noqa: E402

TOLERANCE = 1e-4


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every parameter off its init (LayerNorms off 1/0, zero biases off 0) so no mapping error hides."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _images(size: int, n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def timm_vit(pooling: str, image_size: int = 32, patch_size: int = 4, width: int = 192, depth: int = 2) -> VisionTransformer:
    """The reference's `models_vit.VisionTransformer` (global_pool=True) or timm's token-pooled ViT."""
    kwargs = dict(global_pool="avg", fc_norm=True) if pooling == "mean" else dict(global_pool="token")
    model = VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=width,
        depth=depth,
        num_heads=3,
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=10,
        **kwargs,
    )
    _perturb(model, seed=0)
    return model.eval()


def compare_vit_classifier(pooling: str) -> float:
    source = timm_vit(pooling)
    state = source.state_dict()
    assert ("fc_norm.weight" in state) == (pooling == "mean") and ("norm.weight" in state) == (pooling == "cls")
    converted = vit_classifier_state_dict_to_model(state)
    images = _images(32)
    with torch.no_grad():
        return float((source(images) - converted(pixel_values=images).logits).abs().max())


class ReferenceMAE(nn.Module):
    """The reference's `MaskedAutoencoderViT` parameter layout, built from timm pieces (its forward is in `mae_forward`)."""

    def __init__(self, image_size: int = 32, patch_size: int = 4, width: int = 192, depth: int = 2, decoder_width: int = 128):
        super().__init__()
        encoder = VisionTransformer(
            img_size=image_size, patch_size=patch_size, embed_dim=width, depth=depth, num_heads=3, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0, global_pool="",
        )
        self.patch_embed, self.cls_token, self.pos_embed = encoder.patch_embed, encoder.cls_token, encoder.pos_embed
        self.blocks, self.norm = encoder.blocks, encoder.norm
        num_patches = (image_size // patch_size) ** 2
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_width))
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_width, 16, 4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6)) for _ in range(2)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_width, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_width, patch_size**2 * 3)

    def mae_forward(self, images: torch.Tensor, noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """MAE's forward (He et al. 2022): keep the lowest-noise patches, encode, fill with mask tokens, decode."""
        x = self.patch_embed(images) + self.pos_embed[:, 1:]
        n, length, dim = x.shape
        keep = int(length * (1 - mask_ratio))
        shuffle = noise.argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        x = x.gather(1, shuffle[:, :keep, None].expand(-1, -1, dim))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        latent = self.norm(x)
        y = self.decoder_embed(latent)
        tokens = torch.cat([y[:, 1:], self.mask_token.expand(n, length - keep, -1)], dim=1)
        tokens = tokens.gather(1, restore[:, :, None].expand(-1, -1, y.shape[-1]))
        y = torch.cat([y[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            y = block(y)
        return latent, self.decoder_pred(self.decoder_norm(y))[:, 1:]


def compare_mae(mask_ratio: float = 0.75) -> tuple[float, float]:
    source = ReferenceMAE()
    _perturb(source, seed=2)
    source.eval()
    converted = mae_state_dict_to_model(source.state_dict())
    converted.config.mask_ratio = mask_ratio
    images = _images(32)
    noise = torch.rand(images.shape[0], 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        latent, prediction = source.mae_forward(images, noise, mask_ratio)
        out = converted(pixel_values=images, noise=noise, output_hidden_states=False)
        hf_latent = converted.vit(pixel_values=images, noise=noise).last_hidden_state
    return float((latent - hf_latent).abs().max()), float((prediction - out.logits).abs().max())


def timm_swin(image_size: int = 112, window_size: int = 7) -> SwinTransformer:
    model = SwinTransformer(
        img_size=image_size, patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4),
        window_size=window_size, num_classes=10, norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )
    _perturb(model, seed=4)
    return model.eval()


def original_swin_layout(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ≥ 0.9 Swin keys → the original/ARES layout: merging at the end of the previous stage, head `head.*`."""
    out = {}
    for key, value in timm_state.items():
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        if key.startswith("head.fc."):
            parts = ["head", parts[-1]]
        out[".".join(parts)] = value
    return out


def compare_swin(layout: str, image_size: int = 112, window_size: int = 7) -> float:
    source = timm_swin(image_size, window_size)
    state = source.state_dict()
    if layout == "original":
        state = original_swin_layout(state)
        assert "head.weight" in state and "layers.0.downsample.reduction.weight" in state
    converted = swin_state_dict_to_model(state, image_size=image_size)
    images = _images(image_size, n=2)
    with torch.no_grad():
        return float((source(images) - converted(pixel_values=images).logits).abs().max())


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_vit_classifier_logits_match_timm(pooling):
    difference = compare_vit_classifier(pooling)
    print(f"vit {pooling}: max |Δlogit| = {difference:.2e}")
    assert difference < TOLERANCE


@pytest.mark.parametrize("mask_ratio", [0.0, 0.75])
def test_mae_latent_and_reconstruction_match_reference_forward(mask_ratio):
    latent, prediction = compare_mae(mask_ratio)
    print(f"mae mask {mask_ratio}: max |Δlatent| = {latent:.2e}, max |Δprediction| = {prediction:.2e}")
    assert latent < TOLERANCE and prediction < TOLERANCE


@pytest.mark.parametrize("layout", ["timm", "original"])
def test_swin_logits_match_timm(layout):
    difference = compare_swin(layout)
    print(f"swin {layout}: max |Δlogit| = {difference:.2e}")
    assert difference < TOLERANCE


def test_swin_large_window_logits_match_timm():
    """Swin-L's 14-px window at 224 px: the last two stages fall back to whole-map windows, without shift."""
    difference = compare_swin("original", image_size=224, window_size=14)
    print(f"swin window 14 @224: max |Δlogit| = {difference:.2e}")
    assert difference < TOLERANCE
