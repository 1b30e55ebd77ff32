"""Augmentation and evaluation preprocessing in pixel space [0, 1].

Nothing here normalises: MIMIR's attack budgets (ε = 8/255, ...) are defined on [0, 1] pixels,
so the model sees exactly what the attacker perturbs. torchvision cannot be installed beside
the CPU torch build here, so the few transforms MIMIR uses are written on tensors:

* up to 64 px (CIFAR-10, Tiny-ImageNet): random crop from the image zero-padded by 4 px + flip;
* above (ImageNet at 224): random resized crop (area 0.2–1, aspect 3/4–4/3, bicubic with
  antialiasing) + flip.

Optionally (Singh et al.'s "heavy" ImageNet augmentation, in timm's order) RandAugment on the
cropped, flipped image (`rand_augment.py`, PIL ops on uint8) and then random erasing of the [0, 1]
tensor (`random_erasing.py`). Mixup / CutMix mix whole batches, so they live in the trainer.

Evaluation is "resize the shorter side to image_size / crop_fraction, centre-crop image_size"
(crop_fraction 1.0 up to 64 px, so native CIFAR/Tiny-ImageNet images pass untouched; 0.875 above,
the usual 256 -> 224). It resizes with PIL's bicubic filter on uint8 images and rescales by 1/255
in float64, because that is exactly what transformers' stock `BitImageProcessor` (PIL backend)
does; `make_image_processor` saves that processor with every checkpoint, so `pipeline(...)`
reproduces this function bit for bit. Random draws use torch's global generator, so
`torch.manual_seed` (and DataLoader worker seeding) makes augmentation reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .rand_augment import RandAugment
from .random_erasing import RandomErasing

__all__ = [
    "ImageInput",
    "TrainTransform",
    "EvalTransform",
    "train_transform",
    "eval_transform",
    "default_crop_fraction",
    "eval_resize_size",
    "to_rgb_array",
    "to_rgb_pil",
    "to_tensor",
    "SMALL_IMAGE_MAX_SIZE",
]

ImageInput = Union[Image.Image, np.ndarray, torch.Tensor]
# Largest image_size that uses CIFAR-style padded crops rather than random resized crops.
SMALL_IMAGE_MAX_SIZE = 64
_LARGE_CROP_FRACTION = 0.875


def to_rgb_pil(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white — the rule transformers' processors apply."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """uint8 H x W x 3 from a PIL image or uint8 H x W (x 1/3/4) array; grey is repeated, alpha composited on white."""
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb_pil(image))
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(
            f"Expected a PIL image or a uint8 H x W x C array in 0..255, got dtype {array.dtype}. "
            "Convert float images in [0, 1] with `(x * 255).round().astype(np.uint8)`."
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an H x W x C image with 1, 3 or 4 channels (channels last); got {array.shape}.")
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        return np.asarray(to_rgb_pil(Image.fromarray(array, mode="RGBA")))
    return array


def to_tensor(image: ImageInput) -> torch.Tensor:
    """float32 3 x H x W in [0, 1]; the 1/255 is applied in float64 like transformers' rescale."""
    array = to_rgb_array(image).astype(np.float64) * (1 / 255)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32))


def default_crop_fraction(image_size: int) -> float:
    """1.0 (no crop) for small native-resolution data, 0.875 for ImageNet-sized inputs."""
    return 1.0 if image_size <= SMALL_IMAGE_MAX_SIZE else _LARGE_CROP_FRACTION


def eval_resize_size(image_size: int, crop_fraction: float | None = None) -> int:
    """Shorter-side length before the centre crop (224 at 0.875 -> 256)."""
    fraction = default_crop_fraction(image_size) if crop_fraction is None else crop_fraction
    if not 0 < fraction <= 1:
        raise ValueError(f"crop_fraction must lie in (0, 1]; got {fraction}.")
    return int(round(image_size / fraction))


def _resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    antialias = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    out = F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=antialias)[0]
    return out.clamp_(0.0, 1.0)  # bicubic overshoots at edges


def _to_pil(x: torch.Tensor) -> Image.Image:
    """[0, 1] float 3 x H x W -> uint8 RGB, rounding to the nearest level (to_tensor's exact inverse on uint8 data)."""
    array = (x.permute(1, 2, 0).numpy().astype(np.float64) * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


@dataclass
class TrainTransform:
    """Random crop + horizontal flip; a class rather than a closure so DataLoader workers can pickle it."""

    image_size: int
    kind: Literal["auto", "pad_crop", "resized_crop"] = "auto"
    padding: int = 4
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rand_augment: RandAugment | None = None
    random_erasing: RandomErasing | None = None

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive; got {self.image_size}.")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"The crop's area scale must satisfy 0 < min <= max <= 1; got {self.scale}.")
        if self.kind == "auto":
            self.kind = "pad_crop" if self.image_size <= SMALL_IMAGE_MAX_SIZE else "resized_crop"
        if self.kind not in ("pad_crop", "resized_crop"):
            raise ValueError(f"kind must be 'auto', 'pad_crop' or 'resized_crop'; got {self.kind!r}.")

    def __call__(self, image: ImageInput) -> torch.Tensor:
        x = to_tensor(image)
        x = self._pad_crop(x) if self.kind == "pad_crop" else self._resized_crop(x)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        if self.rand_augment is not None:
            x = to_tensor(self.rand_augment(_to_pil(x)))
        if self.random_erasing is not None:
            x = self.random_erasing(x)
        return x.contiguous()

    def _pad_crop(self, x: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        height, width = x.shape[-2:]
        if height < size or width < size:
            raise ValueError(
                f"An image is {height}x{width}, smaller than the {size}x{size} crop. Use `image_size` <= "
                f"{min(height, width)} (a model built for that size), or upscale the data beforehand."
            )
        if min(height, width) != size:  # larger images: bring the shorter side to `size` first, as eval does
            short, long = (height, width) if height <= width else (width, height)
            new_long = int(size * long / short)
            x = _resize_tensor(x, (size, new_long) if height <= width else (new_long, size))
            height, width = x.shape[-2:]
        p = self.padding
        if p:
            x = F.pad(x, (p, p, p, p), value=0.0)
        top = int(torch.randint(0, height + 2 * p - size + 1, ()))
        left = int(torch.randint(0, width + 2 * p - size + 1, ()))
        return x[:, top : top + size, left : left + size]

    def _resized_crop(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        top, left, h, w = self._crop_box(height, width)
        return _resize_tensor(x[:, top : top + h, left : left + w], (self.image_size, self.image_size))

    def _crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * float(torch.empty(()).uniform_(self.scale[0], self.scale[1]))
            aspect = math.exp(float(torch.empty(()).uniform_(log_ratio[0], log_ratio[1])))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        # Fallback (extreme aspect ratios): the largest centred box within the allowed ratios.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w


@dataclass
class EvalTransform:
    """Deterministic resize + centre crop, identical to the processor from `make_image_processor`."""

    image_size: int
    crop_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive; got {self.image_size}.")
        self.resize_size = eval_resize_size(self.image_size, self.crop_fraction)

    def __call__(self, image: ImageInput) -> torch.Tensor:
        pil = to_rgb_pil(image) if isinstance(image, Image.Image) else Image.fromarray(to_rgb_array(image))
        width, height = pil.size
        short, long = (height, width) if height <= width else (width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_height, new_width = (new_short, new_long) if height <= width else (new_long, new_short)
        if (new_height, new_width) != (height, width):
            pil = pil.resize((new_width, new_height), resample=Image.Resampling.BICUBIC)
        array = np.asarray(pil)
        size = self.image_size
        top, left = (new_height - size) // 2, (new_width - size) // 2
        return to_tensor(array[top : top + size, left : left + size])


def train_transform(
    image_size: int,
    *,
    kind: Literal["auto", "pad_crop", "resized_crop"] = "auto",
    padding: int = 4,
    scale: tuple[float, float] = (0.2, 1.0),
    flip: bool = True,
    rand_augment: str | RandAugment | None = None,
    random_erasing: float | RandomErasing | None = None,
) -> TrainTransform:
    """The MIMIR training augmentation for `image_size` (see the module docstring for the rule).

    `rand_augment` takes a policy string such as `rand-m9-mstd0.5-inc1`; `random_erasing` a
    probability (per-pixel noise, one box) or a configured `RandomErasing`. Both default to off.
    """
    if isinstance(rand_augment, str):
        rand_augment = RandAugment.from_string(rand_augment)
    if isinstance(random_erasing, (int, float)):
        random_erasing = RandomErasing(float(random_erasing)) if random_erasing > 0 else None
    return TrainTransform(
        image_size, kind=kind, padding=padding, scale=scale, flip=flip, rand_augment=rand_augment, random_erasing=random_erasing
    )


def eval_transform(image_size: int, crop_fraction: float | None = None) -> EvalTransform:
    """The evaluation preprocessing for `image_size`, reproducible by the saved image processor."""
    return EvalTransform(image_size, crop_fraction)
