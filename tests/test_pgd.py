"""The shared PGD core, tested against the maths (projection, closed-form linear worst case) and its contract."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mimir_hf.attacks import cross_entropy_objective, pgd, project_l2, project_linf


class TwoClassLinear(nn.Module):
    def __init__(self, dim: int, generator: torch.Generator):
        super().__init__()
        self.linear = nn.Linear(dim, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(2, dim, generator=generator))
            self.linear.bias.copy_(torch.randn(2, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    epsilon=st.sampled_from([0.0, 1 / 255, 8 / 255, 0.1, 0.5]),
    steps=st.integers(0, 4),
    random_start=st.booleans(),
)
def test_output_stays_in_the_ball_and_the_box(seed, epsilon, steps, random_start):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 5, 5, generator=generator)
    w = torch.randn(3 * 5 * 5, generator=generator)
    adversarial = pgd(lambda z: (z.flatten(1) @ w) ** 2, x, epsilon=epsilon, step_size=epsilon / 2 + 0.01, steps=steps,
                      random_start=random_start, generator=generator)
    assert ((adversarial - x).abs() <= epsilon + 1e-7).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    if epsilon == 0:
        assert torch.equal(adversarial, x)


def test_projection_is_the_nearest_point_of_ball_and_box():
    x = torch.tensor([[0.0, 0.5, 1.0, 0.02]])
    candidate = torch.tensor([[-0.3, 0.9, 1.4, 0.0]])
    torch.testing.assert_close(project_linf(candidate.clone(), x, 0.1), torch.tensor([[0.0, 0.6, 1.0, 0.0]]))


# The dual norm of the threat model's ball: the most a perturbation of size ε can move w·x is ε‖w‖_dual.
DUAL = {"Linf": lambda w: w.abs().sum(), "L2": lambda w: w.norm()}


@pytest.mark.parametrize("norm, max_epsilon, steps, atol", [("Linf", 0.1, 3, 1e-5), ("L2", 0.25, 30, 1e-4)])
@pytest.mark.parametrize("seed", range(3))
def test_linear_two_class_matches_closed_form_worst_case(seed, norm, max_epsilon, steps, atol):
    """For f(x) = w·x + b the worst perturbation lowers the margin by exactly ε‖w₁ − w₀‖ in the dual norm
    (‖·‖₁ for L∞, ‖·‖₂ for L2). L2 steps converge on the direction geometrically, hence more of them."""
    generator = torch.Generator().manual_seed(seed)
    dim = 20
    model = TwoClassLinear(dim, generator).eval()
    with torch.no_grad():  # put the decision boundary through the middle of the data
        model.linear.bias.copy_(-0.5 * model.linear.weight.sum(1))
    x = 0.3 + 0.4 * torch.rand(256, dim, generator=generator)  # away from the box edges
    with torch.no_grad():
        logits = model(x)
    labels = logits.argmax(1)
    delta_w = model.linear.weight[1] - model.linear.weight[0]
    dual = DUAL[norm](delta_w)
    sign = torch.where(labels == 1, 1.0, -1.0)
    margins = sign * (logits[:, 1] - logits[:, 0])
    ratios = (margins / dual).sort().values
    epsilon = min(max_epsilon, (ratios[127] + ratios[128]).item() / 2)  # about half robust, no point on the boundary
    expected_robust = (margins > epsilon * dual).float().mean()

    adversarial = pgd(cross_entropy_objective(model, labels), x.view(256, 1, 1, dim), epsilon=epsilon,
                      step_size=epsilon, steps=steps, random_start=True, generator=generator, norm=norm)
    with torch.no_grad():
        adv_logits = model(adversarial)
        robust = (adv_logits.argmax(1) == labels).float().mean()
        adv_margins = sign * (adv_logits[:, 1] - adv_logits[:, 0])
    assert 0 < expected_robust < 1
    assert robust == expected_robust
    torch.testing.assert_close(adv_margins, margins - epsilon * dual, atol=atol, rtol=0)


def test_attack_leaves_parameter_grads_and_modes_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    model.train()
    model[2].eval()  # a submodule deliberately in eval mode
    existing = torch.full_like(model[1].weight, 7.0)
    model[1].weight.grad = existing.clone()
    x = torch.rand(5, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 1])
    pgd(cross_entropy_objective(model, labels), x, epsilon=0.1, step_size=0.05, steps=3, model=model, model_mode="eval")
    assert torch.equal(model[1].weight.grad, existing)
    assert model[3].weight.grad is None
    assert model.training and model[1].training and not model[2].training


def test_restarts_keep_the_successful_run_per_sample():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).eval()
    x = torch.rand(16, 3, 2, 2)
    labels = model(x).argmax(1)
    objective = cross_entropy_objective(model, labels)
    fooled = lambda z: model(z).argmax(1) != labels  # noqa: E731
    single = pgd(objective, x, epsilon=0.05, step_size=0.02, steps=1, generator=torch.Generator().manual_seed(0))
    multi = pgd(objective, x, epsilon=0.05, step_size=0.02, steps=1, restarts=4, is_successful=fooled,
                generator=torch.Generator().manual_seed(0))
    assert fooled(multi).sum() >= fooled(single).sum()
    assert ((multi - x).abs() <= 0.05 + 1e-7).all()


def test_works_under_no_grad_and_autocast():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    x = torch.rand(4, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0])
    objective = cross_entropy_objective(model, labels)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        adversarial = pgd(objective, x, epsilon=8 / 255, step_size=2 / 255, steps=2, random_start=False)
    assert adversarial.dtype == torch.float32
    assert ((adversarial - x).abs() <= 8 / 255 + 1e-7).all()
    # the gradient steps did the work (no random start to move the input): the loss went up
    with torch.no_grad():
        assert (objective(adversarial) > objective(x)).all()


def test_objective_independent_of_input_gives_random_start_only():
    x = torch.rand(2, 3, 4, 4)
    constant = torch.zeros(2, requires_grad=True)
    adversarial = pgd(lambda z: constant * 1.0, x, epsilon=0.1, step_size=0.05, steps=2, random_start=False)
    assert torch.equal(adversarial, x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": -0.1}, "epsilon must be >= 0"),
        ({"epsilon": 8.0}, "0-255|pixel range"),
        ({"steps": -1}, "steps"),
        ({"restarts": 0}, "restarts"),
    ],
)
def test_bad_budgets_raise(kwargs, message):
    base = {"epsilon": 0.1, "step_size": 0.01, "steps": 1}
    with pytest.raises(ValueError, match=message):
        pgd(lambda z: z.flatten(1).sum(1), torch.rand(2, 3, 4, 4), **{**base, **kwargs})


def test_pixels_outside_unit_range_are_rejected():
    with pytest.raises(ValueError, match="0-255"):
        pgd(lambda z: z.flatten(1).sum(1), torch.rand(2, 3, 4, 4) * 255, epsilon=0.1, step_size=0.01, steps=1)


def test_parameters_are_frozen_during_the_attack_and_restored_after():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Linear(8, 3))
    model[1].bias.requires_grad_(False)  # a parameter the user froze stays frozen
    seen = []

    def objective(z):
        seen.append([p.requires_grad for p in model.parameters()])
        return model(z).sum(1)

    pgd(objective, torch.rand(2, 3, 4, 4), epsilon=0.1, step_size=0.05, steps=2, model=model)
    assert seen and all(not any(flags) for flags in seen)
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]
    pgd(objective, torch.rand(2, 3, 4, 4), epsilon=0.1, step_size=0.05, steps=1, model=model, freeze_parameters=False)
    assert seen[-1] == [True, False, True, True]


def test_gaussian_start_is_trades_start():
    """start='gaussian' begins at x + 0.001 · N(0, 1) (TRADES, the reference), not anywhere in the ε-ball."""
    clean = torch.full((64, 3, 8, 8), 0.5)
    never_called = lambda x: (_ for _ in ()).throw(AssertionError("no gradient step at steps=0"))  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    gaussian = pgd(never_called, clean, epsilon=8 / 255, step_size=0.0, steps=0, start="gaussian", generator=generator)
    uniform = pgd(never_called, clean, epsilon=8 / 255, step_size=0.0, steps=0, generator=generator)
    assert abs((gaussian - clean).std().item() - 0.001) < 1e-4
    assert abs((uniform - clean).std().item() - (8 / 255) / 3**0.5) < 1e-3
    with pytest.raises(ValueError, match="start must be"):
        pgd(never_called, clean, epsilon=8 / 255, step_size=0.0, steps=0, start="normal")


# ------------------------------------------------------------------------------------------------ L2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), epsilon=st.sampled_from([0.0, 0.1, 0.5, 2.0]), steps=st.integers(0, 4),
       random_start=st.booleans())
def test_l2_output_stays_in_the_ball_and_the_box(seed, epsilon, steps, random_start):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 5, 5, generator=generator)
    w = torch.randn(3 * 5 * 5, generator=generator)
    adversarial = pgd(lambda z: (z.flatten(1) @ w) ** 2, x, epsilon=epsilon, step_size=epsilon / 2 + 0.01, steps=steps,
                      random_start=random_start, generator=generator, norm="L2")
    assert ((adversarial - x).flatten(1).norm(dim=1) <= epsilon + 1e-5).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    if epsilon == 0:
        assert torch.equal(adversarial, x)


def test_l2_projection_scales_onto_the_sphere_and_clips():
    x = torch.full((2, 4), 0.5)
    candidate = x + torch.tensor([[0.3, 0.4, 0.0, 0.0], [0.03, 0.04, 0.0, 0.0]])
    projected = project_l2(candidate.clone(), x, 0.25)
    torch.testing.assert_close(projected[0], torch.tensor([0.65, 0.7, 0.5, 0.5]))  # 0.5-long step scaled to 0.25
    torch.testing.assert_close(projected[1], candidate[1])  # already inside: unchanged
    near_edge = project_l2(torch.tensor([[1.2, 0.5]]), torch.tensor([[0.9, 0.5]]), 1.0)
    torch.testing.assert_close(near_edge, torch.tensor([[1.0, 0.5]]))


def test_unknown_norm_is_a_clear_error():
    with pytest.raises(ValueError, match="norm must be one of"):
        pgd(lambda z: z.sum((1, 2, 3)), torch.rand(1, 3, 2, 2), epsilon=0.1, step_size=0.1, steps=1, norm="L1")


@pytest.mark.parametrize("where", ["pgd", "apgd", "finetuning", "pretraining", "evaluation"])
def test_every_budget_goes_through_one_check(where, tmp_path):
    """8 (grey levels) is refused with the same message wherever a budget enters."""
    from mimir_hf.attacks import apgd
    from mimir_hf.evaluation import parse_budget
    from mimir_hf.finetuning import AdversarialTrainingArguments
    from mimir_hf.pretraining import MimirTrainingArguments

    x = torch.rand(1, 3, 4, 4)
    enter = {
        "pgd": lambda: pgd(lambda z: z.sum((1, 2, 3)), x, epsilon=8.0, step_size=0.01, steps=1),
        "apgd": lambda: apgd(lambda z: z.sum((1, 2, 3)), x, epsilon=8.0, steps=1),
        "finetuning": lambda: AdversarialTrainingArguments(output_dir=str(tmp_path), attack_epsilon=8.0, use_cpu=True),
        "pretraining": lambda: MimirTrainingArguments(output_dir=str(tmp_path), attack_epsilon=8.0, use_cpu=True),
        "evaluation": lambda: parse_budget("8"),
    }[where]
    with pytest.raises(ValueError, match=r"larger than the whole \[0, 1\] pixel range.*not 0-255 grey levels"):
        enter()
