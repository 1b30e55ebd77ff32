"""`MimirTrainer`: a `Trainer` whose training step attacks the batch before learning from it.

Everything else — distributed training, mixed precision, accumulation, checkpointing and
resuming, logging integrations — is the stock `Trainer`'s; we only override what MIMIR changes:
the loss (attack, then clean-target reconstruction + MI penalty), which parameters get weight
decay, and logging of the loss parts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers import Trainer

from ..modeling import MimirForPreTraining
from ..training import ConvertedCheckpointMixin
from ..training.sampling import MixedSamplingMixin
from .arguments import MimirTrainingArguments
from .attack import craft_adversarial_pixels

__all__ = ["MimirTrainer"]

# Metrics summed (counts) rather than averaged over a logging interval.
_SUMMED_METRICS = {"mi_dropped_batches"}


class MimirTrainer(MixedSamplingMixin, ConvertedCheckpointMixin, Trainer):
    """Stage 1 of MIMIR. Pass a `MimirForPreTraining` and `MimirTrainingArguments`.

    The method hyper-parameters in `args` are written into `model.config` so that they are saved
    with every checkpoint, and the model's forward reads them from there.
    """

    args: MimirTrainingArguments

    def __init__(self, model: MimirForPreTraining | None = None, args: MimirTrainingArguments | None = None, **kwargs: Any):
        if args is None:
            args = MimirTrainingArguments(output_dir="mimir_output")
        if not isinstance(args, MimirTrainingArguments):
            raise TypeError(f"MimirTrainer needs MimirTrainingArguments, got {type(args).__name__}.")
        if not isinstance(model, MimirForPreTraining):
            raise TypeError(
                "MimirTrainer trains a MimirForPreTraining (build one with `mimir_hf.mimir_config(...)` or load a "
                f"ViT-MAE checkpoint with `MimirForPreTraining.from_pretrained`); got {type(model).__name__}."
            )
        for name, value in args.method_config().items():
            setattr(model.config, name, value)
        super().__init__(model=model, args=args, **kwargs)
        # MimirForPreTraining.forward takes **kwargs, which would make the Trainer believe the model
        # normalises the loss for gradient accumulation itself; it does not.
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ------------------------------------------------------------------ loss
    def _attack_model(self, model: nn.Module) -> MimirForPreTraining:
        # FSDP shards parameters, so only the wrapped module can run a forward; elsewhere the
        # unwrapped one avoids arming DDP's gradient hooks for the input-only backward.
        if self.accelerator.distributed_type == DistributedType.FSDP:
            return model
        return self.accelerator.unwrap_model(model)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        pixel_values = inputs["pixel_values"]
        args = self.args
        noise = None
        if args.attack_shares_mask and args.attack_steps > 0:
            num_patches = self.accelerator.unwrap_model(model).vit.embeddings.patch_embeddings.num_patches
            noise = torch.rand(pixel_values.shape[0], num_patches, device=pixel_values.device)
        adversarial = craft_adversarial_pixels(
            self._attack_model(model),
            pixel_values,
            epsilon=args.attack_epsilon,
            step_size=args.attack_step_size,
            steps=args.attack_steps,
            target=args.attack_target,
            noise=noise,
            freeze_parameters=self.accelerator.distributed_type != DistributedType.FSDP,
        )
        outputs = model(pixel_values=pixel_values, adversarial_pixel_values=adversarial, noise=noise)

        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        metrics["reconstruction_loss"].append(outputs.reconstruction_loss.detach().float().item())
        metrics["mi_loss"].append(outputs.mi_loss.detach().float().item())
        metrics["mi_dropped_batches"].append(float(outputs.mi_dropped.item()))
        if args.log_attack_gain and mode == "train":
            with torch.no_grad():
                clean = model(pixel_values=pixel_values, noise=noise)
            metrics["attack_gain"].append((outputs.reconstruction_loss - clean.reconstruction_loss).float().item())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation loss: clean reconstruction (+ MI penalty) with a random mask; no attack (it needs gradients)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(pixel_values=inputs["pixel_values"])
        metrics = self._metrics["eval"]
        metrics["reconstruction_loss"].append(outputs.reconstruction_loss.float().item())
        metrics["mi_loss"].append(outputs.mi_loss.float().item())
        return outputs.loss.detach(), None, None

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss parts collected since the last log, reduced over processes."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        collected = self._metrics[mode]
        if collected:
            names = sorted(collected)
            local = torch.tensor(
                [sum(collected[n]) if n in _SUMMED_METRICS else sum(collected[n]) / max(len(collected[n]), 1) for n in names],
                dtype=torch.float64,
                device=self.args.device,
            )
            if self.accelerator.num_processes > 1:
                total = self.accelerator.reduce(local, reduction="sum")
                averaged = [
                    t if n in _SUMMED_METRICS else t / self.accelerator.num_processes for n, t in zip(names, total.tolist())
                ]
            else:
                averaged = local.tolist()
            prefix = "eval_" if mode == "eval" else ""
            logs.update({f"{prefix}{name}": value for name, value in zip(names, averaged)})
            collected.clear()
        super().log(logs, start_time)
