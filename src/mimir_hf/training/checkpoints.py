"""Resuming and best-model loading that survive transformers' checkpoint key conversion.

transformers 5.x writes checkpoints in the Hub's (legacy) key layout — for ViT-MAE and ViT that
is `vit.encoder.layer.N.attention.attention.query` rather than the modules' `vit.layers.N.attention.q_proj`
— and converts the names back in `from_pretrained`. `Trainer._load_from_checkpoint` and
`Trainer._load_best_model`, however, call a raw, non-strict `load_state_dict`: every transformer
layer is reported "missing" in a log line and silently keeps the weights it had, so a resumed
run trains on from freshly initialised layers (transformers issues #43701 / #48805, fix not
released as of 5.23). We load through `from_pretrained`, which applies the conversion, and copy
the result in strictly, so a mismatch is an error rather than a log line.
"""

from __future__ import annotations

import os

import torch
from transformers import PreTrainedModel

from transformers.utils import logging

__all__ = ["ConvertedCheckpointMixin", "load_checkpoint_weights"]

logger = logging.get_logger(__name__)


@torch.no_grad()
def load_checkpoint_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load `checkpoint_dir`'s weights into `model` in place, applying transformers' key conversion."""
    loaded = type(model).from_pretrained(checkpoint_dir, config=model.config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"Checkpoint {checkpoint_dir} does not match the model: missing {missing[:5]}..., "
            f"unexpected {unexpected[:5]}..."
        )
    del loaded


class ConvertedCheckpointMixin:
    """Put before `Trainer` in the bases; only the plain (non-FSDP, non-DeepSpeed, non-PEFT) path changes."""

    def _uses_stock_loading(self) -> bool:
        if getattr(self, "is_fsdp_enabled", False) or getattr(self, "is_deepspeed_enabled", False):
            return True
        return not isinstance(self.accelerator.unwrap_model(self.model), PreTrainedModel)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if self._uses_stock_loading():
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        logger.info("Loading model weights from %s (with key conversion).", resume_from_checkpoint)
        load_checkpoint_weights(target, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if self._uses_stock_loading() or best is None or not os.path.isdir(best):
            return super()._load_best_model()
        logger.info("Loading best model from %s (score: %s).", best, self.state.best_metric)
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), best)
