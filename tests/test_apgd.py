"""APGD (the attack of APGD-AT) against its definition, on small models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mimir_hf.attacks import APGDTrace, apgd, apgd_checkpoint_iterations, cross_entropy_objective


def _paper_checkpoints(steps: int) -> list[int]:
    """Croce & Hein 2020: w_j = ⌈p_j T⌉ with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return [round(q * steps) - 1 for q in p[1:] if round(q * steps) <= steps]


def test_checkpoints_follow_the_paper():
    assert apgd_checkpoint_iterations(100) == _paper_checkpoints(100) == [21, 40, 56, 69, 79, 86, 92, 98]
    assert apgd_checkpoint_iterations(2) == [0, 1]  # the training setting: every iteration is a checkpoint
    assert apgd_checkpoint_iterations(10) == [1, 2, 3, 4, 5, 6, 7, 8, 9]  # k: 2, then max(2 - 1, 1) = 1


def reference_apgd_one_sample(f, x0, eps, steps, momentum=0.75):
    """Literal per-sample transcription of the schedule (no batching, plain Python control flow).

    `f(x)` returns (loss, gradient) of one sample. Returns (best point, step sizes used, halving decisions).
    """
    project = lambda v: torch.clamp(torch.min(torch.max(v, x0 - eps), x0 + eps), 0, 1)  # noqa: E731
    x, prev = x0.clone(), x0.clone()
    loss, grad = f(x)
    best, best_loss, best_grad = x.clone(), loss, grad.clone()
    eta, history = 2 * eps, [0.0]  # the table of iterate losses starts at 0 (module docstring)
    k, decr, kmin = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    since, halved_last, best_at_check = 0, True, best_loss
    etas, decisions = [], []
    for i in range(steps):
        etas.append(eta)
        a = 1.0 if i == 0 else momentum
        z = project(x + eta * torch.sign(grad))
        prev, x = x, project(x + a * (z - x) + (1 - a) * (x - prev))
        loss, grad = f(x)
        history.append(loss)
        if loss > best_loss:
            best, best_loss, best_grad = x.clone(), loss, grad.clone()
        since += 1
        if since == k:
            recent = history[-(k + 1) :]
            rises = sum(recent[j + 1] > recent[j] for j in range(k))
            halve = rises <= 0.75 * k or (not halved_last and best_at_check >= best_loss)
            decisions.append(halve)
            halved_last, best_at_check = halve, best_loss
            if halve:
                eta /= 2
                x, grad = best.clone(), best_grad.clone()
            since, k = 0, max(k - decr, kmin)
    return best, etas, decisions


class TinyNet(nn.Module):
    """Non-convex enough (tanh hidden layer) for the loss to oscillate under large steps."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3 * 4 * 4, 16)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        return self.out(torch.tanh(3 * self.hidden(x.flatten(1))))


@pytest.mark.parametrize("steps", [1, 2, 10, 25])
def test_apgd_matches_the_definition(steps):
    torch.manual_seed(0)
    model = TinyNet().double().eval()
    x = torch.rand(6, 3, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    eps = 0.3
    trace = APGDTrace()
    result = apgd(cross_entropy_objective(model, y), x, epsilon=eps, steps=steps, model=model, trace=trace)
    halvings = 0
    for i in range(len(x)):

        def f(v, i=i):
            v = v.clone().requires_grad_(True)
            loss = F.cross_entropy(model(v[None]), y[i : i + 1])
            (g,) = torch.autograd.grad(loss, [v])
            return float(loss.detach()), g

        best, etas, decisions = reference_apgd_one_sample(f, x[i], eps, steps)
        assert torch.allclose(result[i], best, atol=1e-12), f"sample {i}"
        assert [float(s[i]) for s in trace.step_sizes] == pytest.approx(etas)
        assert [bool(h[i]) for h in trace.halved] == decisions
        halvings += sum(decisions)
    assert trace.checkpoints == apgd_checkpoint_iterations(steps)
    if steps >= 10:
        assert halvings > 0, "the test should exercise the step halving"


def test_apgd_stays_in_the_ball_and_never_loses_to_the_start():
    torch.manual_seed(1)
    model = TinyNet().eval()
    x = torch.rand(8, 3, 4, 4)
    y = torch.randint(0, 5, (8,))
    objective = cross_entropy_objective(model, y)
    eps = 4 / 255
    adversarial = apgd(objective, x, epsilon=eps, steps=2, model=model)
    assert (adversarial - x).abs().max() <= eps + 1e-7 and adversarial.min() >= 0 and adversarial.max() <= 1
    with torch.no_grad():
        assert (objective(adversarial) >= objective(x) - 1e-6).all()
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())


def test_apgd_first_step_is_a_two_epsilon_sign_step():
    """With a = 1 on the first step and η₀ = 2ε, one step lands on the ball's corner sign(∇f) (a linear model)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.full((2, 3, 2, 2), 0.5)
    y = torch.tensor([0, 1])
    objective = cross_entropy_objective(model, y)
    adversarial = apgd(objective, x, epsilon=0.1, steps=1, model=model)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(xg).sum(), [xg])
    assert torch.allclose(adversarial, x + 0.1 * g.sign())


def test_apgd_rejects_bad_budgets():
    x = torch.rand(1, 3, 2, 2)
    with pytest.raises(ValueError, match="epsilon"):
        apgd(lambda v: v.sum((1, 2, 3)), x, epsilon=4, steps=2)
    with pytest.raises(ValueError, match="momentum"):
        apgd(lambda v: v.sum((1, 2, 3)), x, epsilon=0.1, steps=2, momentum=0)
