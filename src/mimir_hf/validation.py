"""Checks on what users hand us, so that a wrong input fails loudly instead of giving a number.

Every attack budget in MIMIR is expressed in pixel space [0, 1] (ε = 8/255 means eight grey
levels). A tensor of 0-255 values or a mean/std-normalised tensor would still "work" with every
model here, but the budget would silently mean something else; that is why these checks exist.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from fractions import Fraction

import torch

__all__ = [
    "Budget",
    "check_budget",
    "check_device",
    "check_image_size",
    "check_pixel_values",
    "check_threat_model_budget",
    "check_training_length",
    "parse_budget",
    "parse_budget_fields",
]

# bf16 rounds 1.0 + small noise; allow a hair of slack so that autocast outputs pass.
_RANGE_TOLERANCE = 1e-4


def check_pixel_values(
    pixel_values: torch.Tensor,
    num_channels: int | None = None,
    name: str = "pixel_values",
    check_range: bool = True,
) -> None:
    """Raise a `ValueError`/`TypeError` that says what to do if `pixel_values` is not a float image batch in [0, 1].

    Args:
        pixel_values: tensor expected to be `(batch, channels, height, width)` in [0, 1].
        num_channels: the channel count the model was built for, if known.
        name: the argument name to quote in the error.
        check_range: also check the values (NaN, [0, 1]); this reads two numbers back from the
            tensor's device, a host synchronisation on a GPU, so hot loops check once per batch.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"`{name}` has integer dtype {pixel_values.dtype}. MIMIR works in pixel space [0, 1]: convert "
            "uint8 images with `images.float() / 255` (or use the image processor saved with the checkpoint, "
            "which rescales by 1/255 and does not normalise)."
        )
    if pixel_values.ndim != 4:
        raise ValueError(
            f"`{name}` must have shape (batch, channels, height, width); got shape {tuple(pixel_values.shape)}."
        )
    if num_channels is not None and pixel_values.shape[1] != num_channels:
        hint = (
            " Grayscale images need converting to RGB (repeat the channel) and RGBA images need the alpha dropped."
            if num_channels == 3
            else ""
        )
        raise ValueError(
            f"`{name}` has {pixel_values.shape[1]} channels but the model expects {num_channels} "
            f"(shape (batch, channels, height, width) was {tuple(pixel_values.shape)}).{hint}"
        )
    if pixel_values.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(pixel_values.shape)}).")
    if not check_range:
        return
    with torch.no_grad():
        low = pixel_values.detach().amin().item()
        high = pixel_values.detach().amax().item()
    if low != low or high != high:  # NaN
        raise ValueError(f"`{name}` contains NaN.")
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        if low < -_RANGE_TOLERANCE:
            cause = "It looks mean/std-normalised: undo the normalisation (MIMIR never normalises inputs)."
        elif high > 2:
            cause = "It looks like 0-255 images: divide by 255."
        else:
            cause = "Clip or rescale the images into [0, 1]."
        raise ValueError(
            f"`{name}` must lie in [0, 1] (pixel space, where the attack budget ε is defined); "
            f"got values in [{low:.4g}, {high:.4g}]. {cause}"
        )


def check_image_size(
    height: int,
    width: int,
    image_size: int | tuple[int, int] | list[int],
    interpolate_pos_encoding: bool | None,
    name: str = "pixel_values",
) -> None:
    """Fail early, with a remedy, when an image does not match the resolution the model was built for."""
    expected = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    if not interpolate_pos_encoding and (height, width) != expected:
        raise ValueError(
            f"`{name}` is {height}x{width} but the model was built for {expected[0]}x{expected[1]}. Resize the "
            "images (the data transforms in `mimir_hf.data` do this), or pass `interpolate_pos_encoding=True` "
            "to interpolate the position embeddings."
        )


def check_budget(value: float | None, name: str = "epsilon", norm: str = "Linf") -> None:
    """Raise a `ValueError` unless `value` is a budget in [0, 1] pixel units (an L2 radius may exceed 1).

    The one check every budget goes through (attacks, both stages' arguments, the evaluation's
    parser): a 0-255 value such as 8 would otherwise cover the whole image.
    """
    if value is None:
        return
    if value != value or value < 0:  # NaN or negative
        raise ValueError(f"{name} must be >= 0 (an {norm} radius in [0, 1] pixel units, e.g. 8/255), got {value!r}.")
    if norm == "Linf" and value > 1:
        raise ValueError(
            f"{name}={value!r} is larger than the whole [0, 1] pixel range: budgets are in [0, 1] pixel units "
            "(write 8/255 = 0.0314), not 0-255 grey levels."
        )


# The largest L∞ budget this project measures: the evaluation's own sanity check (accuracy ~0 at 64/255).
_LARGEST_LINF_THREAT = 64 / 255


def check_threat_model_budget(value: float, name: str = "--epsilon", norm: str = "Linf") -> None:
    """Refuse an L∞ threat-model budget above 64/255 given on the command line.

    `--epsilon 0.5` passes `check_budget` (it lies in [0, 1]) but lets every pixel move by half the
    range: surely 0.5/255 or an L2 radius was meant. The attacks themselves take any budget up to 1
    (the large-ε sanity sweeps); only the budget a run is about goes through this check.
    """
    check_budget(value, name.lstrip("-"), norm)
    if norm == "Linf" and value > _LARGEST_LINF_THREAT + 1e-12:
        raise ValueError(
            f"{name} {value:g} is {value * 255:g}/255 under L∞: every pixel may move by {value:.0%} of its range, "
            "more than any threat model (the paper's is 8/255; the largest this project measures is 64/255, a "
            f"sanity check). If you meant {value:g} grey levels, write {value:g}/255; for an L2 radius, add --norm L2."
        )


def check_device(device: str | None) -> None:
    """Raise a `ValueError` that says what to do when `device` is not one torch has here (None: the default)."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a torch device; use cpu, cuda, cuda:1, mps ...") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(
                f"device={device!r} but torch sees no CUDA GPU here (torch {torch.__version__}, {build}). Leave the "
                "device unset to use a GPU when there is one, or pass --device cpu."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s).")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here; pass --device cpu.")


def check_training_length(max_steps: int, num_train_epochs: float) -> None:
    """Raise a `ValueError` for a training length transformers would read otherwise: it takes any
    `max_steps` <= 0 as "unset" and trains the full `num_train_epochs` (so `--max_steps -5` ran a whole run)."""
    if max_steps == 0 or max_steps < -1:
        raise ValueError(
            f"max_steps={max_steps}: give a positive number of optimiser steps, or leave it unset (-1) to train "
            f"num_train_epochs ({num_train_epochs:g}) epochs."
        )
    if max_steps == -1 and not num_train_epochs > 0:
        raise ValueError(f"num_train_epochs={num_train_epochs!r} must be > 0 (or give max_steps).")


def _budget_number(value: float | int | str, name: str) -> float:
    """A number given as a float or as text: `"0.0314"`, `"8/255"`, `"0.5/255"` (as `format_epsilon` writes half grey levels)."""
    if not isinstance(value, str):
        return float(value)
    numerator, slash, denominator = value.strip().partition("/")
    try:
        return float(Fraction(numerator.strip())) / (float(Fraction(denominator.strip())) if slash else 1.0)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name}={value!r} is not a number or a fraction such as '8/255'.") from None


def parse_budget(value: float | int | str, name: str = "epsilon", norm: str = "Linf") -> float:
    """Read a budget given as a float in [0, 1] units or as a string like ``"8/255"`` (an L2 radius may exceed 1)."""
    number = _budget_number(value, name)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    check_budget(number, name, norm)
    return number


class Budget(float):
    """The type of the training arguments' attack budgets: a float that YAML and the command line may write `8/255`.

    `HfArgumentParser` converts a field's text (from the command line, and from a YAML config, whose
    values become the parser's defaults) with the field's type, so a `float` field refuses `8/255`.
    This type only reads the number; the range is checked, with the field's name, and the value
    turned back into a plain `float` (what a run records) by `parse_budget_fields` in the
    arguments' `__post_init__`.
    """

    def __new__(cls, value: float | int | str = 0.0) -> "Budget":
        return super().__new__(cls, _budget_number(value, "budget"))


def parse_budget_fields(arguments: object, norm: str = "Linf") -> None:
    """Replace every `Budget` field of a dataclass instance by its value as a checked plain float (None stays None).

    The one place the training arguments read their budgets: a field typed `Budget` (or
    `Budget | None`) accepts `8/255` and `0.0314` alike, from Python, YAML or the command line.
    """
    hints = typing.get_type_hints(type(arguments))
    for field in dataclasses.fields(arguments):
        hint = hints.get(field.name)
        if hint is Budget or Budget in typing.get_args(hint):
            value = getattr(arguments, field.name)
            if value is not None:
                setattr(arguments, field.name, parse_budget(value, field.name, norm))
