"""Random erasing (Zhong et al. 2020) of a training image tensor, as timm applies it after ToTensor.

With probability `probability` an image gets `count` rectangles (1, or uniform in 1..`max_count`),
each of area U(0.02, 1/3) × image area / count and aspect ratio log-uniform in [0.3, 1/0.3]; a box
that does not fit is redrawn up to 10 times, then skipped. Its pixels are filled with

- `pixel`: per-pixel N(0, 1) noise (Singh et al.: `remode pixel`, `recount 1`, `reprob 0.25`),
- `rand`: one N(0, 1) colour per channel,
- `const`: 0.

timm erases the *normalised* tensor. The reference normalises with mean 0 / std 1, so its noise lands
on [0, 1] pixels as it does here, but goes past 0 and 1; its APGD then clamps the attack's start to
[0, 1], so the adversarial images it trains on see clamp(noise ± ε). Our batches must hold [0, 1]
pixels (the collator checks, and the attack's budget is defined there), so the noise is clamped to
[0, 1] when it is drawn: identical to the reference after the attack's clamp except for noise within
ε of 0 or 1, and for Mixup, which here blends the clamped noise.

Random draws use torch's global generator, like the rest of the training transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["RANDOM_ERASING_MODES", "RandomErasing"]

RANDOM_ERASING_MODES = ("pixel", "rand", "const")


@dataclass(frozen=True)
class RandomErasing:
    """Erase rectangles of a C x H x W image in [0, 1]; returns a new tensor, picklable for DataLoader workers."""

    probability: float = 0.25
    mode: str = "pixel"
    max_count: int = 1
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ValueError(f"random_erasing must be a probability in [0, 1]; got {self.probability:g}.")
        if self.mode not in RANDOM_ERASING_MODES:
            raise ValueError(f"random_erasing_mode must be one of {RANDOM_ERASING_MODES}; got {self.mode!r}.")
        if self.max_count < 1:
            raise ValueError(f"random_erasing_count must be >= 1; got {self.max_count}.")
        if not 0 < self.min_area <= self.max_area <= 1:
            raise ValueError(f"Need 0 < min_area <= max_area <= 1; got {self.min_area:g}, {self.max_area:g}.")
        if not 0 < self.min_aspect <= 1:
            raise ValueError(f"min_aspect must lie in (0, 1]; got {self.min_aspect:g}.")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 3:
            raise ValueError(f"RandomErasing takes one C x H x W image; got shape {tuple(image.shape)}.")
        if self.probability <= 0 or float(torch.rand(())) >= self.probability:
            return image
        image = image.clone()
        channels, height, width = image.shape
        count = self.max_count if self.max_count == 1 else int(torch.randint(1, self.max_count + 1, ()))
        log_aspect = (math.log(self.min_aspect), -math.log(self.min_aspect))
        for _ in range(count):
            for _attempt in range(10):
                area = float(torch.empty(()).uniform_(self.min_area, self.max_area)) * height * width / count
                aspect = math.exp(float(torch.empty(()).uniform_(*log_aspect)))
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if h < height and w < width:
                    top = int(torch.randint(0, height - h + 1, ()))
                    left = int(torch.randint(0, width - w + 1, ()))
                    image[:, top : top + h, left : left + w] = self._fill(channels, h, w, image.dtype)
                    break
        return image

    def _fill(self, channels: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        if self.mode == "pixel":
            return torch.randn(channels, h, w).clamp_(0.0, 1.0).to(dtype)
        if self.mode == "rand":
            return torch.randn(channels, 1, 1).clamp_(0.0, 1.0).to(dtype)
        return torch.zeros(channels, 1, 1, dtype=dtype)
