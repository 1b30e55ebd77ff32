"""Resuming and best-model loading that survive transformers' checkpoint key conversion.

transformers 5.x writes checkpoints in the Hub's (legacy) key layout — for ViT-MAE and ViT that
is `vit.encoder.layer.N.attention.attention.query` rather than the modules' `vit.layers.N.attention.q_proj`
— and converts the names back in `from_pretrained`. `Trainer._load_from_checkpoint` and
`Trainer._load_best_model`, however, call a raw, non-strict `load_state_dict`: every transformer
layer is reported "missing" in a log line and silently keeps the weights it had, so a resumed
run trains on from freshly initialised layers (transformers issues #43701 / #48805, fix not
released as of 5.23). We rename the checkpoint's keys with transformers' own conversion mapping
and load the result strictly, so a mismatch is an error rather than a log line, and no second
model is built. The mapping functions are private (`conversion_mapping.get_model_conversion_mapping`,
`core_model_loading.rename_source_key`); tests/test_transformers_canaries.py fails loudly if they
change. A model whose checkpoints need tensor conversions (fused or split weights, none of ours)
goes through `from_pretrained` instead, which applies them.
"""

from __future__ import annotations

import os

import torch
from transformers import PreTrainedModel

from transformers.utils import logging

__all__ = ["ConvertedCheckpointMixin", "check_weights_readable", "converted_state_dict", "load_checkpoint_weights"]

logger = logging.get_logger(__name__)


def converted_state_dict(model: PreTrainedModel, checkpoint_dir: str) -> dict[str, torch.Tensor] | None:
    """`checkpoint_dir`'s safetensors weights under `model`'s live parameter names, or None when a
    plain renaming cannot do it (tensor conversions needed, or no safetensors file)."""
    import json

    from safetensors.torch import load_file
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key

    single = os.path.join(checkpoint_dir, "model.safetensors")
    index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            files = [os.path.join(checkpoint_dir, name) for name in sorted(set(json.load(handle)["weight_map"].values()))]
    else:
        return None
    transforms = get_model_conversion_mapping(model)
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    if converters:
        return None
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for key, tensor in load_file(file).items():
            # positional: the fourth parameter is `prefix` in transformers 5.9 and `base_model_prefix` later
            renamed, _ = rename_source_key(key, renamings, converters, model.base_model_prefix, expected)
            state[renamed] = tensor
    return state


def check_weights_readable(model_name_or_path: str | os.PathLike | None) -> None:
    """Raise a `ValueError` naming the file when a local checkpoint's `.safetensors` weights are truncated
    or damaged (an interrupted save or copy); loading would otherwise fail deep inside safetensors with a
    message that names no file. Hub ids and folders without safetensors files pass unchecked."""
    if model_name_or_path is None or not os.path.isdir(model_name_or_path):
        return
    from safetensors import SafetensorError, safe_open

    for name in sorted(os.listdir(model_name_or_path)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(model_name_or_path, name)
        try:
            with safe_open(path, framework="pt"):  # reads the header and checks it covers the whole file
                pass
        except SafetensorError as error:
            raise ValueError(
                f"{path} cannot be read ({error}): the file is truncated or damaged, e.g. by an interrupted save, copy "
                "or download. Save, copy or download it again."
            ) from None


@torch.no_grad()
def load_checkpoint_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load `checkpoint_dir`'s weights into `model` in place, applying transformers' key conversion."""
    state = converted_state_dict(model, checkpoint_dir)
    if state is None:  # tensor conversions: let from_pretrained apply them, then copy
        loaded = type(model).from_pretrained(checkpoint_dir, config=model.config)
        state = loaded.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"Checkpoint {checkpoint_dir} does not match the model: missing {missing[:5]}..., "
            f"unexpected {unexpected[:5]}..."
        )


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
