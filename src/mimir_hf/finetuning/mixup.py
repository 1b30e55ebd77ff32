"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a training batch, with soft targets.

Singh et al. 2023 mix every ImageNet batch with timm's `Mixup(mixup_alpha=0.8, cutmix_alpha=1.0,
prob=1.0, switch_prob=0.5, mode='batch', label_smoothing=0.1)`; the definitions used here:

- per batch, with probability `probability`, draw λ ~ Beta(α, α): α = `cutmix_alpha` with
  probability `switch_probability` (CutMix), else `mixup_alpha` (Mixup); when only one α is
  positive that one is used. Each image is paired with its mirror in the batch (x_i with x_{B-1-i});
- Mixup: x̃_i = λ x_i + (1 − λ) x_{B-1-i};
- CutMix: rows cy ± ⌊⌊H √(1−λ)⌋ / 2⌋ and columns cx ± ⌊⌊W √(1−λ)⌋ / 2⌋ around a uniform pixel
  (cy, cx), clipped to the image, are pasted from the mirror image; λ then becomes the share of
  the image left, 1 − box area / (H W) (the "λ correction" timm applies by default);
- soft targets: ỹ_i = λ s(y_i) + (1 − λ) s(y_{B-1-i}), with s the label-smoothed one-hot
  (1 − ε + ε/K on the class, ε/K elsewhere), so a batch that is not mixed still trains on
  smoothed targets, and the targets always sum to 1.

The draws come from a host-side NumPy generator the caller passes; nothing reads the device, and
the box is sliced with Python integers, so mixing adds no host-device synchronisation. An odd batch
is allowed (timm refuses it): its middle image is paired with itself and stays as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BatchMixing", "MixParameters", "cutmix_box", "mix_images", "smoothed_one_hot", "soft_targets"]


@dataclass(frozen=True)
class MixParameters:
    """How one batch is mixed: its own image's weight `lam` (after CutMix's correction) and the box, if CutMix."""

    lam: float = 1.0
    box: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right), exclusive ends, of the pasted region."""


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[tuple[int, int, int, int], float]:
    """A CutMix box for λ (clipped to the image) and the corrected λ = 1 − its area / (H W)."""
    ratio = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * ratio) // 2, int(width * ratio) // 2
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = min(max(cy - half_h, 0), height), min(max(cy + half_h, 0), height)
    left, right = min(max(cx - half_w, 0), width), min(max(cx + half_w, 0), width)
    area = (bottom - top) * (right - left)
    return (top, bottom, left, right), 1.0 - area / float(height * width)


def mix_images(pixel_values: torch.Tensor, params: MixParameters) -> torch.Tensor:
    """The mixed batch (a new tensor): each image blended with, or pasted into from, its mirror in the batch."""
    if params.lam >= 1.0:
        return pixel_values
    mirror = pixel_values.flip(0)
    if params.box is None:
        return pixel_values * params.lam + mirror * (1.0 - params.lam)
    top, bottom, left, right = params.box
    mixed = pixel_values.clone()
    mixed[..., top:bottom, left:right] = mirror[..., top:bottom, left:right]
    return mixed


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(1 − ε + ε/K) on the label, ε/K elsewhere; built by scatter, which (unlike `F.one_hot`) never checks on the host."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)


def soft_targets(labels: torch.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> torch.Tensor:
    """λ s(y_i) + (1 − λ) s(y_{B-1-i}): the class probabilities a mixed batch is trained towards."""
    own = smoothed_one_hot(labels, num_classes, smoothing)
    if lam >= 1.0:
        return own
    return own * lam + own.flip(0) * (1.0 - lam)


@dataclass(frozen=True)
class BatchMixing:
    """Mixup / CutMix settings; `mix` turns (images, integer labels) into (mixed images, soft targets)."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    probability: float = 1.0
    switch_probability: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0; got {self.mixup_alpha}, {self.cutmix_alpha}.")
        for name in ("probability", "switch_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]; got {getattr(self, name)}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1); got {self.label_smoothing}.")

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def sample(self, rng: np.random.Generator, height: int, width: int) -> MixParameters:
        """Draw one batch's mixing: none (λ = 1), Mixup (λ, no box) or CutMix (corrected λ, box)."""
        if not self.enabled or rng.random() >= self.probability:
            return MixParameters()
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = rng.random() < self.switch_probability
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        if not use_cutmix:
            return MixParameters(lam)
        box, lam = cutmix_box(height, width, lam, rng)
        return MixParameters(lam, box)

    def mix(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, num_classes: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, MixParameters]:
        """(mixed images, soft targets summing to 1, the parameters drawn) for one batch."""
        params = self.sample(rng, pixel_values.shape[-2], pixel_values.shape[-1])
        return mix_images(pixel_values, params), soft_targets(labels, num_classes, params.lam, self.label_smoothing), params
