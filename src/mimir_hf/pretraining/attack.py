"""The pretraining attack: PGD on the MAE reconstruction loss.

Why the default target is the adversarial image itself: the reference implementation (whose
runs produced every published MIMIR number) computes the attack's MAE loss of x′ against x′; the
paper's framing ("reconstruct the clean image") would use x. Both are offered; "adversarial" is
the default so that our numbers are comparable with the published ones. "clean" makes the attack
maximise exactly the loss the training step minimises (a proper min-max), which is worth trying.
"""

from __future__ import annotations

import torch

from ..attacks import pgd
from .. import modeling

__all__ = ["mae_attack_objective", "craft_adversarial_pixels"]


def mae_attack_objective(
    model: "modeling.MimirForPreTraining",
    clean: torch.Tensor,
    target: str = "adversarial",
    noise: torch.Tensor | None = None,
):
    """Per-sample MAE loss of `model(x′)` against x′ (`target="adversarial"`) or x (`"clean"`).

    With `noise=None` each call draws a fresh random mask, as the reference attack does.

    The objective calls the model's own `forward` (with `loss_reduction="none"`, which also skips
    the MI penalty), never `model.vit` / `model.decoder` directly: whatever wraps `forward`
    (Accelerate's mixed-precision autocast, FSDP's parameter unsharding, `torch.compile`) then
    applies to the attack exactly as it does to the training forward. `model` may therefore be a
    `MimirForPreTraining` or a wrapper whose forward takes the same arguments (FSDP). The batch is
    not range-checked here: the caller checked it once (the trainer's collator, or `pgd`).
    """
    if target not in ("adversarial", "clean"):
        raise ValueError(f"target must be 'adversarial' or 'clean', got {target!r}.")

    def objective(adversarial: torch.Tensor) -> torch.Tensor:
        if target == "adversarial":
            inputs = {"pixel_values": adversarial}
        else:
            inputs = {"pixel_values": clean, "adversarial_pixel_values": adversarial}
        outputs = model(**inputs, noise=noise, loss_reduction="none", check_inputs=False)
        return outputs.reconstruction_loss

    return objective


def craft_adversarial_pixels(
    model: "modeling.MimirForPreTraining",
    pixel_values: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    target: str = "adversarial",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    freeze_parameters: bool = True,
    check_inputs: bool = True,
) -> torch.Tensor:
    """x′ for one pretraining batch (x′ = x when `steps == 0`: plain MAE pretraining).

    `model` is the module whose `forward` runs the attack: the unwrapped module under DDP (the
    attack only needs input gradients, and a DDP wrapper would arm gradient-synchronisation hooks
    for a backward that never comes), the FSDP-wrapped module under FSDP (only its forward
    gathers the sharded parameters; pass `freeze_parameters=False` there). `check_inputs=False`
    skips the [0, 1] check of `pixel_values` for callers that checked the batch already.
    """
    if steps == 0:
        return pixel_values
    return pgd(
        mae_attack_objective(model, pixel_values, target=target, noise=noise),
        pixel_values,
        epsilon=epsilon,
        step_size=step_size,
        steps=steps,
        random_start=True,
        model=model,
        generator=generator,
        freeze_parameters=freeze_parameters,
        check_inputs=check_inputs,
    )
