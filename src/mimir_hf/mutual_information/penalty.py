"""The MI penalty as a training loop uses it: pick an estimator by name, never let it poison the loss.

The reference implementation silently skipped the penalty whenever a matrix inverse failed
or the value was not finite, so a run could train without its information bottleneck for
any number of steps and nobody would know. Here a failed batch still yields a zero that is
attached to the graph (so DistributedDataParallel sees every parameter take part and the
step proceeds), but it is counted in `num_dropped`, flagged in the result, and logged (by the
training loop when it logs, so that the check never stalls a GPU's queue).
Bad arguments (one sample, mismatched batches) are not "failures" of the estimator: they
raise, because they are a bug in the caller.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .hsic import hsic_biased, hsic_normalized_cca
from .kernels import COMPUTE_DTYPES
from .renyi import renyi_mutual_information

__all__ = ["ESTIMATORS", "Estimator", "MIPenaltyResult", "MutualInformationPenalty", "estimator_hyperparameters"]

logger = logging.getLogger(__name__)

Estimator = Callable[..., torch.Tensor]
"""`(x, y, **hyperparameters) -> scalar`; receives whichever of `sigma`, `epsilon`, `alpha`, `compute_dtype` it declares."""

ESTIMATORS: dict[str, Estimator] = {
    "hsic_cca": hsic_normalized_cca,
    "hsic": hsic_biased,
    "renyi": renyi_mutual_information,
}
"""Estimator name → function. Names are what configs and `MimirConfig` store; add to it to plug in another."""


def estimator_hyperparameters(
    estimator: str,
    *,
    sigma: float = 5.0,
    epsilon: float = 1e-5,
    alpha: float = 1.01,
    compute_dtype: str = "auto",
    prefix: str = "",
) -> dict[str, object]:
    """The hyper-parameters `estimator` declares, checked; a `ValueError` naming the field otherwise.

    The one check of the MI settings: `MutualInformationPenalty`, `MimirConfig` and
    `MimirTrainingArguments` (whose fields carry `prefix="mi_"`) all call it, so a bad value fails
    where it is set, not at the first training step hours later. A value the estimator does not take
    (the ridge ε of a Rényi estimate) is not checked: one config drives any estimator.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"Unknown mutual-information estimator {prefix}estimator={estimator!r}; choose one of {sorted(ESTIMATORS)}."
        )
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"`{prefix}compute_dtype` must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}.")
    declared = _declared_parameters(ESTIMATORS[estimator])
    available = {
        name: value for name, value in (("sigma", sigma), ("epsilon", epsilon), ("alpha", alpha))
        if declared is None or name in declared
    }
    for name, value in available.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"`{prefix}{name}` must be a finite number, got {value!r}.")
    if "sigma" in available and sigma <= 0:
        raise ValueError(f"`{prefix}sigma` must be > 0, got {sigma!r}; MIMIR uses 5.0.")
    if "epsilon" in available and epsilon <= 0:
        raise ValueError(
            f"`{prefix}epsilon` must be > 0, got {epsilon!r} (the centred kernel is singular without a ridge); "
            "MIMIR uses 1e-5."
        )
    if "alpha" in available and (alpha <= 0 or alpha == 1):
        raise ValueError(f"`{prefix}alpha` must be > 0 and != 1, got {alpha!r}; MIMIR uses 1.01.")
    if declared is None or "compute_dtype" in declared:
        available["compute_dtype"] = compute_dtype
    return available


def _declared_parameters(function: Estimator) -> set[str] | None:
    """The keyword names an estimator takes; None when it takes any (`**kwargs`, or no readable signature)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters)


class MIPenaltyResult(NamedTuple):
    """What one penalty evaluation gave; `dropped` tells the caller the value is a stand-in zero.

    `dropped` is a 0-d bool tensor on the latent's device, so that asking whether the batch was
    dropped is the caller's choice of when to synchronise (`bool(result.dropped)` reads it).
    """

    value: torch.Tensor
    dropped: torch.Tensor


class MutualInformationPenalty:
    """Callable `(latent, inputs) -> MIPenaltyResult`: the estimator's value, or a graph-connected zero when it fails.

    The caller multiplies `value` by its weight (λ = 1e-5 in MIMIR) and adds it to the loss.
    `value` is always a finite float32 scalar on `latent`'s device, so it can be added to a
    loss computed under autocast without upcasting it to float64.

    A call never waits for the device: a non-finite input or value (a singular solve gives NaN)
    is detected and replaced on the device, and counted in a device-side counter. Reading
    `num_dropped` synchronises; a training loop reads it when it logs (`MimirTrainer` warns there
    when batches were dropped). An estimator that raises `torch.linalg.LinAlgError` (the Rényi
    one's eigendecomposition can) is dropped and logged at once.

    Attributes:
        estimator: the registry name in use.
        compute_dtype: `"auto"`, `"float64"` or `"float32"` (see `compute_dtype_for`).
        num_calls: evaluations so far.
        num_dropped: evaluations whose value had to be replaced by zero (reading it synchronises).
    """

    def __init__(
        self,
        estimator: str = "hsic_cca",
        sigma: float = 5.0,
        epsilon: float = 1e-5,
        alpha: float = 1.01,
        compute_dtype: str = "auto",
    ) -> None:
        self._kwargs = estimator_hyperparameters(
            estimator, sigma=sigma, epsilon=epsilon, alpha=alpha, compute_dtype=compute_dtype
        )
        self.estimator = estimator
        self.sigma = sigma
        self.epsilon = epsilon
        self.alpha = alpha
        self.compute_dtype = compute_dtype
        self.num_calls = 0
        self._dropped_on_host = 0
        self._dropped_on_device: torch.Tensor | None = None
        self._function = ESTIMATORS[estimator]

    @property
    def num_dropped(self) -> int:
        device_count = 0 if self._dropped_on_device is None else int(self._dropped_on_device)
        return self._dropped_on_host + device_count

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}(estimator={self.estimator!r}, {settings})"

    def __call__(self, latent: torch.Tensor, inputs: torch.Tensor) -> MIPenaltyResult:
        """Estimate I(latent; inputs) for one batch (first dimension = samples).

        Raises the estimator's `ValueError`/`TypeError` for bad arguments; only numerical
        failures (a singular solve, a non-convergent eigendecomposition, a non-finite input or
        value) become a drop.
        """
        self.num_calls += 1
        # A NaN/inf input is swapped for zeros *before* the estimator sees it: masking only the
        # output would still send 0 · NaN = NaN gradients back through the estimator.
        finite_inputs = _all_finite(latent) & _all_finite(inputs)
        safe_latent = _where_finite(finite_inputs, latent)
        safe_inputs = _where_finite(finite_inputs, inputs)
        try:
            value = self._function(safe_latent, safe_inputs, **self._kwargs)
        except torch.linalg.LinAlgError as error:
            return self._drop(latent, inputs, f"{type(error).__name__}: {error}")
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(
                f"Estimator {self.estimator!r} must return a scalar tensor, got "
                f"{type(value).__name__}{'' if not isinstance(value, torch.Tensor) else tuple(value.shape)}."
            )
        value = value.reshape(()).to(device=latent.device, dtype=torch.float32)
        dropped = ~(finite_inputs.to(latent.device) & torch.isfinite(value.detach()))
        value = torch.where(dropped, torch.zeros_like(value), value)
        if self._dropped_on_device is None or self._dropped_on_device.device != latent.device:
            self._dropped_on_device = torch.zeros((), dtype=torch.int64, device=latent.device)
        self._dropped_on_device += dropped
        return MIPenaltyResult(value, dropped)

    def _drop(self, latent: torch.Tensor, inputs: torch.Tensor, reason: str) -> MIPenaltyResult:
        """A zero that still reaches `latent` (and `inputs`) in the graph, even when they hold NaN.

        `x.sum() * 0` would be NaN for a NaN `x`; the sum of an empty slice is exactly 0 yet is
        still a node of the graph, so backward reaches every parameter with a zero gradient.
        """
        self._dropped_on_host += 1
        zero = torch.zeros((), dtype=torch.float32, device=latent.device)
        for tensor in (latent, inputs):
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                zero = zero + tensor.reshape(-1)[:0].sum().to(device=latent.device, dtype=torch.float32)
        logger.warning(
            "Mutual-information penalty (%s) dropped for this batch and replaced by 0 (%s); "
            "%d of %d batches dropped so far.",
            self.estimator,
            reason,
            self.num_dropped,
            self.num_calls,
        )
        return MIPenaltyResult(zero, torch.ones((), dtype=torch.bool, device=latent.device))


def _all_finite(tensor: torch.Tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        device = tensor.device if isinstance(tensor, torch.Tensor) else None
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.isfinite(tensor.detach()).all()


def _where_finite(finite: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return tensor
    return torch.where(finite.to(tensor.device), tensor, torch.zeros((), dtype=tensor.dtype, device=tensor.device))
