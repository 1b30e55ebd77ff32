"""An exponential moving average of the weights, kept by a `TrainerCallback`, saved as the model.

Singh et al. 2023's ImageNet recipe (which the MIMIR authors' APGD-AT rows follow) averages every
weight after each optimizer step, θ̄ ← d·θ̄ + (1 − d)·θ with d = 0.9999, validates the average and
keeps it as the final model. The callback does the same around a stock `Trainer`:

- after every optimizer step it updates a float32 shadow of the model's state dict (parameters and
  floating buffers; integer buffers are copied);
- evaluations during training run on the averaged weights (`evaluate_ema`), and the raw weights are
  put back before anything is saved, so checkpoints stay resumable: each `checkpoint-N/` gets the
  shadow as `ema.safetensors` next to the raw weights, and a resumed run picks it up;
- when training ends the average is copied into the model (the best checkpoint's average when
  `load_best_model_at_end` chose one), so `trainer.save_model()` writes the averaged weights.

Replicated data parallelism keeps identical weights on every rank, so every rank keeps the same
average; sharded training (FSDP, DeepSpeed) would need the shards gathered and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

__all__ = ["EMA_FILE", "WeightEMA", "WeightEMACallback"]

logger = logging.get_logger(__name__)

EMA_FILE = "ema.safetensors"


class WeightEMA:
    """θ̄ ← d·θ̄ + (1 − d)·θ over a module's state dict, in float32 (on `device`, default the weights' own)."""

    def __init__(self, module: torch.nn.Module, decay: float, device: str | torch.device | None = None):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay} (Singh et al. use 0.9999).")
        self.decay = float(decay)
        self.device = None if device is None else torch.device(device)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.reset(module)

    def _place(self, value: torch.Tensor) -> torch.Tensor:
        value = value.detach()
        value = value.float() if value.is_floating_point() else value
        return value.to(self.device, copy=True) if self.device is not None else value.clone()

    @torch.no_grad()
    def reset(self, module: torch.nn.Module) -> None:
        """Start the average at the module's current weights."""
        self.shadow = {name: self._place(value) for name, value in module.state_dict().items()}
        self.num_updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        averaged, targets = [], []
        for name, value in module.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                averaged.append(shadow)
                targets.append(value.detach().to(shadow.device, torch.float32))
            else:
                shadow.copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        """Write the average into `module` (cast to each tensor's dtype and device)."""
        state = module.state_dict()
        for name, value in state.items():
            value.copy_(self.shadow[name].to(value.device, value.dtype))

    def save(self, path: str | os.PathLike) -> None:
        tensors = {name: value.detach().cpu().contiguous() for name, value in self.shadow.items()}
        save_file(tensors, os.fspath(path), metadata={"decay": str(self.decay), "num_updates": str(self.num_updates)})

    def load(self, path: str | os.PathLike) -> None:
        loaded = load_file(os.fspath(path))
        if loaded.keys() != self.shadow.keys():
            missing, extra = sorted(self.shadow.keys() - loaded.keys()), sorted(loaded.keys() - self.shadow.keys())
            raise ValueError(f"{path} does not match the model (missing {missing[:5]}, unexpected {extra[:5]}).")
        for name, value in loaded.items():
            self.shadow[name].copy_(value.to(self.shadow[name].device))


class WeightEMACallback(TrainerCallback):
    """Keeps a `WeightEMA` of the trained model; see the module docstring for what is evaluated and saved."""

    def __init__(self, decay: float, device: str | None = None, evaluate_ema: bool = True):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}.")
        self.decay = decay
        self.device = device
        self.evaluate_ema = evaluate_ema
        self.ema: WeightEMA | None = None
        self._raw: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ helpers
    def _swap_in_average(self, model: torch.nn.Module) -> None:
        if self.ema is None or self._raw is not None:
            return
        self._raw = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self.ema.copy_to(model)

    @torch.no_grad()
    def _restore_raw(self, model: torch.nn.Module) -> None:
        if self._raw is None:
            return
        for name, value in model.state_dict().items():
            value.copy_(self._raw[name])
        self._raw = None

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        if getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
            raise ValueError("Weight EMA keeps a full copy of the weights and does not support FSDP or DeepSpeed sharding.")
        self.ema = WeightEMA(model, self.decay, self.device)
        if state.global_step > 0:  # resumed: continue the average saved with that checkpoint
            path = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / EMA_FILE
            if path.is_file():
                self.ema.load(path)
                logger.info("Resumed the weight EMA from %s.", path)
            else:
                logger.warning(
                    "Resuming at step %d without %s: the weight EMA restarts from the current weights.", state.global_step, path
                )

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.ema is not None:
            self.ema.update(model)

    def _before_evaluation(self, control: TrainerControl, model) -> None:
        if self.evaluate_ema and control.should_evaluate:
            self._swap_in_average(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._before_evaluation(control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._before_evaluation(control, model)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self._restore_raw(model)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._restore_raw(model)  # (a save without evaluation never swapped)
        if self.ema is not None and args.should_save:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                self.ema.save(folder / EMA_FILE)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.ema is None:
            return
        self._restore_raw(model)
        best = state.best_model_checkpoint
        if args.load_best_model_at_end and best is not None and (Path(best) / EMA_FILE).is_file():
            self.ema.load(Path(best) / EMA_FILE)
            logger.info("Keeping the weight EMA of the best checkpoint %s.", best)
        self.ema.copy_to(model)
        logger.info("The model now holds the weight EMA (decay %s, %d updates).", self.decay, self.ema.num_updates)
