"""L∞ APGD (Croce & Hein 2020, "Reliable evaluation ... AutoAttack", Algorithm 1), the attack of APGD-AT.

APGD is PGD whose step size needs no tuning: it starts at η = 2ε, adds momentum and halves η per
sample at checkpoints where the objective stopped improving, restarting those samples from the
best point found. Singh et al. 2023 ("Revisiting adversarial training for ImageNet") train with
2-step APGD on cross-entropy from the clean image, and the MIMIR authors' ImageNet SOTA rows use
that recipe. The schedule, as in their code and AutoAttack's:

- iterate: z = Π(x_k + η_k · sign ∇f(x_k)); x_{k+1} = Π(x_k + a (z − x_k) + (1 − a)(x_k − x_{k−1})),
  a = 1 on the first step and `momentum` (0.75) after;
- checkpoints: the first after k₀ = max(⌊0.22 T⌋, 1) iterations, each next one after
  k ← max(k − max(⌊0.03 T⌋, 1), max(⌊0.06 T⌋, 1)) more;
- at a checkpoint a sample's step is halved, and it is moved back to its best point (with that
  point's gradient), when (1) among the last k iterations the objective rose in at most
  ρ·k = 0.75·k of them, or (2) its step was not just halved and its best objective did not improve
  since the previous checkpoint. The count in (1) compares the first iterate f(x₁) with 0 (the
  reference implementations keep the losses in a zero-initialised table), not with f(x₀);
- the result is, per sample, the iterate with the highest objective seen (x₀ included).

For T = 2 (the training setting) every iteration is a checkpoint, with k = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..validation import check_budget, check_pixel_values
from .pgd import Objective, _input_gradient, frozen_parameters, preserve_mode, project_linf

__all__ = ["APGD_MOMENTUM", "APGDTrace", "apgd", "apgd_checkpoint_iterations"]

APGD_MOMENTUM = 0.75
_RHO = 0.75


@dataclass
class APGDTrace:
    """What the schedule did, per iteration (for tests and diagnostics)."""

    step_sizes: list[torch.Tensor] = field(default_factory=list)
    """η per sample used for the step of each iteration."""
    losses: list[torch.Tensor] = field(default_factory=list)
    """Objective per sample at each new iterate x_1 … x_T."""
    checkpoints: list[int] = field(default_factory=list)
    """Iteration indices (0-based) after which a checkpoint was evaluated."""
    halved: list[torch.Tensor] = field(default_factory=list)
    """Per checkpoint, which samples had their step halved."""


def apgd_checkpoint_iterations(steps: int) -> list[int]:
    """0-based iterations after which APGD evaluates its step-size conditions (T = 100: 21, 40, 56, 69, ...)."""
    k = max(int(0.22 * steps), 1)
    decrease, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, since = [], 0
    for i in range(steps):
        since += 1
        if since == k:
            out.append(i)
            since = 0
            k = max(k - decrease, minimum)
    return out


def apgd(
    objective: Objective,
    inputs: torch.Tensor,
    *,
    epsilon: float,
    steps: int,
    momentum: float = APGD_MOMENTUM,
    initial_step_size: float | None = None,
    random_start: bool = False,
    model: nn.Module | None = None,
    model_mode: Literal["eval", "train"] | None = "eval",
    generator: torch.Generator | None = None,
    freeze_parameters: bool = True,
    check_inputs: bool = True,
    trace: APGDTrace | None = None,
    is_successful: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """L∞ APGD maximising a per-sample `objective`; returns the highest-objective point per sample.

    Args:
        objective: batch → per-sample losses `(batch,)` (e.g. `cross_entropy_objective`).
        inputs: clean batch in [0, 1].
        epsilon: L∞ radius in [0, 1] units.
        steps: iterations T (the training recipe: 2). 0 returns the start.
        momentum: a, the weight of the new gradient step against the previous displacement.
        initial_step_size: η₀, default 2ε.
        random_start: start at a uniform point of the ε-ball instead of the clean image (the APGD-AT
            recipe starts at the clean image).
        model: the module the objective runs (mode set to `model_mode`, parameters frozen while attacking).
        freeze_parameters: freeze `model`'s parameters while attacking (False for sharded FSDP modules).
        check_inputs: check that `inputs` lie in [0, 1] (one device sync); trainers whose collator
            already checked the batch pass False.
        trace: an `APGDTrace` to fill with the schedule's decisions.
        is_successful: unused by the schedule; accepted so that APGD and PGD share call sites.

    The iteration stays one function, in the order of Croce & Hein's Algorithm 1, so that it can be read
    against the paper line by line; the step-size schedule is `_checkpoints`.
    """
    del is_successful
    check_budget(epsilon)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must lie in (0, 1], got {momentum}.")
    check_pixel_values(inputs, name="inputs", check_range=check_inputs)
    clean = inputs.detach()
    n = clean.shape[0]
    view = (-1,) + (1,) * (clean.ndim - 1)
    eta0 = 2.0 * epsilon if initial_step_size is None else float(initial_step_size)

    with preserve_mode(model, model_mode), frozen_parameters(model if freeze_parameters else None):
        x = clean.clone()
        if random_start and epsilon > 0:
            noise = torch.rand(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
            x = project_linf(clean + (2 * noise - 1) * epsilon, clean, epsilon)
        if steps == 0:
            return x.detach()
        gradient, loss = _input_gradient(objective, x)
        loss = loss.float().reshape(n)
        best_x, best_gradient, best_loss = x.clone(), gradient.clone(), loss.clone()
        step = torch.full((n,), eta0, dtype=torch.float32, device=clean.device)
        previous = x.clone()
        previous_loss = torch.zeros_like(loss)  # see the module docstring: f(x_1) is compared with 0
        increases: list[torch.Tensor] = []
        k = max(int(0.22 * steps), 1)
        decrease, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
        since_check = 0
        reduced_last = torch.ones(n, dtype=torch.bool, device=clean.device)
        best_at_last_check = best_loss.clone()
        for i in range(steps):
            if trace is not None:
                trace.step_sizes.append(step.clone())
            a = 1.0 if i == 0 else momentum
            eta = step.to(clean.dtype).view(view)
            z = project_linf(x + eta * gradient.sign(), clean, epsilon)
            new = project_linf(x + a * (z - x) + (1 - a) * (x - previous), clean, epsilon)
            previous, x = x, new
            if i < steps - 1:
                gradient, loss = _input_gradient(objective, x)
            else:  # the last iterate needs its objective only
                with torch.no_grad():
                    loss = objective(x).detach()
            loss = loss.float().reshape(n)
            if trace is not None:
                trace.losses.append(loss.clone())
            increases.append(loss > previous_loss)
            previous_loss = loss
            improved = loss > best_loss  # torch.where, not masked assignment: no device sync (nonzero)
            best_x = torch.where(improved.view(view), x, best_x)
            best_loss = torch.where(improved, loss, best_loss)
            if i < steps - 1:
                best_gradient = torch.where(improved.view(view), gradient, best_gradient)
            since_check += 1
            if since_check == k:
                rises = torch.stack(increases[-k:]).sum(0)
                oscillating = rises <= k * _RHO
                stalled = ~reduced_last & (best_at_last_check >= best_loss)
                halve = oscillating | stalled
                reduced_last, best_at_last_check = halve, best_loss.clone()
                if trace is not None:
                    trace.checkpoints.append(i)
                    trace.halved.append(halve.clone())
                step = torch.where(halve, step / 2, step)  # unconditionally: `if halve.any()` would wait for the device
                x = torch.where(halve.view(view), best_x, x)
                gradient = torch.where(halve.view(view), best_gradient, gradient)
                since_check = 0
                k = max(k - decrease, minimum)
    return best_x.detach()
