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
    """
    if target not in ("adversarial", "clean"):
        raise ValueError(f"target must be 'adversarial' or 'clean', got {target!r}.")

    def objective(adversarial: torch.Tensor) -> torch.Tensor:
        vit = model.vit(adversarial, noise=noise)
        logits = model.decoder(vit.last_hidden_state, vit.ids_restore).logits
        reference = adversarial if target == "adversarial" else clean
        return model.reconstruction_loss(reference, logits, vit.mask, reduction="none")

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
) -> torch.Tensor:
    """x′ for one pretraining batch (x′ = x when `steps == 0`: plain MAE pretraining).

    `model` must be the *unwrapped* module: the attack only needs input gradients, and running it
    through a DDP wrapper would arm gradient-synchronisation hooks for a backward that never comes.
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
    )
