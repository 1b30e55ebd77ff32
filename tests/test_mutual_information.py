"""Tests of the MI estimators against their mathematical definitions, and of the penalty's failure handling."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mimir_hf.mutual_information import (
    ESTIMATORS,
    MIPenaltyResult,
    MutualInformationPenalty,
    centered_gaussian_kernel,
    gaussian_kernel,
    hsic_biased,
    hsic_normalized_cca,
    renyi_mutual_information,
)

ALL_ESTIMATORS = [hsic_normalized_cca, hsic_biased, renyi_mutual_information]


# --- plain float64 references, written straight from MIMIR.md -------------------------------------


def reference_kernel(a: np.ndarray, sigma: float) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    m, d = a.shape
    k = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            k[i, j] = math.exp(-float(np.sum((a[i] - a[j]) ** 2)) / (2 * sigma**2 * d))
    return k


def reference_centering(m: int) -> np.ndarray:
    return np.eye(m) - np.ones((m, m)) / m


def reference_nhsic(x: np.ndarray, y: np.ndarray, sigma: float, epsilon: float) -> float:
    m = x.shape[0]
    h = reference_centering(m)
    kx = reference_kernel(x, sigma) @ h
    ky = reference_kernel(y, sigma) @ h
    rx = kx @ np.linalg.inv(kx + epsilon * m * np.eye(m))
    ry = ky @ np.linalg.inv(ky + epsilon * m * np.eye(m))
    total = 0.0
    for i in range(m):
        for j in range(m):
            total += rx[i, j] * ry[j, i]
    return total


def reference_hsic_biased(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    m = x.shape[0]
    h = reference_centering(m)
    return float(np.trace(reference_kernel(x, sigma) @ h @ reference_kernel(y, sigma) @ h)) / (m - 1) ** 2


def reference_renyi_entropy(a: np.ndarray, alpha: float) -> float:
    eigenvalues = np.clip(np.linalg.eigvalsh(a), 0.0, None)
    return float(np.log2(np.sum(eigenvalues**alpha)) / (1 - alpha))


def reference_renyi_mi(x: np.ndarray, y: np.ndarray, alpha: float, sigma: float) -> float:
    kx = reference_kernel(x, sigma)
    ky = reference_kernel(y, sigma)
    ax = kx / np.trace(kx)
    ay = ky / np.trace(ky)
    joint = ax * ay / np.trace(ax * ay)
    return (
        reference_renyi_entropy(ax, alpha) + reference_renyi_entropy(ay, alpha) - reference_renyi_entropy(joint, alpha)
    )


def dependent_pair(seed: int, m: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 10, generator=generator, dtype=torch.float64)
    weight = torch.randn(10, 10, generator=generator, dtype=torch.float64)
    y = torch.tanh(x @ weight) + 0.1 * torch.randn(m, 10, generator=generator, dtype=torch.float64)
    return x, y


# --- agreement with the definitions ----------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 5.0])
def test_gaussian_kernel_matches_definition(sigma: float) -> None:
    a = torch.randn(9, 2, 3, 2, dtype=torch.float64)
    expected = reference_kernel(a.numpy(), sigma)
    np.testing.assert_allclose(gaussian_kernel(a, sigma).numpy(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        centered_gaussian_kernel(a, sigma).numpy(), expected @ reference_centering(9), rtol=1e-10, atol=1e-13
    )


@pytest.mark.parametrize(("sigma", "epsilon"), [(5.0, 1e-5), (0.7, 1e-3), (2.0, 1e-2)])
def test_hsic_normalized_cca_matches_reference(sigma: float, epsilon: float) -> None:
    x = torch.randn(12, 3, 2, 2, dtype=torch.float64)  # flattened per sample: d = 12
    y = torch.randn(12, 5, dtype=torch.float64) + x.reshape(12, -1)[:, :5] ** 2
    expected = reference_nhsic(x.numpy(), y.numpy(), sigma, epsilon)
    value = hsic_normalized_cca(x, y, sigma=sigma, epsilon=epsilon)
    assert value.dtype == torch.float64 and value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("sigma", [0.5, 5.0])
def test_hsic_biased_matches_reference(sigma: float) -> None:
    x = torch.randn(10, 4, dtype=torch.float64)
    y = torch.sin(3 * x[:, :2]) + 0.1 * torch.randn(10, 2, dtype=torch.float64)
    expected = reference_hsic_biased(x.numpy(), y.numpy(), sigma)
    assert hsic_biased(x, y, sigma=sigma).item() == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("alpha", "sigma"), [(1.01, 5.0), (1.01, 0.5), (2.0, 1.0), (0.5, 1.0)])
def test_renyi_matches_reference(alpha: float, sigma: float) -> None:
    x = torch.randn(11, 6, dtype=torch.float64)
    y = x[:, :3] * 2 + 0.3 * torch.randn(11, 3, dtype=torch.float64)
    expected = reference_renyi_mi(x.numpy(), y.numpy(), alpha, sigma)
    value = renyi_mutual_information(x, y, alpha=alpha, sigma=sigma)
    assert value.item() == pytest.approx(expected, rel=1e-7, abs=1e-10)


def test_float32_inputs_give_float32_close_to_float64() -> None:
    x, y = dependent_pair(0, m=32)
    for estimator in ALL_ESTIMATORS:
        exact = estimator(x, y)
        single = estimator(x.float(), y.float())
        assert single.dtype == torch.float32 and single.device == x.device
        assert single.item() == pytest.approx(exact.item(), rel=1e-5)


def test_distances_are_robust_to_a_large_offset() -> None:
    """The Gram trick without re-centring would lose ~12 of 16 digits on rows this far from the origin."""
    x, y = dependent_pair(1, m=16)
    for estimator in ALL_ESTIMATORS:
        assert estimator(x + 1e6, y - 1e6).item() == pytest.approx(estimator(x, y).item(), rel=1e-6)


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(2, 20), estimator=st.sampled_from(ALL_ESTIMATORS))
def test_joint_batch_permutation_invariance(seed: int, m: int, estimator) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 2, 3, generator=generator, dtype=torch.float64)
    y = x.reshape(m, -1)[:, :4] ** 2 + torch.randn(m, 4, generator=generator, dtype=torch.float64)
    perm = torch.randperm(m, generator=generator)
    assert estimator(x[perm], y[perm]).item() == pytest.approx(estimator(x, y).item(), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda f: f.__name__)
def test_dependent_scores_higher_than_independent(estimator) -> None:
    """Shuffling y against x keeps both marginals (so both kernel spectra) and destroys only the dependence.

    Comparing against a fresh independent sample of a *different* distribution would not be a
    fair test for nHSIC: its value depends on each side's kernel spectrum as well.
    """
    for seed in range(4):
        x, y = dependent_pair(seed)
        shuffled = y[torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(100 + seed))]
        assert estimator(x, y).item() > 1.1 * estimator(x, shuffled).item()


def test_wide_kernel_limit() -> None:
    """σ → ∞: every kernel entry → 1, so the centred kernel and every dependence measure → 0."""
    x, y = dependent_pair(2, m=16)
    assert centered_gaussian_kernel(x, sigma=1e6).abs().max().item() < 1e-11
    assert abs(hsic_biased(x, y, sigma=1e6).item()) < 1e-20
    assert abs(hsic_normalized_cca(x, y, sigma=1e6).item()) < 1e-6
    assert abs(renyi_mutual_information(x, y, sigma=1e6).item()) < 1e-6
    # and the approach is monotone over a few decades
    values = [hsic_normalized_cca(x, y, sigma=s).item() for s in (5.0, 50.0, 500.0)]
    assert values[0] > values[1] > values[2]


def test_narrow_kernel_limit() -> None:
    """σ → 0: K → I for distinct samples, which fixes every estimator at a data-independent value."""
    m, epsilon = 16, 1e-3
    x, y = dependent_pair(3, m=m)
    torch.testing.assert_close(gaussian_kernel(x, sigma=1e-3), torch.eye(m, dtype=torch.float64))
    # K̃ = H is a projection, so R = H / (1 + εm) and tr(R R) = (m − 1) / (1 + εm)².
    expected = (m - 1) / (1 + epsilon * m) ** 2
    assert hsic_normalized_cca(x, y, sigma=1e-3, epsilon=epsilon).item() == pytest.approx(expected, rel=1e-9)
    assert hsic_biased(x, y, sigma=1e-3).item() == pytest.approx(1 / (m - 1), rel=1e-9)
    assert renyi_mutual_information(x, y, sigma=1e-3).item() == pytest.approx(math.log2(m), rel=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sigma=st.floats(0.2, 20.0))
def test_renyi_bounds(seed: int, sigma: float) -> None:
    """For the Hadamard joint, max(S(X), S(Y)) ≤ S(X, Y) ≤ S(X) + S(Y), i.e. 0 ≤ I ≤ log2 m."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(10, 2, generator=generator, dtype=torch.float64) + x[:, :2]
    value = renyi_mutual_information(x, y, sigma=sigma).item()
    assert -1e-9 <= value <= math.log2(10) + 1e-9


# --- precision, devices, gradients ---------------------------------------------------------------


def test_bf16_autocast_gives_fp32_close_to_fp32() -> None:
    x = torch.rand(32, 3, 8, 8)
    layer = torch.nn.Linear(3 * 8 * 8, 48)
    fp32_latent = layer(x.flatten(1))
    for estimator in ALL_ESTIMATORS:
        reference = estimator(fp32_latent, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            latent = layer(x.flatten(1))
            assert latent.dtype == torch.bfloat16
            value = estimator(latent, x)
        assert value.dtype == torch.float32
        assert torch.isfinite(value)
        # the only difference left is the bf16 rounding of the latent itself
        assert value.item() == pytest.approx(reference.item(), rel=5e-2)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda f: f.__name__)
def test_gradients_flow_to_x(estimator) -> None:
    x, y = dependent_pair(4, m=16)
    x = x.float().requires_grad_(True)
    estimator(x, y.float()).backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda f: f.__name__)
def test_gradcheck(estimator) -> None:
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    # a small σ keeps the kernel far from constant, so the finite differences are informative
    assert torch.autograd.gradcheck(lambda a, b: estimator(a, b, sigma=0.7), (x, y))


# --- clear errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda f: f.__name__)
def test_bad_batches_raise(estimator) -> None:
    with pytest.raises(ValueError, match="at least 2 samples.*drop_last"):
        estimator(torch.randn(1, 4), torch.randn(1, 3))
    with pytest.raises(ValueError, match="batch sizes 4 and 5"):
        estimator(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="scalar"):
        estimator(torch.tensor(1.0), torch.randn(4, 3))
    with pytest.raises(ValueError, match="no features"):
        estimator(torch.randn(4, 0), torch.randn(4, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        estimator(np.zeros((4, 3)), torch.randn(4, 3))


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_sigma_raises(sigma: float) -> None:
    for estimator in ALL_ESTIMATORS:
        with pytest.raises(ValueError, match="sigma"):
            estimator(torch.randn(4, 3), torch.randn(4, 3), sigma=sigma)


@pytest.mark.parametrize("epsilon", [0.0, -1e-5])
def test_bad_epsilon_raises(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon.*> 0"):
        hsic_normalized_cca(torch.randn(4, 3), torch.randn(4, 3), epsilon=epsilon)


@pytest.mark.parametrize("alpha", [1.0, 0.0, -2.0])
def test_bad_alpha_raises(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        renyi_mutual_information(torch.randn(4, 3), torch.randn(4, 3), alpha=alpha)


# --- the penalty wrapper -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hsic_cca", "hsic", "renyi"])
def test_penalty_matches_estimator(name: str) -> None:
    latent = torch.randn(8, 5, 6, requires_grad=True)
    inputs = torch.rand(8, 3, 4, 4)
    penalty = MutualInformationPenalty(name, sigma=2.0, epsilon=1e-4, alpha=1.5)
    result = penalty(latent, inputs)
    assert isinstance(result, MIPenaltyResult)
    value, dropped = result
    assert not dropped and penalty.num_dropped == 0 and penalty.num_calls == 1
    assert value.dtype == torch.float32 and value.shape == () and value.device == latent.device
    kwargs = {"hsic_cca": {"epsilon": 1e-4}, "hsic": {}, "renyi": {"alpha": 1.5}}[name]
    assert value.item() == pytest.approx(ESTIMATORS[name](latent, inputs, sigma=2.0, **kwargs).item(), rel=1e-6)
    value.backward()
    assert torch.isfinite(latent.grad).all() and latent.grad.abs().sum() > 0


def test_penalty_is_fp32_under_autocast() -> None:
    layer = torch.nn.Linear(12, 16)
    inputs = torch.rand(8, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        latent = layer(inputs)
        value, dropped = MutualInformationPenalty()(latent, inputs)
    assert value.dtype == torch.float32 and not dropped and torch.isfinite(value)


def test_penalty_counts_linalg_failure(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def failing(x: torch.Tensor, y: torch.Tensor, sigma: float, epsilon: float) -> torch.Tensor:
        raise torch.linalg.LinAlgError("linalg.solve: The solver failed because the input matrix is singular.")

    monkeypatch.setitem(ESTIMATORS, "hsic_cca", failing)
    penalty = MutualInformationPenalty("hsic_cca")
    layer = torch.nn.Linear(6, 4)
    latent = layer(torch.randn(5, 6))
    with caplog.at_level(logging.WARNING):
        value, dropped = penalty(latent, torch.rand(5, 6))
    assert dropped and penalty.num_dropped == 1
    assert value.item() == 0.0 and value.dtype == torch.float32
    assert "dropped" in caplog.text and "LinAlgError" in caplog.text and "1 of 1" in caplog.text
    # still connected to the graph: every parameter receives a (zero) gradient, as DDP requires
    assert value.requires_grad
    value.backward()
    assert layer.weight.grad is not None and torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))


@pytest.mark.parametrize("name", ["hsic_cca", "hsic", "renyi"])
def test_penalty_drops_nan_without_returning_nan(name: str) -> None:
    penalty = MutualInformationPenalty(name)
    latent = torch.randn(6, 4)
    latent[2, 1] = float("nan")
    latent.requires_grad_(True)
    value, dropped = penalty(latent, torch.rand(6, 3))
    ok_value, ok_dropped = penalty(torch.randn(6, 4), torch.rand(6, 3))
    # flagged on the device (a bool tensor), counted, and never NaN; the trainer logs it when it logs
    assert isinstance(dropped, torch.Tensor) and dropped.dtype == torch.bool
    assert dropped and value.item() == 0.0 and not torch.isnan(value)
    assert not ok_dropped and torch.isfinite(ok_value)
    assert penalty.num_dropped == 1 and penalty.num_calls == 2
    value.backward()
    assert torch.equal(latent.grad, torch.zeros_like(latent))


def test_penalty_rejects_unknown_estimator_and_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"'hsic'.*'hsic_cca'.*'renyi'"):
        MutualInformationPenalty("mine")
    with pytest.raises(ValueError, match="sigma"):
        MutualInformationPenalty(sigma=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        MutualInformationPenalty(epsilon=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        MutualInformationPenalty("renyi", alpha=1.0)
    MutualInformationPenalty("hsic", epsilon=-1.0)  # an estimator without ε ignores it


def test_penalty_propagates_bad_batches() -> None:
    """A batch of one is a caller bug, not a numerical accident: it must raise, not be counted as a drop."""
    penalty = MutualInformationPenalty()
    with pytest.raises(ValueError, match="at least 2 samples"):
        penalty(torch.randn(1, 4), torch.rand(1, 3))
    assert penalty.num_dropped == 0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"sigma": 0.0}, "sigma"),
        ({"estimator": "mine"}, "estimator"),
        ({"compute_dtype": "float16"}, "compute_dtype"),
        ({"estimator": "renyi", "alpha": 1.0}, "alpha"),
    ],
)
def test_mi_settings_fail_where_they_are_set(tmp_path, values: dict, field: str) -> None:
    """The model config, the training arguments and the penalty refuse the same values at construction,
    with one rule, instead of at the first forward pass."""
    from mimir_hf.modeling import MimirConfig
    from mimir_hf.pretraining import MimirTrainingArguments

    with pytest.raises(ValueError, match=field):
        MutualInformationPenalty(**values)
    prefixed = {f"mi_{key}": value for key, value in values.items()}
    with pytest.raises(ValueError, match=f"mi_{field}"):
        MimirConfig(**prefixed)
    with pytest.raises(ValueError, match=f"mi_{field}"):
        MimirTrainingArguments(output_dir=str(tmp_path), report_to="none", **prefixed)
