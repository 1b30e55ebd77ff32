"""`AdversarialTrainer`: stage 2 of MIMIR as a `transformers.Trainer`.

What it changes in the stock Trainer:

- `compute_loss` crafts the adversarial batch with the shared PGD core (`mimir_hf.attacks.pgd`),
  through the unwrapped model, with input gradients only, the model in eval mode during the
  attack (`attack_model_mode`), then computes the method's loss (PGD-AT, TRADES, MART or plain
  cross-entropy) in train mode. Label smoothing uses the stock `label_smoothing_factor`.
- with `mixup_alpha`/`cutmix_alpha` (Singh et al.'s ImageNet recipe) the batch is mixed first
  (`mixup.py`): the attack starts from the mixed images and maximises the soft-target
  cross-entropy against the mixed, label-smoothed targets, and the model is trained on that same
  loss at the attack's output, as in their training loop. λ and the CutMix box are drawn on the
  host from a NumPy generator seeded by (seed, process, optimizer step, micro-batch): no device
  read-back, reproducible, and resumed runs draw what an uninterrupted run would have drawn.
- the loss is a per-micro-batch mean and the Trainer divides it by the accumulation steps
  (`MicroBatchMeanLossMixin`, shared with the pretraining trainer).
- `create_optimizer` builds layer-wise-lr-decay parameter groups (`optim.py`).
- clean and adversarial training accuracies are counted on the device in `compute_loss` and read
  back only in `log()` (under Mixup/CutMix against the dominant class of each soft target, its
  argmax, as Singh et al.'s APGD counts them); batches are checked (pixels in [0, 1], labels in
  range) once in the collator (`CheckedCollator`), so a training step never waits for the device.
- fp16 is refused: the attack's input gradient is not loss-scaled (use bf16).
- evaluation reports `eval_accuracy` and `eval_robust_accuracy` (PGD-k under `torch.enable_grad`,
  seeded), so `metric_for_best_model="eval_robust_accuracy"` selects the most robust checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType
from torch import nn
from transformers import Trainer
from transformers.utils import logging

from ..attacks import apgd, cross_entropy_objective, kl_objective, pgd, preserve_mode
from ..training import (
    CheckedCollator,
    ConvertedCheckpointMixin,
    MicroBatchMeanLossMixin,
    check_batch_labels,
    refuse_fp16_attacks,
    refuse_trainer_push,
)
from ..training.ema import WeightEMACallback
from ..training.progress import log_friendly_progress
from ..training.sample_seeds import SeededSamplesMixin
from ..training.sampling import MixedSamplingMixin
from ..training.streaming import StreamingMixin
from .arguments import AdversarialTrainingArguments
from .drop_path import add_drop_path
from .losses import mart_loss, pgd_at_loss, plain_loss, soft_target_cross_entropy, trades_loss
from .mixup import BatchMixing
from .optim import param_groups_layer_decay

__all__ = ["AdversarialTrainer"]

logger = logging.get_logger(__name__)


class AdversarialTrainer(StreamingMixin, SeededSamplesMixin, MicroBatchMeanLossMixin, MixedSamplingMixin, ConvertedCheckpointMixin, Trainer):
    """A `Trainer` for adversarial finetuning of an image classifier in pixel space [0, 1].

    The batches must hold `pixel_values` (B, 3, H, W) in [0, 1] (never mean/std normalised) and
    integer `labels`. The model is any classifier whose forward takes `pixel_values` and returns
    `.logits`; in MIMIR it is the stock classifier built by `mae_to_classifier` (a mean-pooled
    `BeitForImageClassification` by default).
    """

    def __init__(self, model: nn.Module | None = None, args: AdversarialTrainingArguments | None = None, **kwargs: Any):
        if args is None:
            args = AdversarialTrainingArguments(output_dir="adversarial_trainer_output")
        if not isinstance(args, AdversarialTrainingArguments):
            raise TypeError(
                f"AdversarialTrainer needs AdversarialTrainingArguments, got {type(args).__name__}; the attack and "
                "layer-decay settings live there."
            )
        if args.adversarial_method != "none" or args.eval_attack_steps > 0:
            refuse_fp16_attacks(args, "adversarial training")
        refuse_trainer_push(args)
        super().__init__(model=model, args=args, **kwargs)
        log_friendly_progress(self)
        config = getattr(self.model, "config", None)
        self.data_collator = CheckedCollator(
            self.data_collator,
            num_channels=getattr(config, "num_channels", None),
            num_labels=getattr(config, "num_labels", None),
        )
        logger.info(args.learning_rate_rule())
        self._drop_path_handles = self._install_drop_path(self.model, args.drop_path_rate)
        self._train_counts: torch.Tensor | None = None  # on the device: clean correct, adversarial correct, samples
        self._has_clean_count = False
        self._has_adversarial_count = False
        self._eval_records: dict[str, list[torch.Tensor]] | None = None
        self._eval_generator: torch.Generator | None = None
        self._batch_mixing, self._num_labels = self._build_batch_mixing(args, config)
        self._mix_position = (-1, -1)  # (optimizer step, micro-batch within it) of the last mixed batch
        if args.ema_decay > 0:
            self.add_callback(WeightEMACallback(args.ema_decay, device=args.ema_device, evaluate_ema=args.ema_evaluate))

    @staticmethod
    def _install_drop_path(model: nn.Module | None, rate: float) -> list:
        """Hooks for a model without drop path of its own; a BEiT classifier must already carry `rate`.

        The mean-pooled classifier (`BeitForImageClassification`) builds its drop path from its
        config, so its rate is fixed when the model is built; a different training value would
        otherwise be silently ignored.
        """
        if model is None:
            return []
        built_in = getattr(getattr(model, "config", None), "drop_path_rate", None)
        if built_in is None:
            return add_drop_path(model, rate)
        if abs(float(built_in) - rate) > 1e-12:
            raise ValueError(
                f"The model applies drop path itself with config.drop_path_rate={built_in}, but the training "
                f"arguments ask for drop_path_rate={rate}. Build the classifier with the rate you want "
                f"(`mae_to_classifier(..., drop_path_rate={rate})`) or set the training argument to {built_in}."
            )
        return []

    @staticmethod
    def _build_batch_mixing(args: AdversarialTrainingArguments, config: Any) -> tuple[BatchMixing | None, int]:
        if not args.mixes_batches:
            return None, 0
        num_labels = getattr(config, "num_labels", None)
        if not num_labels:
            raise ValueError("Mixup/CutMix builds soft targets over the model's classes: the model needs `config.num_labels`.")
        mixing = BatchMixing(
            mixup_alpha=args.mixup_alpha,
            cutmix_alpha=args.cutmix_alpha,
            probability=args.mixup_prob,
            switch_probability=args.mixup_switch_prob,
            label_smoothing=args.label_smoothing_factor,
        )
        return mixing, int(num_labels)

    def _mixing_generator(self) -> np.random.Generator:
        """A host-side generator for this micro-batch's λ and box, from (seed, process, step, micro-batch)."""
        step = self.state.global_step
        micro = self._mix_position[1] + 1 if self._mix_position[0] == step else 0
        self._mix_position = (step, micro)
        return np.random.default_rng([self.args.seed, self.accelerator.process_index, step, micro])

    def train(self, *args: Any, **kwargs: Any):
        """The stock `train`; a new run (or a resumed one) counts its mixing micro-batches afresh."""
        self._mix_position = (-1, -1)
        return super().train(*args, **kwargs)

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW (or `args.optim`) over layer-wise-lr-decay groups; no weight decay on 1-D params and tokens."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = param_groups_layer_decay(
                opt_model,
                weight_decay=self.args.weight_decay,
                layer_decay=self.args.layer_decay,
                learning_rate=self.args.learning_rate,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            for key in ("params", "model", "optimizer_dict"):
                if key in optimizer_kwargs:
                    raise ValueError(
                        f"optim={self.args.optim!r} builds its own parameter groups, which layer-wise lr decay "
                        "cannot combine with; use adamw_torch (the paper's optimizer)."
                    )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_learning_rate(self) -> float:
        """The largest group lr (the head's), not the first group's (the embeddings' decayed lr).

        A private `Trainer` hook, the one it logs `learning_rate` from (canary in tests/test_transformers_canaries.py).
        """
        if self.is_deepspeed_enabled or self.optimizer is None:
            return super()._get_learning_rate()
        return max(float(group["lr"]) for group in self.optimizer.param_groups)

    # ------------------------------------------------------------------ loss
    def _logits_fn(self, model: nn.Module):
        unwrapped = self.accelerator.unwrap_model(model)

        def logits_fn(pixel_values: torch.Tensor) -> torch.Tensor:
            return unwrapped(pixel_values=pixel_values).logits

        return unwrapped, logits_fn

    @property
    def _freeze_during_attack(self) -> bool:
        # FSDP's sharded parameters must not have their flags flipped; the attack asks for input
        # gradients only either way. (With FSDP2 `unwrap_model` returns the sharded module itself,
        # so the attack's forward runs its unshard hooks.)
        return self.accelerator.distributed_type != DistributedType.FSDP

    def _attack(self, model: nn.Module, objective, pixel_values: torch.Tensor, **budget: Any) -> torch.Tensor:
        # the collator checked the batch; checking again here would wait for the device
        if self.args.adversarial_method == "apgd":  # APGD sets its own step sizes (from 2 * epsilon)
            budget.pop("step_size", None)
            budget.pop("start", None)
            return apgd(
                objective, pixel_values, model=model, check_inputs=False, freeze_parameters=self._freeze_during_attack, **budget
            )
        return pgd(
            objective, pixel_values, model=model, check_inputs=False, freeze_parameters=self._freeze_during_attack, **budget
        )

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The adversarial-training loss of one micro-batch (plain cross-entropy in evaluation)."""
        pixel_values = inputs["pixel_values"]
        labels = inputs.get("labels")
        if not model.training:  # evaluation: clean loss, robust accuracy is measured in prediction_step
            outputs = model(pixel_values=pixel_values)
            check_batch_labels(labels, outputs.logits.shape[-1])
            loss = F.cross_entropy(outputs.logits.float(), labels)
            return (loss, outputs) if return_outputs else loss

        args = self.args
        method = args.adversarial_method
        smoothing = args.label_smoothing_factor
        unwrapped, logits_fn = self._logits_fn(model)
        if labels is None:  # the range was checked in the collator
            raise ValueError("AdversarialTrainer needs `labels` in every batch (the attack maximises the label's loss).")
        mixing = self._batch_mixing is not None
        targets = labels
        if mixing:  # smoothing is folded into the soft targets; accuracies count the dominant class
            pixel_values, targets, _ = self._batch_mixing.mix(pixel_values, labels, self._num_labels, self._mixing_generator())
            labels = targets.argmax(-1)
        budget = {
            "epsilon": args.attack_epsilon,
            "step_size": args.attack_step_size,
            "steps": args.attack_steps,
            "random_start": args.attack_random_start,
            "model_mode": args.attack_model_mode,
        }
        if method == "trades" and args.trades_start == "gaussian":
            budget["start"] = "gaussian"
        clean_logits = adversarial_logits = None
        if method == "none":
            outputs = model(pixel_values=pixel_values)
            clean_logits = outputs.logits
            loss = soft_target_cross_entropy(clean_logits, targets) if mixing else plain_loss(clean_logits, labels, smoothing)
        elif method in ("pgd", "apgd"):
            adversarial = self._attack(unwrapped, cross_entropy_objective(logits_fn, targets), pixel_values, **budget)
            if args.log_clean_accuracy:
                with torch.no_grad(), preserve_mode(unwrapped, args.attack_model_mode):
                    clean_logits = logits_fn(pixel_values)
            outputs = model(pixel_values=adversarial)
            adversarial_logits = outputs.logits
            if mixing:
                loss = soft_target_cross_entropy(adversarial_logits, targets)
            else:
                loss = pgd_at_loss(adversarial_logits, labels, smoothing)
        else:  # TRADES / MART: the arguments refuse Mixup/CutMix with them
            if method == "trades":
                with torch.no_grad(), preserve_mode(unwrapped, args.attack_model_mode):
                    target_logits = logits_fn(pixel_values)
                objective = kl_objective(logits_fn, target_logits)
            else:  # mart
                objective = cross_entropy_objective(logits_fn, labels)
            adversarial = self._attack(unwrapped, objective, pixel_values, **budget)
            outputs = model(pixel_values=torch.cat([pixel_values, adversarial]))
            clean_logits, adversarial_logits = outputs.logits.chunk(2)
            outputs.logits = adversarial_logits
            if method == "trades":
                loss = trades_loss(clean_logits, adversarial_logits, labels, args.trades_beta, smoothing)
            else:
                loss = mart_loss(clean_logits, adversarial_logits, labels, args.mart_beta, smoothing)
        self._record_train_accuracy(clean_logits, adversarial_logits, labels)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _record_train_accuracy(
        self, clean_logits: torch.Tensor | None, adversarial_logits: torch.Tensor | None, labels: torch.Tensor
    ) -> None:
        if self._train_counts is None:
            self._train_counts = torch.zeros(3, dtype=torch.float32, device=labels.device)
        if clean_logits is not None:
            self._train_counts[0] += (clean_logits.argmax(-1) == labels).sum()
            self._has_clean_count = True
        if adversarial_logits is not None:
            self._train_counts[1] += (adversarial_logits.argmax(-1) == labels).sum()
            self._has_adversarial_count = True
        self._train_counts[2] += labels.numel()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the clean / adversarial training accuracy since the last log to training logs (the only read-back)."""
        if "loss" in logs and self._train_counts is not None:
            counts = self._train_counts.to(self.args.device)
            if self.accelerator.num_processes > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            counts = counts.cpu()
            if counts[2] > 0:
                if self._has_clean_count:
                    logs["clean_accuracy"] = round(float(counts[0] / counts[2]), 4)
                if self._has_adversarial_count:
                    logs["adversarial_accuracy"] = round(float(counts[1] / counts[2]), 4)
            self._train_counts.zero_()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        """The stock loop plus `<prefix>_accuracy` and `<prefix>_robust_accuracy` (PGD-k)."""
        self._eval_records = {"correct": [], "robust": []}
        seed = self.args.eval_attack_seed + self.accelerator.process_index
        self._eval_generator = torch.Generator(device=self.args.device).manual_seed(seed)
        try:
            output = super().evaluation_loop(
                dataloader,
                description,
                prediction_loss_only=prediction_loss_only,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
            records = self._eval_records
        finally:
            self._eval_records = None
            self._eval_generator = None
        if records["correct"]:
            output.metrics[f"{metric_key_prefix}_accuracy"] = torch.cat(records["correct"]).float().mean().item()
        if records["robust"]:
            output.metrics[f"{metric_key_prefix}_robust_accuracy"] = torch.cat(records["robust"]).float().mean().item()
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The stock step, then (with labels) clean correctness and PGD-k correctness of the batch."""
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only=False, ignore_keys=ignore_keys)
        if self._eval_records is not None and labels is not None and logits is not None:
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            correct = logits.argmax(-1) == labels
            self._eval_records["correct"].append(self.accelerator.gather_for_metrics(correct).cpu())
            if self.args.eval_attack_steps > 0:
                self._eval_records["robust"].append(self.accelerator.gather_for_metrics(self._robust_correct(model, inputs, labels)).cpu())
        if prediction_loss_only:
            return loss, None, None
        return loss, logits, labels

    def _robust_correct(self, model: nn.Module, inputs: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        args = self.args
        pixel_values = self._prepare_inputs(inputs)["pixel_values"]  # private Trainer API, canary-tested
        unwrapped, logits_fn = self._logits_fn(model)
        with self.compute_loss_context_manager():
            adversarial = pgd(  # the core runs its gradients under torch.enable_grad()
                cross_entropy_objective(logits_fn, labels),
                pixel_values,
                epsilon=args.resolved_eval_attack_epsilon,
                step_size=args.resolved_eval_attack_step_size,
                steps=args.eval_attack_steps,
                random_start=args.eval_attack_random_start,
                model=unwrapped,
                model_mode="eval",
                generator=self._eval_generator,
                check_inputs=False,
                freeze_parameters=self._freeze_during_attack,
            )
            with torch.no_grad():
                adversarial_logits = logits_fn(adversarial)
        return adversarial_logits.argmax(-1) == labels
