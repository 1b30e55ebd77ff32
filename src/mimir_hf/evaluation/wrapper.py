"""A logits-only view of a transformers image classifier, for attack code.

Attack libraries (AutoAttack, our PGD core) want `f(x) -> logits` with `x` in pixel space
[0, 1]. A transformers model returns a `ModelOutput` and may expect mean/std-normalised input
(its image processor says so). `LogitsModel` hides both: it takes [0, 1] pixels, applies the
normalisation the image processor declares (MIMIR checkpoints declare none), and returns the
plain logits tensor. It can also hand back the encoder's last hidden states from the same
forward pass, which the adaptive attacks (PGD-MI, PGD-feature) need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..validation import check_pixel_values

__all__ = ["LogitsModel", "normalization_from_processor"]


def normalization_from_processor(image_processor: Any) -> tuple[list[float], list[float]] | None:
    """The (mean, std) an image processor applies after rescaling to [0, 1], or None if it does not normalise."""
    if image_processor is None or not getattr(image_processor, "do_normalize", False):
        return None
    mean = getattr(image_processor, "image_mean", None)
    std = getattr(image_processor, "image_std", None)
    if mean is None or std is None:
        return None
    mean = [float(v) for v in (mean if isinstance(mean, Sequence) else [mean])]
    std = [float(v) for v in (std if isinstance(std, Sequence) else [std])]
    if all(m == 0.0 for m in mean) and all(s == 1.0 for s in std):
        return None
    return mean, std


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for key in ("last_hidden_state", "logits"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"Cannot find a tensor in a {type(output).__name__} output.")


class LogitsModel(nn.Module):
    """`x ∈ [0, 1]^{B×C×H×W}  ↦  logits (B, num_labels)` around any image classifier.

    Args:
        model: a transformers image classifier (anything returning an object with `.logits`)
            or a plain module returning a logits tensor.
        mean, std: per-channel normalisation to apply inside the wrapper (None: none).
        num_channels: checked on every call when given.
        validate: check every input batch is in [0, 1] (cheap; off for the attack inner loops).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_channels: int | None = None,
        validate: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_channels = num_channels
        self.validate = validate
        if (mean is None) != (std is None):
            raise ValueError("Give both `mean` and `std`, or neither.")
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        else:
            self.mean = None
            self.std = None

    @property
    def normalization(self) -> str:
        """How the wrapper maps [0, 1] pixels to the model input, for the report."""
        if self.mean is None:
            return "none"
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std} (applied inside the model wrapper; epsilon is in [0, 1] pixel units)"

    @property
    def num_labels(self) -> int | None:
        config = getattr(self.model, "config", None)
        return getattr(config, "num_labels", None)

    def _model_input(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.validate:
            check_pixel_values(pixel_values, self.num_channels)
        if self.mean is not None:
            pixel_values = (pixel_values - self.mean.to(pixel_values.dtype)) / self.std.to(pixel_values.dtype)
        return pixel_values

    def _call(self, pixel_values: torch.Tensor) -> torch.Tensor:
        inputs = self._model_input(pixel_values)
        if hasattr(self.model, "config") and hasattr(self.model, "base_model"):
            output = self.model(pixel_values=inputs)
        else:
            output = self.model(inputs)
        return _first_tensor(output) if not hasattr(output, "logits") else output.logits

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._call(pixel_values)

    def feature_module(self) -> nn.Module:
        """The encoder whose output the adaptive attacks use (`model.base_model` for transformers models)."""
        base = getattr(self.model, "base_model", None)
        if isinstance(base, nn.Module) and base is not self.model:
            return base
        features = getattr(self.model, "features", None)
        if isinstance(features, nn.Module):
            return features
        raise TypeError(
            f"{type(self.model).__name__} exposes no encoder (`base_model` or `features` submodule); the adaptive "
            "attacks pgd-mi and pgd-feature need one."
        )

    def logits_and_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the encoder's last hidden states (after its final norm), from one forward pass."""
        module = self.feature_module()
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(_first_tensor(output))

        handle = module.register_forward_hook(hook)
        try:
            logits = self._call(pixel_values)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"The encoder {type(module).__name__} did not run during the forward pass.")
        return logits, captured[-1]
