"""The one L∞ projected-gradient-descent core that pretraining, finetuning and evaluation share.

Every attack in MIMIR is "maximise some objective of the input inside the ε-ball, in pixel
space": the MAE loss while pretraining, cross-entropy or TRADES' KL while finetuning, CE, the
CW margin, CE + nHSIC or a feature distance while evaluating. Keeping one core means one
place where the projection, the random start and the "input gradients only" contract are
right, and a property test of that place covers every use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import nn

from ..validation import check_budget, check_pixel_values

__all__ = ["GAUSSIAN_START_STD", "NORMS", "frozen_parameters", "pgd", "project_l2", "project_linf", "preserve_mode"]

NORMS = ("Linf", "L2")
"""The threat models the core attacks in: an L∞ ball (sign steps) or an L2 ball (normalised-gradient steps)."""

GAUSSIAN_START_STD = 0.001
"""Std of TRADES' start x + 0.001 · N(0, 1) (Zhang et al.'s code, which the MIMIR reference reuses)."""

Objective = Callable[[torch.Tensor], torch.Tensor]
"""Maps an adversarial batch to the per-sample loss (shape `(batch,)`) that the attack maximises."""


def project_linf(adversarial: torch.Tensor, clean: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project onto {x' : ‖x' − x‖∞ ≤ ε} ∩ [0, 1]^d (the order matters: the box contains x, so clipping last stays inside the ball)."""
    adversarial = torch.max(torch.min(adversarial, clean + epsilon), clean - epsilon)
    return adversarial.clamp_(0.0, 1.0)


def project_l2(adversarial: torch.Tensor, clean: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Scale each sample's perturbation back into {x' : ‖x' − x‖₂ ≤ ε}, then clip to [0, 1].

    Clipping after the scaling stays inside the ball: x is in the box, so clipping only moves a
    coordinate towards x and can only shorten the perturbation.
    """
    delta = adversarial - clean
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (epsilon / norms).clamp(max=1.0).view(-1, *([1] * (clean.ndim - 1)))
    return (clean + delta * factor).clamp_(0.0, 1.0)


def _project(norm: str, adversarial: torch.Tensor, clean: torch.Tensor, epsilon: float) -> torch.Tensor:
    return project_linf(adversarial, clean, epsilon) if norm == "Linf" else project_l2(adversarial, clean, epsilon)


def _ascent_direction(norm: str, gradient: torch.Tensor) -> torch.Tensor:
    """The steepest-ascent step of unit norm: sign(g) for L∞, g / ‖g‖₂ per sample for L2."""
    if norm == "Linf":
        return gradient.sign()
    norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (gradient.ndim - 1)))
    return gradient / norms


def _uniform_start(norm: str, clean: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform draw from the ball: per pixel in [−ε, ε] for L∞; for L2 a uniform direction at radius ε·u^(1/d)."""
    if norm == "Linf":
        noise = torch.rand(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return (2 * noise - 1) * epsilon
    direction = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (clean.ndim - 1)))
    dim = clean[0].numel()
    radius = torch.rand(clean.shape[0], generator=generator, dtype=clean.dtype, device=clean.device) ** (1.0 / dim)
    return direction * (epsilon * radius).view(-1, *([1] * (clean.ndim - 1)))


@contextlib.contextmanager
def preserve_mode(model: nn.Module | None, mode: Literal["eval", "train"] | None) -> Iterator[None]:
    """Put `model` in `mode` for the duration and restore every submodule's own flag afterwards.

    Restoring per submodule (not just `model.train(was_training)`) matters for models where a
    user froze part of the network in eval mode (e.g. a frozen backbone with dropout).
    """
    if model is None or mode is None:
        yield
        return
    flags = [(module, module.training) for module in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def frozen_parameters(model: nn.Module | None) -> Iterator[None]:
    """Switch off `requires_grad` on `model`'s parameters for the duration, restoring each flag after.

    The attack needs input gradients only; with trainable parameters autograd would also keep the
    activations their gradients need. Freezing them makes a 1-step pretraining attack ~9% cheaper
    on CPU (benchmarks/step_cost.py) and cannot change x′, which depends on input gradients alone.
    """
    if model is None:
        yield
        return
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def _check_budget(epsilon: float, step_size: float, steps: int, restarts: int, norm: str = "Linf") -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    check_budget(epsilon, "epsilon", norm)
    if step_size < 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}.")


def _input_gradient(objective: Objective, adversarial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-sample objective with respect to the input only.

    `torch.autograd.grad` with `inputs=[x']` never writes a parameter's `.grad` and lets autograd
    skip the weight-gradient kernels, so the attack costs one forward and one input-only backward.
    """
    adversarial = adversarial.detach().requires_grad_(True)
    with torch.enable_grad():
        losses = objective(adversarial)
        if losses.ndim == 0:
            losses = losses.reshape(1)
        (gradient,) = torch.autograd.grad(losses.float().sum(), [adversarial], allow_unused=True)
    if gradient is None:  # the objective does not depend on the input (e.g. a model that ignores it)
        gradient = torch.zeros_like(adversarial)
    return gradient, losses.detach()


def pgd(
    objective: Objective,
    inputs: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    start: Literal["uniform", "gaussian"] = "uniform",
    restarts: int = 1,
    model: nn.Module | None = None,
    model_mode: Literal["eval", "train"] | None = None,
    is_successful: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    freeze_parameters: bool = True,
    check_inputs: bool = True,
    norm: Literal["Linf", "L2"] = "Linf",
) -> torch.Tensor:
    """PGD in pixel space: x′ ← Π_{B(x, ε) ∩ [0,1]}(x′ + α · d), with d = sign(∇) for L∞ (the default)
    and d = ∇ / ‖∇‖₂ for L2.

    Args:
        objective: maps a batch `x′` to per-sample losses `(batch,)` to maximise (a scalar is
            accepted when `restarts == 1`). It must build its graph from `x′`; the core calls it
            under `torch.enable_grad()`, so it works inside `torch.no_grad()` evaluation loops and
            under autocast.
        inputs: clean batch `(batch, channels, height, width)` in [0, 1].
        epsilon: L∞ radius in [0, 1] units (8/255 for the usual CIFAR-10 budget).
        step_size: α, the sign-step length.
        steps: number of gradient steps T (0 gives the random start alone, or `inputs` without it).
        random_start: start from a random point near x instead of x itself.
        start: the random start's law: `"uniform"`, x + U(−ε, ε) projected (Madry et al.'s PGD-AT,
            MIMIR's pretraining); `"gaussian"`, x + 0.001 · N(0, 1) projected (TRADES' start, which
            the reference's TRADES finetuning uses; the reference clips it to [0, 1] only after the
            first step, which moves no pixel by more than the 0.001-scale noise).
        restarts: independent random restarts; per sample the core keeps the first successful
            one when `is_successful` is given, else the one with the largest final objective.
        model: the module the objective runs: its train/eval flags are restored afterwards, and its
            parameters are frozen during the attack (`freeze_parameters`) so that autograd records
            nothing for weight gradients.
        model_mode: `"eval"` or `"train"` to set on `model` during the attack, `None` to leave it.
        is_successful: per-sample boolean "already fooled" test used to choose among restarts.
        generator: random source for the start, for reproducible attacks.
        freeze_parameters: freeze `model`'s parameters while attacking (pass False for sharded
            FSDP modules, whose flat parameters must not be touched).
        check_inputs: check that `inputs` lie in [0, 1]. The check reads values back from the
            device (a GPU sync); training loops check each batch once in their collator and pass False.
        norm: the threat model's ball, "Linf" (ε per pixel) or "L2" (ε on the whole image's Euclidean
            norm, e.g. 0.5 for CIFAR-10); α is measured in the same norm.

    Returns:
        The adversarial batch, detached, with the dtype and device of `inputs`.

    Most of its length is this documentation and the argument checks; the loop itself is a screen.
    """
    _check_budget(epsilon, step_size, steps, restarts, norm)
    if start not in ("uniform", "gaussian"):
        raise ValueError(f"start must be 'uniform' or 'gaussian', got {start!r}.")
    check_pixel_values(inputs, name="inputs", check_range=check_inputs)
    clean = inputs.detach()

    best: torch.Tensor | None = None
    best_loss: torch.Tensor | None = None
    best_success: torch.Tensor | None = None
    with preserve_mode(model, model_mode), frozen_parameters(model if freeze_parameters else None):
        for _ in range(restarts):
            adversarial = clean.clone()
            if random_start and epsilon > 0:
                if start == "gaussian":
                    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
                    adversarial = _project(norm, clean + GAUSSIAN_START_STD * noise, clean, epsilon)
                else:
                    adversarial = _project(norm, clean + _uniform_start(norm, clean, epsilon, generator), clean, epsilon)
            for _ in range(steps):
                gradient, _ = _input_gradient(objective, adversarial)
                adversarial = _project(norm, adversarial + step_size * _ascent_direction(norm, gradient), clean, epsilon)
            if restarts == 1:
                return adversarial.detach()

            with torch.no_grad():
                losses = objective(adversarial).detach().float().reshape(-1)
                if losses.numel() != clean.shape[0]:
                    raise ValueError("With restarts > 1 the objective must return one loss per sample.")
                success = (
                    is_successful(adversarial).reshape(-1).bool()
                    if is_successful is not None
                    else torch.zeros_like(losses, dtype=torch.bool)
                )
            if best is None:
                best, best_loss, best_success = adversarial, losses, success
                continue
            assert best_loss is not None and best_success is not None
            # A new restart wins a sample if it newly fools it, or if neither run fooled it
            # (or both did not) and its loss is higher.
            take = (success & ~best_success) | ((success == best_success) & ~best_success & (losses > best_loss))
            view = (-1,) + (1,) * (clean.ndim - 1)
            best = torch.where(take.view(view), adversarial, best)
            best_loss = torch.where(take, losses, best_loss)
            best_success = best_success | success
    assert best is not None
    return best.detach()
