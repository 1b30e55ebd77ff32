"""A picture of what a MIMIR model learned: clean | adversarial | masked input | reconstruction.

Loss curves do not show whether an MAE reconstructs digits or mush; one grid does. With
`norm_pix_loss` the decoder predicts per-patch *normalised* pixels, so predictions are mapped
back with each clean patch's own mean and standard deviation (the standard MAE visualisation),
and visible patches are shown as the encoder saw them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..attacks import preserve_mode
from ..modeling import MimirForPreTraining
from .attack import craft_adversarial_pixels

__all__ = ["reconstruction_panels", "save_reconstruction_grid"]

COLUMNS = ("clean", "adversarial", "masked input", "reconstruction")


@torch.no_grad()
def _reconstruct(model: MimirForPreTraining, clean: torch.Tensor, adversarial: torch.Tensor, noise: torch.Tensor):
    out = model(pixel_values=clean, adversarial_pixel_values=adversarial, noise=noise)
    prediction = out.logits
    if model.config.norm_pix_loss:
        patches = model.patchify(clean)
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        prediction = prediction * std + mean
    mask = out.mask.unsqueeze(-1)
    visible = model.patchify(adversarial)
    pasted = model.unpatchify(visible * (1 - mask) + prediction * mask)
    grey = torch.full_like(visible, 0.5)
    masked = model.unpatchify(visible * (1 - mask) + grey * mask)
    return masked.clamp(0, 1), pasted.clamp(0, 1)


def reconstruction_panels(
    model: MimirForPreTraining,
    pixel_values: torch.Tensor,
    *,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The four image batches of the grid, using the model's configured pretraining attack."""
    config = model.config
    generator = torch.Generator(device=pixel_values.device).manual_seed(seed)
    with preserve_mode(model, "eval"):  # restores every submodule's own flag afterwards
        adversarial = craft_adversarial_pixels(
            model,
            pixel_values,
            epsilon=config.attack_epsilon,
            step_size=config.attack_step_size,
            steps=config.attack_steps,
            target=config.attack_target,
            generator=generator,
        )
        num_patches = model.vit.embeddings.patch_embeddings.num_patches
        noise = torch.rand(pixel_values.shape[0], num_patches, generator=generator, device=pixel_values.device)
        masked, reconstruction = _reconstruct(model, pixel_values, adversarial, noise)
    return dict(zip(COLUMNS, (pixel_values, adversarial, masked, reconstruction)))


def save_reconstruction_grid(
    model: MimirForPreTraining,
    pixel_values: torch.Tensor,
    path: str | Path,
    *,
    scale: int = 4,
    seed: int = 0,
) -> Path:
    """Write a PNG with one row per image and the columns clean | adversarial | masked input | reconstruction."""
    panels = reconstruction_panels(model, pixel_values, seed=seed)
    images = torch.stack(list(panels.values()), dim=1)  # (rows, 4, C, H, W)
    rows, cols, _, height, width = images.shape
    cell_h, cell_w, pad, header = height * scale, width * scale, 4, 16
    canvas = Image.new("RGB", (cols * (cell_w + pad) + pad, header + rows * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(COLUMNS):
        draw.text((pad + c * (cell_w + pad), 2), title, fill="black")
    for r in range(rows):
        for c in range(cols):
            array = (images[r, c].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            tile = Image.fromarray(array).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (pad + c * (cell_w + pad), header + pad + r * (cell_h + pad)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
