"""`MimirTrainer`: a `Trainer` whose training step attacks the batch before learning from it.

Everything else — distributed training, mixed precision, accumulation, checkpointing and
resuming, logging integrations — is the stock `Trainer`'s; we only override what MIMIR changes:
the loss (attack, then clean-target reconstruction + MI penalty), which parameters get weight
decay, and logging of the loss parts.

A training step never waits for the device: batches are range-checked once in the collator
(`CheckedCollator`), the attack and the training forward skip that check, the MI penalty flags
a failed batch on the device, and the loss parts are summed into device tensors that only
`log()` reads back.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers import Trainer
from transformers.utils import logging

from ..modeling import MimirForPreTraining
from ..training import CheckedCollator, ConvertedCheckpointMixin, MicroBatchMeanLossMixin, refuse_trainer_push
from ..training.progress import log_friendly_progress
from ..training.sample_seeds import SeededSamplesMixin
from ..training.sampling import MixedSamplingMixin
from ..training.streaming import StreamingMixin
from .arguments import MimirTrainingArguments
from .attack import craft_adversarial_pixels

__all__ = ["MimirTrainer"]

logger = logging.get_logger(__name__)

# Metrics summed (counts) rather than averaged over a logging interval.
_SUMMED_METRICS = {"mi_dropped_batches"}


class MimirTrainer(StreamingMixin, SeededSamplesMixin, MicroBatchMeanLossMixin, MixedSamplingMixin, ConvertedCheckpointMixin, Trainer):
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
        refuse_trainer_push(args)
        super().__init__(model=model, args=args, **kwargs)
        logger.info(args.learning_rate_rule())
        log_friendly_progress(self)
        self.data_collator = CheckedCollator(self.data_collator, num_channels=model.config.num_channels)
        # name -> [running sum on the device, number of values]; read (synchronised) only in log()
        self._metrics: dict[str, dict[str, list]] = {"train": {}, "eval": {}}

    def _record(self, mode: str, name: str, value: torch.Tensor) -> None:
        entry = self._metrics[mode].get(name)
        value = value.detach().float()
        if entry is None:
            self._metrics[mode][name] = [value.clone(), 1]
        else:
            entry[0] += value
            entry[1] += 1

    # ------------------------------------------------------------------ loss
    def _attack_model(self, model: nn.Module) -> nn.Module:
        # The attack calls this module's forward. FSDP shards parameters, so only the wrapped
        # module's forward gathers them; elsewhere the unwrapped one avoids arming DDP's gradient
        # hooks for the input-only backward. Either way Accelerate's autocast, which wraps the
        # inner module's forward, applies: the attack runs in the run's precision.
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
            check_inputs=False,
        )
        target = adversarial if args.training_target == "adversarial" else None
        outputs = model(
            pixel_values=pixel_values,
            adversarial_pixel_values=adversarial,
            noise=noise,
            reconstruction_target=target,
            check_inputs=False,
        )

        mode = "train" if model.training else "eval"
        self._record(mode, "reconstruction_loss", outputs.reconstruction_loss)
        self._record(mode, "mi_loss", outputs.mi_loss)
        self._record(mode, "mi_dropped_batches", outputs.mi_dropped)
        if args.log_attack_gain and mode == "train":
            with torch.no_grad():
                clean = model(pixel_values=pixel_values, noise=noise, check_inputs=False)
            self._record(mode, "attack_gain", outputs.reconstruction_loss - clean.reconstruction_loss)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation loss: clean reconstruction (+ MI penalty) with a random mask; no attack (it needs gradients)."""
        inputs = self._prepare_inputs(inputs)  # private Trainer API, canary-tested
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(pixel_values=inputs["pixel_values"], check_inputs=False)
        self._record("eval", "reconstruction_loss", outputs.reconstruction_loss)
        self._record("eval", "mi_loss", outputs.mi_loss)
        return outputs.loss.detach(), None, None

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss parts collected since the last log, reduced over processes."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        collected = self._metrics[mode]
        if collected:
            names = sorted(collected)
            local = torch.stack(
                [collected[n][0] if n in _SUMMED_METRICS else collected[n][0] / collected[n][1] for n in names]
            ).to(device=self.args.device, dtype=torch.float64 if self.args.device.type != "mps" else torch.float32)
            if self.accelerator.num_processes > 1:
                total = self.accelerator.reduce(local, reduction="sum")
                averaged = [
                    t if n in _SUMMED_METRICS else t / self.accelerator.num_processes for n, t in zip(names, total.tolist())
                ]
            else:
                averaged = local.tolist()
            prefix = "eval_" if mode == "eval" else ""
            logs.update({f"{prefix}{name}": value for name, value in zip(names, averaged)})
            dropped = logs.get(f"{prefix}mi_dropped_batches", 0)
            if dropped:
                logger.warning(
                    "The mutual-information penalty was dropped (non-finite or singular estimate, replaced by 0) "
                    "on %d batch(es) since the last log.",
                    int(dropped),
                )
            collected.clear()
        super().log(logs, start_time)
