"""Configuration of stage 2: `AdversarialTrainingArguments` (a `TrainingArguments`) and `ModelArguments`.

Everything a recipe config can say about adversarial finetuning is a documented dataclass field,
so `--help`, YAML configs and `recipe_config.yaml` all describe the same run. Budgets are in
pixel units [0, 1], written `8/255` or `0.0314` alike in YAML and on the command line
(`recipe_config.yaml` records the float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..training.learning_rate import ScaledLearningRateArguments
from ..validation import Budget, parse_budget_fields
from ..modeling.classifier_configs import POOLINGS

__all__ = ["ADVERSARIAL_METHODS", "AdversarialTrainingArguments", "ModelArguments", "TRADES_STARTS"]

ADVERSARIAL_METHODS = ("pgd", "trades", "mart", "apgd", "none")
TRADES_STARTS = ("gaussian", "uniform")


@dataclass
class AdversarialTrainingArguments(ScaledLearningRateArguments):
    """`TrainingArguments` plus the adversarial-training settings of MIMIR's finetuning stage.

    Defaults are the paper's CIFAR-10 PGD-AT ones (ε = 8/255, α = 2/255, 10 steps, layer decay
    0.65). Two stock defaults change: `remove_unused_columns=False` (image datasets transform
    their `image` column on the fly, so it must not be dropped) and `eval_strategy`/`logging`
    are left to the configs.
    """

    adversarial_method: str = field(
        default="pgd",
        metadata={
            "help": "Outer loss / inner attack: `pgd` (PGD-AT, cross-entropy on PGD examples), `trades` (clean CE + "
            "beta * KL, attack maximises the KL), `mart` (MART), `apgd` (APGD-AT: cross-entropy on APGD-CE examples, "
            "attack_steps iterations with APGD's own step sizes from 2 * attack_epsilon; attack_step_size is not used) "
            "or `none` (plain training, the control).",
            "choices": list(ADVERSARIAL_METHODS),
        },
    )
    attack_epsilon: Budget = field(
        default=8 / 255, metadata={"help": "L-inf radius of the training attack in [0, 1] pixel units: 8/255 or 0.0314."}
    )
    attack_step_size: Budget = field(default=2 / 255, metadata={"help": "Step size alpha of the training attack (e.g. 2/255)."})
    attack_steps: int = field(default=10, metadata={"help": "PGD steps of the training attack (paper: 10 CIFAR, 1 ImageNet)."})
    attack_random_start: bool = field(
        default=True, metadata={"help": "Start the training attack at a uniform random point of the eps-ball."}
    )
    attack_model_mode: str = field(
        default="eval",
        metadata={
            "help": "Mode of the model while the attack runs: `eval` (no dropout / drop path, so the attack sees "
            "the deterministic network it will be evaluated as; the reference does the same) or `train`.",
            "choices": ["eval", "train"],
        },
    )
    trades_beta: float = field(default=6.0, metadata={"help": "TRADES trade-off beta (weight of the KL term)."})
    trades_start: str = field(
        default="gaussian",
        metadata={
            "help": "Start of the TRADES inner attack: `gaussian` (x + 0.001 * N(0, 1), as TRADES and the MIMIR "
            "reference do) or `uniform` (a uniform point of the eps-ball, like PGD-AT's random start).",
            "choices": list(TRADES_STARTS),
        },
    )
    mart_beta: float = field(default=6.0, metadata={"help": "MART weight of the KL consistency term."})
    layer_decay: float = field(
        default=0.65,
        metadata={"help": "Layer-wise lr decay: block i of L gets lr * layer_decay^(L - i); 1.0 disables it."},
    )
    drop_path_rate: float = field(
        default=0.0,
        metadata={
            "help": "Stochastic depth: the residual branches of block i are dropped per sample with probability "
            "drop_path_rate * i / (L - 1) while training (paper: 0.1). The mean-pooled (BEiT) classifier applies it itself, "
            "from its config; the CLS (ViT) classifier gets it through hooks. The saved model is stock either way."
        },
    )
    mixup_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Mixup: each training batch is blended with itself in reverse order, lam * x + (1 - lam) * x_rev, "
            "lam ~ Beta(alpha, alpha) drawn once per batch, and trained towards the same blend of the (label-smoothed) "
            "one-hot targets with soft-target cross-entropy; the attack starts from the mixed images and maximises "
            "that loss. 0 disables it (Singh et al.'s ImageNet recipe: 0.8). pgd, apgd and none only."
        },
    )
    cutmix_alpha: float = field(
        default=0.0,
        metadata={
            "help": "CutMix: a box of about (1 - lam) of the area, lam ~ Beta(alpha, alpha), is pasted from the reversed "
            "batch and lam is corrected to the area left after clipping the box; targets as for Mixup. 0 disables it "
            "(Singh et al.: 1.0)."
        },
    )
    mixup_prob: float = field(
        default=1.0,
        metadata={
            "help": "Probability that a training batch is mixed at all (Singh et al.: 1.0). With Mixup/CutMix on, an "
            "unmixed batch still trains on soft (label-smoothed) targets."
        },
    )
    mixup_switch_prob: float = field(
        default=0.5,
        metadata={"help": "With mixup_alpha and cutmix_alpha both > 0: probability of CutMix rather than Mixup for a batch (Singh et al.: 0.5)."},
    )
    warmup_epochs: float | None = field(
        default=None,
        metadata={"help": "Linear warm-up length in epochs (overrides warmup_steps when training by epochs)."},
    )
    log_clean_accuracy: bool = field(
        default=True,
        metadata={
            "help": "With `pgd`, also run a no-grad clean forward per batch to log the clean training accuracy "
            "(TRADES and MART compute clean logits anyway)."
        },
    )
    eval_attack_steps: int = field(
        default=10, metadata={"help": "PGD steps of the validation attack (eval_robust_accuracy); 0 disables it."}
    )
    eval_attack_epsilon: Budget | None = field(
        default=None, metadata={"help": "Radius of the validation attack; defaults to attack_epsilon."}
    )
    eval_attack_step_size: Budget | None = field(
        default=None,
        metadata={"help": "Step size of the validation attack; defaults to 2.5 * epsilon / steps (2/255 for PGD-10 at 8/255)."},
    )
    eval_attack_random_start: bool = field(default=True, metadata={"help": "Random start for the validation attack."})
    eval_attack_seed: int = field(
        default=0,
        metadata={"help": "Seed of the validation attack's random start, so every evaluation attacks alike."},
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "Exponential moving average of the weights, updated after every optimizer step with this decay "
            "(Singh et al.'s ImageNet recipe: 0.9999); 0 disables it. When on, validation runs on the average and "
            "the saved model is the average (checkpoints keep the raw weights plus ema.safetensors, for resuming)."
        },
    )
    ema_device: str | None = field(
        default=None, metadata={"help": "Where the EMA copy lives: the weights' device (default) or `cpu` to save GPU memory."}
    )
    ema_evaluate: bool = field(
        default=True, metadata={"help": "With ema_decay > 0, evaluate the averaged weights during training (the reference does)."}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: image datasets build `pixel_values` from their `image` column on the fly."},
    )

    def __post_init__(self) -> None:
        if self.adversarial_method not in ADVERSARIAL_METHODS:
            raise ValueError(f"adversarial_method must be one of {ADVERSARIAL_METHODS}, got {self.adversarial_method!r}.")
        if self.attack_model_mode not in ("eval", "train"):
            raise ValueError(f"attack_model_mode must be 'eval' or 'train', got {self.attack_model_mode!r}.")
        parse_budget_fields(self)
        for name in ("attack_steps", "eval_attack_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.adversarial_method != "none" and self.attack_steps == 0 and not self.attack_random_start:
            raise ValueError("attack_steps=0 without a random start trains on clean images; use adversarial_method='none'.")
        if self.trades_start not in TRADES_STARTS:
            raise ValueError(f"trades_start must be one of {TRADES_STARTS}, got {self.trades_start!r}.")
        if self.adversarial_method == "trades" and not self.attack_random_start:
            raise ValueError(
                "TRADES needs attack_random_start=True: its KL objective has zero gradient at the clean image, so "
                "PGD started there never moves. trades_start chooses the start (gaussian: x + 0.001 * N(0, 1), "
                "the reference's; uniform: a point of the eps-ball)."
            )
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must lie in (0, 1], got {self.layer_decay}.")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must lie in [0, 1), got {self.drop_path_rate}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) (0 disables the weight EMA; 0.9999 is usual), got {self.ema_decay}.")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 (0 disables); got {self.mixup_alpha}, {self.cutmix_alpha}.")
        for name in ("mixup_prob", "mixup_switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}.")
        if self.mixes_batches and self.adversarial_method in ("trades", "mart"):
            raise ValueError(
                f"Mixup/CutMix (mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}) is not supported with "
                f"adversarial_method={self.adversarial_method!r}: "
                + (
                    "TRADES' attack and KL term are defined against the model's own clean prediction and its natural "
                    "term against one class"
                    if self.adversarial_method == "trades"
                    else "MART's boosted loss and per-sample weights need a single true class per image"
                )
                + ", and soft mixed targets give neither. Singh et al. combine Mixup/CutMix with plain adversarial "
                "training: use adversarial_method apgd or pgd, or set both alphas to 0."
            )
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}.")
        super().__post_init__()

    @property
    def mixes_batches(self) -> bool:
        """Whether training batches go through Mixup/CutMix (and so train on soft targets)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def resolved_eval_attack_epsilon(self) -> float:
        return self.attack_epsilon if self.eval_attack_epsilon is None else self.eval_attack_epsilon

    @property
    def resolved_eval_attack_step_size(self) -> float:
        if self.eval_attack_step_size is not None:
            return self.eval_attack_step_size
        return 2.5 * self.resolved_eval_attack_epsilon / max(self.eval_attack_steps, 1)

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """Warm-up in optimizer steps; `warmup_epochs` is converted with the schedule's steps per epoch."""
        if self.warmup_epochs is not None and self.max_steps <= 0 and self.num_train_epochs > 0:
            return math.ceil(num_training_steps * min(self.warmup_epochs / self.num_train_epochs, 1.0))
        return super().get_warmup_steps(num_training_steps)


@dataclass
class ModelArguments:
    """Which encoder the classifier starts from."""

    model_name_or_path: str = field(
        default="outputs/quickstart-pretrain",
        metadata={
            "help": "A `vit_mae` checkpoint (MIMIR or plain MAE pretraining output, or a Hub id such as "
            "facebook/vit-mae-base), a `vit` checkpoint, or `scratch` for a randomly initialised encoder of "
            "`model_size` (the paper's from-scratch baseline)."
        },
    )
    model_size: str = field(
        default="vit-t", metadata={"help": "With `scratch`: vit-t, vit-s, vit-b or vit-l (MIMIR's sizes)."}
    )
    patch_size: int | None = field(
        default=None, metadata={"help": "With `scratch`: patch size (default 2 at 32 px, 4 at 64 px, 16 at 224 px)."}
    )
    hidden_size: int | None = field(default=None, metadata={"help": "With `scratch`: override the preset's width."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "With `scratch`: override the depth."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "With `scratch`: override the heads."})
    pooling: str = field(
        default="mean",
        metadata={
            "help": "Classifier head: `mean` (the reference's: average of the patch tokens + a fresh LayerNorm, the "
            "encoder's final norm dropped; a stock BeitForImageClassification) or `cls` (the CLS token after the "
            "pretrained final norm; a stock ViTForImageClassification).",
            "choices": list(POOLINGS),
        },
    )
    head_init_std: float | None = field(
        default=None,
        metadata={"help": "Std of the new head's truncated-normal init; default 2e-5 at >= 224 px, else 2e-2."},
    )

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}.")

    @property
    def from_scratch(self) -> bool:
        return self.model_name_or_path.strip().lower() == "scratch"
