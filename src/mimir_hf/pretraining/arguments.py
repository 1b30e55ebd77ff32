"""The pretraining stage's command line: `MimirTrainingArguments` (the MIMIR method's
hyper-parameters next to the stock training ones) and `PretrainModelArguments` (which network).

Defaults are the paper's pretraining recipe (see `docs/MIMIR.md`), so a config only has to
state what differs. The method fields are copied into the model's `MimirConfig` when training
starts, which is how they travel inside every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.learning_rate import ScaledLearningRateArguments
from ..training.runs import refuse_fp16_attacks
from ..validation import Budget, parse_budget_fields
from ..modeling.configuration_mimir import (
    ATTACK_TARGETS,
    MI_COMPUTE_DTYPES,
    MI_ESTIMATORS,
    TRAINING_TARGETS,
    check_method_settings,
)

__all__ = ["METHOD_FIELDS", "MimirTrainingArguments", "PretrainModelArguments"]

# Fields shared with `MimirConfig`: the trainer writes them into the model config.
METHOD_FIELDS = (
    "attack_epsilon",
    "attack_step_size",
    "attack_steps",
    "attack_target",
    "attack_shares_mask",
    "training_target",
    "mi_weight",
    "mi_estimator",
    "mi_sigma",
    "mi_epsilon",
    "mi_alpha",
    "mi_compute_dtype",
    "mask_ratio",
)


@dataclass
class MimirTrainingArguments(ScaledLearningRateArguments):
    r"""
    Configuration for [`MimirTrainer`]: every `TrainingArguments` option plus MIMIR's.

    Parameters:
        attack_epsilon (`float`, defaults to 8/255):
            L∞ radius ε of the pretraining attack, in [0, 1] pixel units; YAML and the command line
            may write it as a fraction (`8/255`), as every budget field.
        attack_step_size (`float`, defaults to 10/255):
            PGD step α.
        attack_steps (`int`, defaults to 1):
            PGD steps T; 0 turns the attack off (plain MAE pretraining, the paper's baseline).
        attack_target (`str`, defaults to `"adversarial"`):
            What the attack's MAE loss reconstructs: `"adversarial"` (x′ itself, as the reference code
            and the published numbers) or `"clean"` (x, the paper's framing).
        attack_shares_mask (`bool`, defaults to `False`):
            Reuse the training forward's random mask in the attack instead of drawing a new one.
        training_target (`str`, defaults to `"clean"`):
            What the training step reconstructs: `"clean"` (x, MIMIR's clean target) or `"adversarial"`
            (x′, an MAE on adversarial images; with `mi_weight=0` the ablation that isolates the clean
            target's contribution).
        mi_weight (`float`, defaults to 1e-5):
            λ of the mutual-information penalty; 0 removes it.
        mi_estimator (`str`, defaults to `"hsic_cca"`):
            `"hsic_cca"`, `"hsic"` or `"renyi"`.
        mi_sigma (`float`, defaults to 5.0):
            Gaussian kernel width σ of the estimator.
        mi_epsilon (`float`, defaults to 1e-5):
            Ridge ε_r of the normalised HSIC.
        mi_alpha (`float`, defaults to 1.01):
            α of the Rényi estimator.
        mi_compute_dtype (`str`, defaults to `"auto"`):
            Precision of the MI estimate: `"float64"`, `"float32"` or `"auto"` (float64 on the CPU
            and data-centre GPUs, float32 on GPUs whose float64 is slow).
        mask_ratio (`float`, defaults to 0.75):
            Fraction of patches the MAE hides.
        base_learning_rate (`float` or `None`, defaults to 1.5e-4):
            MAE scaling rule: `learning_rate = base_learning_rate × effective batch / 256`, with the
            effective batch = per-device batch × accumulation steps × processes. An explicit
            `learning_rate` wins over it.
        log_attack_gain (`bool`, defaults to `False`):
            Log the attack's gain (reconstruction loss on x′ minus on x); costs one extra forward.
    """

    attack_epsilon: Budget = field(default=8 / 255, metadata={"help": "L∞ radius of the pretraining attack ([0,1] units): 8/255 or 0.0314."})
    attack_step_size: Budget = field(default=10 / 255, metadata={"help": "PGD step size α ([0,1] units, e.g. 10/255)."})
    attack_steps: int = field(default=1, metadata={"help": "PGD steps; 0 disables the attack (plain MAE)."})
    attack_target: str = field(
        default="adversarial",
        metadata={"help": "Attack reconstructs 'adversarial' (x′, reference code) or 'clean' (x).", "choices": list(ATTACK_TARGETS)},
    )
    attack_shares_mask: bool = field(default=False, metadata={"help": "Attack reuses the training forward's mask."})
    training_target: str = field(
        default="clean",
        metadata={"help": "Training reconstructs the 'clean' image (MIMIR) or the 'adversarial' one (ablation).",
                  "choices": list(TRAINING_TARGETS)},
    )
    mi_weight: float = field(default=1e-5, metadata={"help": "λ, weight of the MI penalty (0 disables it)."})
    mi_estimator: str = field(
        default="hsic_cca", metadata={"help": "MI estimator.", "choices": list(MI_ESTIMATORS)}
    )
    mi_sigma: float = field(default=5.0, metadata={"help": "Gaussian kernel width σ."})
    mi_epsilon: float = field(default=1e-5, metadata={"help": "Ridge ε_r of the normalised HSIC."})
    mi_alpha: float = field(default=1.01, metadata={"help": "α of the Rényi entropy estimator."})
    mi_compute_dtype: str = field(
        default="auto",
        metadata={
            "help": "MI estimate precision: float64, float32, or auto (float64 on CPU and data-centre GPUs, else float32).",
            "choices": list(MI_COMPUTE_DTYPES),
        },
    )
    mask_ratio: float = field(default=0.75, metadata={"help": "Fraction of patches masked."})
    base_learning_rate: float | None = field(
        default=1.5e-4,
        metadata={"help": "lr = base_learning_rate × effective batch / 256, unless learning_rate is given."},
    )
    log_attack_gain: bool = field(default=False, metadata={"help": "Log loss(x′) − loss(x) (one extra forward)."})

    # Stock fields whose defaults change to the paper's pretraining recipe.
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on biases, norms, tokens)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW β2 (MAE uses 0.95)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule, stepped per iteration."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up: steps, or a fraction (< 1) of training; 40/800 epochs."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep raw columns for on-the-fly transforms."})
    dataloader_drop_last: bool = field(
        default=True, metadata={"help": "Drop the last partial batch (the MI estimator needs at least 2 samples)."}
    )

    def __post_init__(self) -> None:
        parse_budget_fields(self)
        super().__post_init__()
        check_method_settings(self)
        if self.attack_steps > 0:
            refuse_fp16_attacks(self, "MIMIR pretraining")

    def method_config(self) -> dict[str, object]:
        """The MIMIR fields, as they are written into the model's `MimirConfig`.

        `mi_batch_size` records the per-device micro-batch: the MI penalty is computed on it (not on
        the global batch), so the same λ means a different penalty at a different per-device batch.
        """
        config = {name: getattr(self, name) for name in METHOD_FIELDS}
        config["mi_batch_size"] = self.per_device_train_batch_size
        return config


@dataclass
class PretrainModelArguments:
    """Which network to pretrain: a named size (optionally shrunk) or an existing ViT-MAE checkpoint."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue from a ViT-MAE / MIMIR checkpoint (path or Hub id) instead of a new model."}
    )
    model_size: str = field(default="vit-t", metadata={"help": "vit-t, vit-s, vit-b or vit-l (the paper's encoders)."})
    patch_size: int | None = field(default=None, metadata={"help": "Patch size; default 2 / 4 / 16 for 32 / 64 / 224 px."})
    hidden_size: int | None = field(default=None, metadata={"help": "Override the preset's width (small CPU runs)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Override the preset's depth."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Override the preset's head count."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Override the MLP width (default 4 × hidden)."})
    norm_pix_loss: bool = field(default=True, metadata={"help": "Per-patch normalised targets (all published runs)."})
    num_preview_images: int = field(default=8, metadata={"help": "Rows of the reconstruction grid PNG (0: none)."})
