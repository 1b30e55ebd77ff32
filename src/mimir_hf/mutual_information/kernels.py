"""Shared plumbing for the kernel estimators: input checks, precision and the Gaussian Gram matrix.

Every estimator here sees the same two hazards. First, the MI penalty is computed inside a
mixed-precision training step, and the quantities involved (a kernel whose entries all sit
near 1, centred so that only their tiny differences remain, then a nearly singular solve)
are hopeless in bf16/fp16; so autocast is switched off and the work is done in float64
where the device runs it at a useful rate, float32 elsewhere (`compute_dtype_for`). Second,
a wrong batch (one sample, two batch sizes) would still produce a number; it raises instead,
saying what to do.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

__all__ = [
    "centered_gaussian_kernel",
    "check_pair",
    "check_sigma",
    "COMPUTE_DTYPES",
    "compute_dtype_for",
    "float64_is_cheap",
    "flatten_batch",
    "gaussian_kernel",
    "no_autocast",
    "pairwise_squared_distances",
    "result_dtype_for",
]


def check_sigma(sigma: float) -> None:
    """Reject kernel widths that would divide by zero or flip the kernel into something unbounded."""
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(
            f"`sigma` (the Gaussian kernel width) must be a finite number > 0, got {sigma!r}. "
            "MIMIR uses sigma=5.0; the kernel divides squared distances by 2·sigma²·d, so sigma is "
            "already relative to the per-sample dimension d."
        )


def flatten_batch(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """View a batch as (samples, features), because the kernels compare whole samples, whatever their shape."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim == 0:
        raise ValueError(
            f"`{name}` is a scalar; pass a batch whose first dimension indexes the samples "
            "(e.g. shape (batch, ...))."
        )
    if tensor.is_complex():
        raise TypeError(f"`{name}` is complex ({tensor.dtype}); the Gaussian kernel needs real tensors.")
    num_samples = tensor.shape[0]
    if num_samples > 0 and tensor[0].numel() == 0:
        raise ValueError(f"`{name}` has no features per sample (shape {tuple(tensor.shape)}).")
    return tensor.reshape(num_samples, -1)


def check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of batches that an MI estimator compares sample by sample; return them flattened."""
    x2 = flatten_batch(x, "x")
    y2 = flatten_batch(y, "y")
    if x2.shape[0] != y2.shape[0]:
        raise ValueError(
            f"`x` and `y` must hold the same samples in the same order, but have batch sizes "
            f"{x2.shape[0]} and {y2.shape[0]} (shapes {tuple(x.shape)} and {tuple(y.shape)}). Pass the "
            "latent and the input of the same batch; flatten per sample, not across the batch."
        )
    if x2.shape[0] < 2:
        raise ValueError(
            f"Kernel MI estimators (HSIC, Rényi) need at least 2 samples per batch, got {x2.shape[0]}: "
            "with one sample the centred kernel is identically zero. Use a batch size >= 2 and "
            "`drop_last=True` in the DataLoader so that the final batch is never a single sample."
        )
    if x2.device != y2.device:
        raise ValueError(
            f"`x` is on {x2.device} but `y` is on {y2.device}; move both to the same device first."
        )
    return x2, y2


COMPUTE_DTYPES = ("auto", "float64", "float32")
"""Names a config may give for the MI compute dtype (`mi_compute_dtype`)."""

# CUDA architectures whose float64 throughput is at least half of float32 (P100, V100, A100,
# H100/H200, B200). Consumer and workstation parts run float64 at 1/32-1/64 of float32.
_FULL_RATE_FLOAT64_CAPABILITIES = {(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)}


def float64_is_cheap(device: torch.device) -> bool:
    """Whether `device` runs float64 at a useful rate: the CPU and data-centre CUDA GPUs do; MPS lacks it."""
    device = torch.device(device)
    if device.type == "cpu":
        return True
    if device.type == "cuda" and torch.cuda.is_available():
        return tuple(torch.cuda.get_device_capability(device)) in _FULL_RATE_FLOAT64_CAPABILITIES
    return False


def compute_dtype_for(device: torch.device, compute_dtype: torch.dtype | str | None = None) -> torch.dtype:
    """The dtype the kernels and solves run in.

    `None` or `"auto"`: float64 where it is cheap (`float64_is_cheap`), because the centred kernel
    lives on cancellations; float32 elsewhere (consumer GPUs, MPS), where the ridge ε m keeps the
    solve well posed and `benchmarks/mi_precision.py` measures the error against float64.
    """
    if isinstance(compute_dtype, str):
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"`compute_dtype` must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}.")
        compute_dtype = None if compute_dtype == "auto" else getattr(torch, compute_dtype)
    if compute_dtype is not None:
        if compute_dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"`compute_dtype` must be torch.float32 or torch.float64, got {compute_dtype}; "
                "half precision cannot resolve the centred kernel."
            )
        return compute_dtype
    return torch.float64 if float64_is_cheap(device) else torch.float32


def result_dtype_for(*tensors: torch.Tensor) -> torch.dtype:
    """Return float64 only for float64 inputs, else float32, so a penalty never silently upcasts an fp32 loss."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


@contextlib.contextmanager
def no_autocast(device: torch.device) -> Iterator[None]:
    """Switch autocast off for `device`, so the matmuls and solves below really run in the dtype we cast to."""
    try:
        context: contextlib.AbstractContextManager[object] = torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type autocast does not know: nothing to disable
        context = contextlib.nullcontext()
    with context:
        yield


def pairwise_squared_distances(a: torch.Tensor) -> torch.Tensor:
    """‖a_i − a_j‖² for the rows of `a`, exact zero on the diagonal and never negative.

    The Gram trick (‖a_i‖² + ‖a_j‖² − 2 a_i·a_j) is one matmul, but it cancels badly when the
    rows are far from the origin (e.g. images in [0, 1] with d = 150 528); subtracting the batch
    mean first leaves every distance unchanged and removes most of that cancellation. The clamp
    catches the remaining round-off, and the diagonal is set to zero explicitly (rather than
    through a square root, as `cdist` would) so that the gradient stays finite there.
    """
    a = a - a.mean(dim=0, keepdim=True)
    sq_norms = (a * a).sum(dim=1)
    distances = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (a @ a.T)
    distances = distances.clamp_min(0.0)
    off_diagonal = ~torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    return distances * off_diagonal


def gaussian_kernel(a: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """K_ij = exp(−‖a_i − a_j‖² / (2 σ² d)) on the rows of a (samples × d) batch.

    Dividing by d (the per-sample dimension) is MIMIR's choice: it makes one σ mean the same for
    a 3×32×32 image and a 257×768 latent, which is what lets one σ = 5 serve both sides of nHSIC.
    Computed in whatever floating dtype `a` has; callers cast first.
    """
    check_sigma(sigma)
    a = flatten_batch(a, "a")
    dim = a.shape[1]
    return torch.exp(-pairwise_squared_distances(a) / (2.0 * sigma * sigma * dim))


def centered_gaussian_kernel(a: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """K̃ = K H with H = I − 11ᵀ/m: removing the row means is what makes HSIC ignore constant offsets.

    K H subtracts each row's mean (it is not the doubly centred H K H); that is the form
    MIMIR.md defines nHSIC with, so it is kept verbatim. Every row of K̃ sums to zero, hence K̃
    is always singular, which is why nHSIC needs a ridge ε > 0.
    """
    kernel = gaussian_kernel(a, sigma)
    return kernel - kernel.mean(dim=1, keepdim=True)
