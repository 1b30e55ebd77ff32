"""The L2 threat model end to end: PGD against the closed-form worst case of a linear model, AutoAttack L2
from pyautoattack, the report's labels and the gradient-masking checks measured in L2."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from mimir_hf.evaluation import evaluate_robustness
from mimir_hf.hub.eval_results import eval_result_files

from test_evaluation import TwoClassLinear, masked_problem

QUICK = dict(progress=False, plot=False, epsilon_sweep=(), norm="L2")


def l2_problem(n: int = 64, seed: int = 0):
    """A linear two-class model on points away from the box edges, so the L2 worst case is the textbook one."""
    generator = torch.Generator().manual_seed(seed)
    weight = 0.1 * torch.randn(3 * 4 * 4, generator=generator)
    x = 0.3 + 0.4 * torch.rand(n, 3, 4, 4, generator=generator)
    scores = x.flatten(1) @ weight
    bias = -float(scores.median())
    y = (scores + bias > 0).long()
    y[:4] = 1 - y[:4]
    return TwoClassLinear(weight, bias), x, y


def closed_form_l2_robust(model: TwoClassLinear, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> np.ndarray:
    """Correct clean and |f(x)| > ε‖w‖₂: the worst L2 perturbation moves x by ε along −sign·w/‖w‖."""
    with torch.no_grad():
        f = model.score(x)
    s = (2 * y - 1).float()
    return ((s * f > 0) & (s * f > epsilon * model.weight.detach().norm())).numpy()


@pytest.mark.parametrize("attack", ["pgd-20", "cw-20"])
@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.25])
def test_l2_pgd_matches_closed_form_on_linear_model(attack: str, epsilon: float) -> None:
    model, x, y = l2_problem()
    report = evaluate_robustness(model, x, labels=y, attacks=["clean", attack], epsilon=epsilon, step_size=epsilon / 4,
                                 **QUICK)
    expected = closed_form_l2_robust(model, x, y, epsilon)
    assert report.per_sample.correct[attack].tolist() == expected.tolist()
    assert report.accuracy(attack) < report.accuracy("clean")  # the test has teeth
    # measured in L2: inside the radius, and far outside any L∞ ball of the same ε/√d a sign step would give
    assert report.attacks[attack].max_perturbation <= epsilon + 1e-5
    assert report.attacks[attack].max_perturbation > 0.9 * epsilon


def test_l2_report_labels_its_threat_model(tmp_path) -> None:
    model, x, y = l2_problem()
    report = evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-5"], epsilon=0.5,
                                 epsilon_sweep=[0.25, 8.0], sweep_attack="pgd-5", norm="L2", output_dir=tmp_path,
                                 progress=False, plot=True)
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["threat_model"]["norm"] == "L2" and data["threat_model"]["epsilon_text"] == "0.5"
    assert set(data["attacks"]) == {"clean", "pgd-5", "pgd-5@eps=0.25", "pgd-5@eps=8"}
    assert "L2 ε = 0.5 in [0, 1] pixel space" in report.format_table()
    assert (tmp_path / "accuracy_vs_epsilon.png").is_file()
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["perturbation_within_budget"]["passed"] and "L2 ball" in checks["perturbation_within_budget"]["detail"]
    assert checks["large_epsilon_accuracy_near_zero"]["passed"]  # ε = 8 is the L2 large budget
    files = eval_result_files(dataclasses.replace(report, dataset="uoft-cs/cifar10"))
    (entry,) = yaml.safe_load(files[".eval_results/pgd-5-l2-eps0.5.yaml"])
    assert entry["value"] == data["attacks"]["pgd-5"]["accuracy"] and "L2 ε = 0.5" in entry["notes"]


def test_l2_gradient_masking_checks_fire_on_a_masked_model() -> None:
    model, x, y = masked_problem()
    with pytest.warns(UserWarning, match="GRADIENT-MASKING"):
        report = evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-10"], epsilon=0.5,
                                     sweep_attack="pgd-10", **{**QUICK, "epsilon_sweep": [8.0]})
    checks = {c.name: c.passed for c in report.checks}
    assert not checks["nonzero_input_gradients"]
    assert not checks["large_epsilon_accuracy_near_zero"]  # PGD cannot move a quantised input even at ε = 8
    assert report.accuracy("pgd-10") >= 0.9 * report.accuracy("clean")  # only the random start moves anything


def test_l2_budgets_may_exceed_one_but_linf_may_not() -> None:
    model, x, y = l2_problem(8)
    evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-1"], epsilon=2.0, **QUICK)
    with pytest.raises(ValueError, match="larger than the whole"):
        evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-1"], epsilon=2.0, progress=False, epsilon_sweep=())


def test_autoattack_l2_from_pyautoattack_finds_the_linear_worst_case(tmp_path) -> None:
    model, x, y = l2_problem(32)
    report = evaluate_robustness(model, x, labels=y, attacks=["clean", "autoattack"], epsilon=0.1,
                                 autoattack_version="custom", autoattack_attacks=["apgd-ce"], output_dir=tmp_path,
                                 **{**QUICK, "plot": False})
    expected = closed_form_l2_robust(model, x, y, 0.1)
    assert report.per_sample.correct["autoattack"].tolist() == expected.tolist()
    assert report.attacks["autoattack"].max_perturbation <= 0.1 + 1e-4
    assert "L2" in (tmp_path / "autoattack.log").read_text()
