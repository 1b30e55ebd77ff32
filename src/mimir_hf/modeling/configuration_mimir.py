"""`MimirConfig`: a `ViTMAEConfig` that also records the MIMIR settings a checkpoint was trained with.

It deliberately keeps `model_type = "vit_mae"`: a MIMIR checkpoint *is* a ViT-MAE checkpoint,
so stock transformers (`AutoModel`, `AutoModelForPreTraining`) loads it with no custom code, and
the extra keys simply travel along in `config.json` for whoever wants to know how it was trained.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import ViTMAEConfig

from ..mutual_information.kernels import COMPUTE_DTYPES
from ..mutual_information.penalty import ESTIMATORS, estimator_hyperparameters
from ..validation import check_budget

__all__ = [
    "MimirConfig",
    "ATTACK_TARGETS",
    "MI_COMPUTE_DTYPES",
    "MI_ESTIMATORS",
    "TRAINING_TARGETS",
    "check_method_settings",
]

ATTACK_TARGETS = ("adversarial", "clean")
TRAINING_TARGETS = ("clean", "adversarial")
MI_ESTIMATORS = tuple(ESTIMATORS)
MI_COMPUTE_DTYPES = COMPUTE_DTYPES


def check_method_settings(settings: object) -> None:
    """Raise a `ValueError` naming the field for an invalid MIMIR setting.

    The one check of the method's hyper-parameters, shared by `MimirConfig` (a loaded or built
    model) and `MimirTrainingArguments` (a run), which carry the same fields. The estimator's settings
    go through the penalty's own check (`mutual_information.estimator_hyperparameters`), so a value the
    penalty would refuse fails here, not at the first forward pass.
    """
    if settings.attack_target not in ATTACK_TARGETS:
        raise ValueError(f"attack_target must be one of {ATTACK_TARGETS}, got {settings.attack_target!r}.")
    if settings.training_target not in TRAINING_TARGETS:
        raise ValueError(f"training_target must be one of {TRAINING_TARGETS}, got {settings.training_target!r}.")
    estimator_hyperparameters(
        settings.mi_estimator, sigma=settings.mi_sigma, epsilon=settings.mi_epsilon, alpha=settings.mi_alpha,
        compute_dtype=settings.mi_compute_dtype, prefix="mi_",
    )
    for name in ("attack_epsilon", "attack_step_size"):
        check_budget(getattr(settings, name), name)
    if settings.mi_weight < 0:
        raise ValueError(f"mi_weight must be >= 0, got {settings.mi_weight}.")
    if settings.attack_steps < 0:
        raise ValueError(f"attack_steps must be >= 0, got {settings.attack_steps}.")
    if not 0 <= settings.mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {settings.mask_ratio}.")


@strict
class MimirConfig(ViTMAEConfig):
    r"""
    Configuration of a MIMIR pretraining model: a ViT-MAE (every `ViTMAEConfig` argument applies)
    plus the mutual-information penalty and the pretraining attack. Defaults are the paper's
    (see `docs/MIMIR.md`): λ = 1e-5 nHSIC with σ = 5, a 1-step PGD with ε = 8/255, α = 10/255,
    normalised-pixel targets, LayerNorm eps 1e-6.

    mi_weight (`float`, defaults to 1e-5):
        λ, the weight of the MI penalty added to the reconstruction loss. 0 turns MIMIR into an
        adversarial MAE without the information bottleneck.
    mi_estimator (`str`, defaults to `"hsic_cca"`):
        `"hsic_cca"` (normalised HSIC, the paper's), `"hsic"` (plain biased HSIC) or `"renyi"`
        (matrix-based Rényi α-entropy mutual information).
    mi_sigma (`float`, defaults to 5.0):
        Gaussian kernel width σ; distances are divided by 2σ²d so it is dimension-free.
    mi_epsilon (`float`, defaults to 1e-5):
        ε_r, the ridge of the normalised HSIC's regularised inverses.
    mi_alpha (`float`, defaults to 1.01):
        α of the Rényi entropy estimator.
    mi_compute_dtype (`str`, defaults to `"auto"`):
        Precision of the MI estimate's kernels and solves: `"float64"`, `"float32"`, or `"auto"`
        (float64 on the CPU and on data-centre GPUs, float32 where float64 is slow, e.g. consumer
        GPUs; `docs/benchmarks.md` gives the float32 error).
    mi_batch_size (`int`, *optional*):
        The per-device micro-batch the MI penalty was computed on while training (written by
        `MimirTrainer`). The penalty is a batch-level statistic computed on each device's
        micro-batch, as the reference does, so its scale, and the meaning of λ, depend on it.
    attack_epsilon (`float`, defaults to 8/255):
        L∞ radius of the pretraining attack, in [0, 1] pixel units.
    attack_step_size (`float`, defaults to 10/255):
        α of the pretraining attack.
    attack_steps (`int`, defaults to 1):
        PGD steps of the pretraining attack (0 disables the attack: plain MAE pretraining).
    attack_target (`str`, defaults to `"adversarial"`):
        What the attack's MAE loss reconstructs: `"adversarial"` (x′ against itself, as the
        reference code does and the published numbers used) or `"clean"` (x′ against x, the
        paper's framing).
    attack_shares_mask (`bool`, defaults to `False`):
        Whether the attack uses the training forward's random mask (`True`) or draws its own,
        as the reference code does.
    training_target (`str`, defaults to `"clean"`):
        What the training step reconstructs from the adversarial input: `"clean"` (x, MIMIR) or
        `"adversarial"` (x′ itself: an MAE trained on adversarial images, the ablation that
        separates the clean target's contribution from the adversarial input's).
    """

    model_type = "vit_mae"

    layer_norm_eps: float = 1e-6
    norm_pix_loss: bool = True
    mi_weight: float = 1e-5
    mi_estimator: str = "hsic_cca"
    mi_sigma: float = 5.0
    mi_epsilon: float = 1e-5
    mi_alpha: float = 1.01
    mi_compute_dtype: str = "auto"
    mi_batch_size: int | None = None
    attack_epsilon: float = 8 / 255
    attack_step_size: float = 10 / 255
    attack_steps: int = 1
    attack_target: str = "adversarial"
    attack_shares_mask: bool = False
    training_target: str = "clean"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_method_settings(self)
        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(set(value)) != 1:
                raise ValueError(f"{name} must be square for ViT-MAE, got {value}.")
        image_size = self.image_size[0] if isinstance(self.image_size, (list, tuple)) else self.image_size
        patch_size = self.patch_size[0] if isinstance(self.patch_size, (list, tuple)) else self.patch_size
        if image_size % patch_size:
            raise ValueError(f"patch_size {patch_size} does not divide image_size {image_size}.")
