"""RandAugment (Cubuk et al. 2020) on PIL images, in the variant Singh et al. 2023 train ImageNet with.

torchvision cannot be installed beside the CPU torch build here and timm needs it, so the ops are
written with PIL's `ImageOps`/`ImageEnhance`. The policy is spelled the way timm (and so DeiT and
Singh et al.'s `parserr.py`) spells it, `rand-m9-mstd0.5-inc1`:

- `n` ops per image (default 2), each drawn uniformly *with* replacement from 15, each applied with
  probability 0.5;
- magnitude `m` on a 0-10 scale, redrawn per op as N(m, mstd²) and clipped to [0, mmax] (mmax 10);
- `inc1` selects the variants whose severity grows with the magnitude (posterize keeps fewer bits,
  solarize lowers its threshold, the enhancements move further from 1); `inc0` the original ones.

With f = magnitude / 10 the ops are: AutoContrast, Equalize, Invert (no magnitude); Rotate ±30f°;
ShearX/ShearY ±0.3f; TranslateX/TranslateY ±0.45f of the side; SolarizeAdd (+110f on pixels below
128); Posterize (keep 4 − ⌊4f⌋ bits; `inc0`: ⌊4f⌋); Solarize (invert pixels ≥ 256 − ⌊256f⌋; `inc0`:
≥ ⌊256f⌋); Color, Contrast, Brightness, Sharpness with factor 1 ± 0.9f, at least 0.1 (`inc0`:
0.1 + 1.8f). A "±" is a fair coin. Geometric ops resample bicubically and fill with black: timm fills
with the normalisation mean, and the reference's mean is 0 (its models take [0, 1] pixels, as ours do).

Random draws use torch's global generator, like the rest of the training transform, so
`torch.manual_seed` (and DataLoader worker seeding) makes them reproducible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["RAND_AUGMENT_OPS", "RandAugment", "parse_rand_augment"]

_MAX_LEVEL = 10.0
_RESAMPLE = Image.Resampling.BICUBIC
# Names of the ops; the severity variant (`increasing`) decides how Posterize, Solarize and the
# four enhancements read the magnitude.
RAND_AUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)


def _coin() -> bool:
    return bool(torch.rand(()) < 0.5)


def _signed(value: float) -> float:
    return -value if _coin() else value


def _affine(image: Image.Image, coefficients: tuple[float, ...], fill: tuple[int, ...]) -> Image.Image:
    # PIL maps each output pixel (x, y) to the input pixel (a x + b y + c, d x + e y + f)
    return image.transform(image.size, Image.Transform.AFFINE, coefficients, resample=_RESAMPLE, fillcolor=fill)


def _solarize_add(image: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    table = [min(255, i + add) if i < threshold else i for i in range(256)]
    return image.point(table * len(image.getbands()))


def _enhance_factor(f: float, increasing: bool) -> float:
    return max(0.1, 1.0 + _signed(0.9 * f)) if increasing else 0.1 + 1.8 * f


def _posterize(image: Image.Image, bits: int) -> Image.Image:
    return image if bits >= 8 else ImageOps.posterize(image, bits)


_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Brightness": ImageEnhance.Brightness,
    "Sharpness": ImageEnhance.Sharpness,
}


def _apply(name: str, image: Image.Image, f: float, increasing: bool, fill: tuple[int, ...]) -> Image.Image:
    """Op `name` at level f = magnitude / 10 (the sign of a signed op is drawn here)."""
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Invert":
        return ImageOps.invert(image)
    if name == "Rotate":
        return image.rotate(_signed(30.0 * f), resample=_RESAMPLE, fillcolor=fill)
    if name == "Posterize":
        return _posterize(image, 4 - int(4 * f) if increasing else int(4 * f))
    if name == "Solarize":
        return ImageOps.solarize(image, 256 - int(256 * f) if increasing else int(256 * f))
    if name == "SolarizeAdd":
        return _solarize_add(image, int(110 * f))
    if name in _ENHANCERS:
        return _ENHANCERS[name](image).enhance(_enhance_factor(f, increasing))
    if name == "ShearX":
        return _affine(image, (1, _signed(0.3 * f), 0, 0, 1, 0), fill)
    if name == "ShearY":
        return _affine(image, (1, 0, 0, _signed(0.3 * f), 1, 0), fill)
    if name == "TranslateX":
        return _affine(image, (1, 0, _signed(0.45 * f) * image.size[0], 0, 1, 0), fill)
    if name == "TranslateY":
        return _affine(image, (1, 0, 0, 0, 1, _signed(0.45 * f) * image.size[1]), fill)
    raise ValueError(f"Unknown RandAugment op {name!r}; the ops are {', '.join(RAND_AUGMENT_OPS)}.")


@dataclass(frozen=True)
class RandAugment:
    """`num_ops` random ops per image at `magnitude` (0-10); picklable, so DataLoader workers can run it."""

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = _MAX_LEVEL
    increasing: bool = True
    op_probability: float = 0.5
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if not 0 <= self.magnitude <= self.magnitude_max:
            raise ValueError(f"RandAugment magnitude must lie in [0, {self.magnitude_max:g}]; got {self.magnitude:g}.")
        if self.num_ops < 1:
            raise ValueError(f"RandAugment needs at least one op per image; got n={self.num_ops}.")
        if self.magnitude_std < 0:
            raise ValueError(f"RandAugment mstd must be >= 0; got {self.magnitude_std:g}.")
        if not 0 <= self.op_probability <= 1:
            raise ValueError(f"RandAugment op probability must lie in [0, 1]; got {self.op_probability:g}.")

    @classmethod
    def from_string(cls, spec: str) -> "RandAugment":
        """Read timm's notation, e.g. `rand-m9-mstd0.5-inc1` (see `parse_rand_augment`)."""
        return cls(**parse_rand_augment(spec))

    def __call__(self, image: Image.Image) -> Image.Image:
        if image.mode != "RGB":
            raise ValueError(f"RandAugment expects an RGB image; got mode {image.mode!r}.")
        for index in torch.randint(len(RAND_AUGMENT_OPS), (self.num_ops,)).tolist():
            if self.op_probability < 1 and float(torch.rand(())) >= self.op_probability:
                continue
            image = _apply(RAND_AUGMENT_OPS[index], image, self._draw_magnitude() / _MAX_LEVEL, self.increasing, self.fill)
        return image

    def apply_op(self, name: str, image: Image.Image, magnitude: float | None = None) -> Image.Image:
        """One op at a fixed magnitude (default: this policy's), for inspection and tests."""
        level = self.magnitude if magnitude is None else magnitude
        return _apply(name, image, min(max(level, 0.0), self.magnitude_max) / _MAX_LEVEL, self.increasing, self.fill)

    def _draw_magnitude(self) -> float:
        magnitude = self.magnitude
        if math.isinf(self.magnitude_std):
            magnitude = float(torch.empty(()).uniform_(0.0, magnitude))
        elif self.magnitude_std > 0:
            magnitude = magnitude + self.magnitude_std * float(torch.randn(()))
        return min(max(magnitude, 0.0), self.magnitude_max)


_SECTION = re.compile(r"^([a-z]+)(\d.*)$")


def parse_rand_augment(spec: str) -> dict:
    """`rand-m9-mstd0.5-inc1` -> RandAugment's keyword arguments; a clear error on anything else.

    Sections after `rand`, in any order: `m<magnitude>`, `n<ops per image>`, `mstd<std of the
    magnitude noise>` (above 100: uniform in [0, m], timm's convention), `mmax<upper bound>`,
    `inc<0|1>`. Unset: m 10, n 2, mstd 0, mmax 10, inc 0 (timm's defaults for the string).
    """
    parts = spec.strip().lower().split("-")
    if parts[0] != "rand":
        raise ValueError(
            f"rand_augment must be a RandAugment policy such as 'rand-m9-mstd0.5-inc1' (timm's notation); got {spec!r}."
        )
    values: dict = {"magnitude": _MAX_LEVEL, "num_ops": 2, "magnitude_std": 0.0, "magnitude_max": _MAX_LEVEL, "increasing": False}
    for section in parts[1:]:
        match = _SECTION.match(section)
        key, raw = match.groups() if match else (section, "")
        try:
            if key == "m":
                values["magnitude"] = float(raw)
            elif key == "n":
                values["num_ops"] = int(raw)
            elif key == "mstd":
                std = float(raw)
                values["magnitude_std"] = math.inf if std > 100 else std
            elif key == "mmax":
                values["magnitude_max"] = float(raw)
            elif key == "inc":
                if raw not in ("0", "1"):
                    raise ValueError
                values["increasing"] = raw == "1"
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(
                f"Unknown section {section!r} in rand_augment={spec!r}; the sections are m<magnitude>, n<ops>, "
                "mstd<std>, mmax<bound> and inc<0|1> (timm's op weights `w` are not supported)."
            ) from None
        except ValueError:
            raise ValueError(f"Cannot read section {section!r} of rand_augment={spec!r} (e.g. m9, n2, mstd0.5, inc1).") from None
    return values
