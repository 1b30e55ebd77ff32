"""Hilbert–Schmidt independence criteria: the normalised (CCA-style) one MIMIR penalises, and the plain biased one.

MIMIR's information bottleneck needs a differentiable, batch-level stand-in for I(Z; X′).
HSIC is one: zero iff the two are independent (for a characteristic kernel), computable from
two m × m Gram matrices. The normalised variant divides out each side's own kernel spectrum,
so the value does not simply grow with how spread out one side is; that is the quantity the
published runs used (λ = 1e-5 · nHSIC). The biased estimator is kept as a simpler baseline
and as a cross-check for tests.
"""

from __future__ import annotations

import math

import torch

from .kernels import centered_gaussian_kernel, check_pair, check_sigma, compute_dtype_for, no_autocast, result_dtype_for

__all__ = ["hsic_biased", "hsic_normalized_cca", "normalized_kernel_operator"]


def _check_epsilon(epsilon: float) -> None:
    """Reject ε ≤ 0: K̃ is singular by construction (rows sum to zero), so without a ridge the solve fails."""
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(
            f"`epsilon` (the ridge in R = K̃ (K̃ + ε m I)^-1) must be a finite number > 0, got {epsilon!r}. "
            "The centred kernel K̃ is always singular, so ε = 0 has no solution and a negative ε can make "
            "the system singular; MIMIR uses epsilon=1e-5."
        )


def normalized_kernel_operator(centered_kernel: torch.Tensor, epsilon: float = 1e-5) -> torch.Tensor:
    """R = K̃ (K̃ + ε m I)^{-1}, by a linear solve rather than an explicit inverse.

    The ridged matrix has condition number around λ_max / (ε m), easily 1e5 or more; solving
    (X A = K̃, i.e. `left=False`) is both cheaper and more accurate than forming A^{-1} and
    multiplying, and its backward pass is a solve as well.

    `solve_ex` rather than `solve`: `solve` checks for a singular system on the host, which
    stalls a GPU's queue once per call. A singular system gives R full of NaN instead, which
    the caller (`MutualInformationPenalty`) counts as a dropped batch without a sync.
    """
    _check_epsilon(epsilon)
    m = centered_kernel.shape[0]
    identity = torch.eye(m, dtype=centered_kernel.dtype, device=centered_kernel.device)
    ridged = centered_kernel + (epsilon * m) * identity
    solution, info = torch.linalg.solve_ex(ridged, centered_kernel, left=False)
    return torch.where(info == 0, solution, torch.full_like(solution, float("nan")))


def hsic_normalized_cca(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 5.0,
    epsilon: float = 1e-5,
    *,
    compute_dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    """nHSIC(X, Y) = Σ_ij (R_x ∘ R_yᵀ)_ij = tr(R_x R_y), MIMIR's mutual-information penalty.

    Each R is close to a projection onto the directions its kernel resolves above the ridge
    ε m, so the value lies in [0, m − 1] roughly and measures how much those two subspaces
    overlap, independently of the kernels' scale. With σ → 0 both kernels become I and the
    value tends to (m − 1)/(1 + ε m)² whatever the data; with σ → ∞ it tends to 0.

    Args:
        x, y: batches with the same number of samples m ≥ 2 (first dimension), any trailing
            shape; each sample is flattened. In MIMIR, x is the encoder latent and y the
            adversarial image.
        sigma: kernel width, relative to √d of each side (see `gaussian_kernel`).
        epsilon: ridge ε_r > 0.
        compute_dtype: `None`/`"auto"` (float64 where cheap, else float32; see
            `compute_dtype_for`), `"float64"`, `"float32"` or the torch dtype; autocast is
            disabled inside.

    Returns:
        A scalar on the inputs' device, float64 for float64 inputs and float32 otherwise; NaN
        if a ridged kernel is numerically singular (e.g. NaN inputs), which
        `MutualInformationPenalty` turns into a counted drop. No host synchronisation.

    Raises:
        ValueError: one sample, different batch sizes, devices, σ ≤ 0 or ε ≤ 0.
    """
    check_sigma(sigma)
    _check_epsilon(epsilon)
    x2, y2 = check_pair(x, y)
    work = compute_dtype_for(x2.device, compute_dtype)
    with no_autocast(x2.device):
        r_x = normalized_kernel_operator(centered_gaussian_kernel(x2.to(work), sigma), epsilon)
        r_y = normalized_kernel_operator(centered_gaussian_kernel(y2.to(work), sigma), epsilon)
        value = (r_x * r_y.T).sum()
    return value.to(result_dtype_for(x, y))


def hsic_biased(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 5.0,
    *,
    compute_dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    """Gretton et al.'s biased empirical HSIC, tr(K H L H) / (m − 1)², with the same Gaussian kernel.

    Unlike nHSIC it scales with the kernels themselves: it tends to 0 as σ → ∞ (every kernel
    entry → 1, nothing left after centring) and to 1/(m − 1) as σ → 0 (K = L = I).
    tr(K H L H) = Σ_ij (K H)_ij (L H)_ji, so the row-centred kernels suffice.

    Args and raises as for `hsic_normalized_cca` (no ε). Returns a scalar on the inputs' device.
    """
    check_sigma(sigma)
    x2, y2 = check_pair(x, y)
    m = x2.shape[0]
    work = compute_dtype_for(x2.device, compute_dtype)
    with no_autocast(x2.device):
        k_x = centered_gaussian_kernel(x2.to(work), sigma)
        k_y = centered_gaussian_kernel(y2.to(work), sigma)
        value = (k_x * k_y.T).sum() / float((m - 1) ** 2)
    return value.to(result_dtype_for(x, y))
