"""Matrix-based Rényi α-entropy mutual information (Sánchez Giraldo, Rao & Príncipe; Yu et al.).

An alternative to nHSIC from the same line of work as MIMIR: it estimates entropies
directly from the eigenvalues of trace-normalised Gram matrices, with no density estimate,
and its mutual information I = S(X) + S(Y) − S(X, Y) is in bits, which makes values
comparable across batch sizes up to log2 m. Costs three symmetric eigendecompositions of
m × m matrices, so it is slower than nHSIC for large batches.
"""

from __future__ import annotations

import math

import torch

from .kernels import check_pair, check_sigma, compute_dtype_for, gaussian_kernel, no_autocast, result_dtype_for

__all__ = ["matrix_renyi_entropy", "renyi_mutual_information", "trace_normalized_gram"]


def _check_alpha(alpha: float) -> None:
    """α = 1 is the Shannon limit, where the closed form divides by zero; α ≤ 0 is not an entropy order."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"`alpha` (the Rényi order) must be a finite number > 0, got {alpha!r}; MIMIR uses 1.01.")
    if alpha == 1:
        raise ValueError(
            "`alpha` = 1 (Shannon entropy) makes 1/(1 − α) infinite in the matrix Rényi formula; "
            "use an order close to 1 such as alpha=1.01, which approximates it."
        )


def trace_normalized_gram(a: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """A = K / tr(K): a unit-trace positive semi-definite matrix, i.e. a valid "density matrix" to take entropies of."""
    kernel = gaussian_kernel(a, sigma)
    return kernel / kernel.diagonal().sum()


def matrix_renyi_entropy(gram: torch.Tensor, alpha: float = 1.01) -> torch.Tensor:
    """S_α(A) = 1/(1 − α) · log2 Σ_i λ_i(A)^α for a unit-trace PSD matrix A.

    The eigenvalues of a Gram matrix are ≥ 0 in exact arithmetic; round-off leaves some tiny
    negative ones, which a fractional power would turn into NaN. They are clamped to the
    smallest positive normal number rather than to 0 so that the gradient of λ^α stays finite
    for orders α < 1 too. `eigvalsh` is used because its backward pass involves only the
    eigenvectors, not 1/(λ_i − λ_j), so repeated eigenvalues do not break the gradient.
    """
    _check_alpha(alpha)
    symmetric = 0.5 * (gram + gram.T)
    eigenvalues = torch.linalg.eigvalsh(symmetric).clamp_min(torch.finfo(gram.dtype).tiny)
    return torch.log2(eigenvalues.pow(alpha).sum()) / (1.0 - alpha)


def renyi_mutual_information(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 1.01,
    sigma: float = 5.0,
    *,
    compute_dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    """I_α(X; Y) = S_α(A_x) + S_α(A_y) − S_α(A_xy) in bits, with A_xy = A_x ∘ A_y / tr(A_x ∘ A_y).

    The Hadamard product of the two Gram matrices is the Gram matrix of the product kernel
    on the joint samples (x_i, y_i), which is how the joint entropy is obtained without a
    joint density. The value lies in [0, log2 m] up to round-off: 0 as σ → ∞ (every Gram
    matrix becomes rank one), log2 m as σ → 0 (every Gram matrix becomes I / m).

    Args:
        x, y: batches with the same number of samples m ≥ 2 (first dimension); each sample is flattened.
        alpha: Rényi order, > 0 and ≠ 1.
        sigma: kernel width, relative to √d of each side (the same kernel as nHSIC).
        compute_dtype: as for `hsic_normalized_cca`; autocast is disabled inside. The eigendecomposition
            checks convergence on the host, so this estimator synchronises a GPU once per call.

    Returns:
        A scalar on the inputs' device, float64 for float64 inputs and float32 otherwise.

    Raises:
        ValueError: one sample, different batch sizes or devices, σ ≤ 0, α ≤ 0 or α = 1.
        torch.linalg.LinAlgError: if an eigendecomposition does not converge (e.g. NaN inputs).
    """
    check_sigma(sigma)
    _check_alpha(alpha)
    x2, y2 = check_pair(x, y)
    work = compute_dtype_for(x2.device, compute_dtype)
    with no_autocast(x2.device):
        a_x = trace_normalized_gram(x2.to(work), sigma)
        a_y = trace_normalized_gram(y2.to(work), sigma)
        joint = a_x * a_y
        joint = joint / joint.diagonal().sum()
        value = (
            matrix_renyi_entropy(a_x, alpha)
            + matrix_renyi_entropy(a_y, alpha)
            - matrix_renyi_entropy(joint, alpha)
        )
    return value.to(result_dtype_for(x, y))
