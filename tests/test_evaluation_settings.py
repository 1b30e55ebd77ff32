"""The attack options have one definition, `AttackSettings`: the command line builds it field by field,
every option reaches the run, and an ε-sweep the user gave is never replaced."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest
import torch

import mimir_hf.evaluation.from_args as from_args
import mimir_hf.evaluation.runner as runner
from mimir_hf.cli import parse_recipe_args
from mimir_hf.data import DataArguments
from mimir_hf.evaluation import (
    DEFAULT_EPSILON_SWEEP,
    DEFAULT_L2_EPSILON_SWEEP,
    AttackSettings,
    EvaluationArguments,
    evaluate_robustness,
    parse_budget,
)

# Options read by recipes/evaluate.py or by evaluate_from_args itself, not passed to evaluate_robustness.
NOT_PASSED_ON = {
    "protocol", "fail_on_check", "num_threads", "corruptions_dataset", "corruptions_config", "corruptions_split",
    "corruption_column", "severity_column",
}
# A valid value other than the default for every option that evaluate_robustness receives.
CHANGED_EVALUATION = {
    "model_name_or_path": "elsewhere", "output_dir": "elsewhere-eval", "attacks": ["clean", "pgd-3"], "norm": "L2",
    "epsilon": "4/255", "step_size": "1/255", "restarts": 2, "epsilon_sweep": ["2/255"], "sweep_attack": "pgd-5",
    "cw_steps": 7, "adaptive_steps": 7, "mi_weight": 0.5, "mi_compute_dtype": "float32", "autoattack_version": "custom",
    "autoattack_attacks": ["apgd-ce"], "square_queries": 9, "batch_size": 3, "seed": 5, "device": "cpu",
    "check_tolerance": 0.1, "large_epsilon_max_accuracy": 0.2, "no_progress": True, "resume": False,
}
CHANGED_DATA = {
    "dataset": "uoft-cs/cifar10", "dataset_config": "plain", "eval_split": "validation", "image_column": "img",
    "label_column": "fine_label", "image_size": 24, "max_eval_samples": 10, "eval_crop_fraction": 0.875,
}


@pytest.fixture
def recorded(monkeypatch):
    """The calls evaluate_from_args makes, each checked against the real evaluate_robustness signature."""
    calls = []

    def record(*args, **kwargs):
        bound = inspect.signature(runner.evaluate_robustness).bind(*args, **kwargs)
        assert not bound.arguments.get("options"), f"not a parameter of evaluate_robustness: {bound.arguments['options']}"
        calls.append(bound.arguments)

    monkeypatch.setattr(from_args, "evaluate_robustness", record)
    return calls


def test_every_evaluation_option_reaches_the_run(recorded):
    """A renamed or forgotten parameter would leave the call unchanged (or fail to bind): no option is dropped."""
    fields = {f.name for f in dataclasses.fields(EvaluationArguments)}
    assert set(CHANGED_EVALUATION) | NOT_PASSED_ON == fields, "a new option must reach the run or be listed here"
    from_args.evaluate_from_args(EvaluationArguments(), DataArguments())
    default = recorded[-1]
    for name, value in CHANGED_EVALUATION.items():
        from_args.evaluate_from_args(EvaluationArguments(**{name: value}), DataArguments())
        assert recorded[-1] != default, f"--{name} did not reach evaluate_robustness"
    for name, value in CHANGED_DATA.items():
        from_args.evaluate_from_args(EvaluationArguments(), DataArguments(**{name: value}))
        assert recorded[-1] != default, f"--{name} did not reach evaluate_robustness"


def test_command_line_defaults_are_the_settings_defaults():
    assert EvaluationArguments().attack_settings() == AttackSettings()


def test_an_explicit_l2_sweep_is_kept_and_the_default_is_the_norms(recorded, caplog):
    """`--norm L2` with the L∞ sweep typed out runs what was typed (with a warning), never a silent swap."""
    linf_sweep = ["1/255", "2/255", "4/255", "16/255", "64/255"]
    eval_args, data_args = parse_recipe_args(
        (EvaluationArguments, DataArguments), ["--norm", "L2", "--epsilon", "0.5", "--epsilon_sweep", *linf_sweep]
    )
    with caplog.at_level(logging.WARNING, logger="mimir_hf"):
        from_args.evaluate_from_args(eval_args, data_args)
    assert recorded[-1]["settings"].epsilon_sweep == tuple(parse_budget(e) for e in linf_sweep)
    assert "--epsilon_sweep" in caplog.text and "L2" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mimir_hf"):
        from_args.evaluate_from_args(EvaluationArguments(norm="L2", epsilon="0.5"), DataArguments())
    assert recorded[-1]["settings"].epsilon_sweep == DEFAULT_L2_EPSILON_SWEEP
    assert "L2 default" in caplog.text
    assert EvaluationArguments().attack_settings().epsilon_sweep == DEFAULT_EPSILON_SWEEP
    assert EvaluationArguments(epsilon_sweep=[]).attack_settings().epsilon_sweep == ()


def test_options_by_name_are_the_settings_fields():
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"epsilonn.*did you mean 'epsilon'"):
        evaluate_robustness(torch.nn.Flatten(), x, labels=y, epsilonn="8/255")
    with pytest.raises(TypeError, match="not both"):
        evaluate_robustness(torch.nn.Flatten(), x, AttackSettings(), labels=y, epsilon="8/255")
