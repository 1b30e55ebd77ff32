"""Every attack budget of the training arguments reads `8/255` as the evaluation does, from Python, YAML
and the command line, and a run records the float."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from mimir_hf.cli import parse_recipe_args, save_recipe_config
from mimir_hf.data import DataArguments
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
from mimir_hf.pretraining import MimirTrainingArguments, PretrainModelArguments
from mimir_hf.validation import Budget

STAGES = {
    "pretraining": (PretrainModelArguments, DataArguments, MimirTrainingArguments),
    "finetuning": (ModelArguments, DataArguments, AdversarialTrainingArguments),
}


def _budget_like_fields(arguments: type) -> list[str]:
    """The attack radii and step sizes, found by name so that a new one cannot be left out of the check."""
    return [f.name for f in dataclasses.fields(arguments) if "attack" in f.name and f.name.endswith(("epsilon", "step_size"))]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_budget_field_is_a_budget(stage):
    arguments = STAGES[stage][-1]
    hints = typing.get_type_hints(arguments)
    names = _budget_like_fields(arguments)
    assert {"attack_epsilon", "attack_step_size"} <= set(names)
    for name in names:
        assert hints[name] is Budget or Budget in typing.get_args(hints[name]), name


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_fractions_from_yaml_and_the_command_line_are_recorded_as_floats(stage, tmp_path):
    arguments = STAGES[stage][-1]
    names = _budget_like_fields(arguments)
    config = tmp_path / "config.yaml"
    values = {name: f"{i + 1}/255" for i, name in enumerate(names)}
    config.write_text(yaml.safe_dump({**values, "output_dir": str(tmp_path / "out"), "use_cpu": True}), encoding="utf-8")
    *_, parsed = parse_recipe_args(STAGES[stage], ["--config", str(config)])
    for i, name in enumerate(names):
        assert type(getattr(parsed, name)) is float and getattr(parsed, name) == (i + 1) / 255, name
    *_, overridden = parse_recipe_args(STAGES[stage], ["--config", str(config), "--attack_epsilon", "4/255"])
    assert type(overridden.attack_epsilon) is float and overridden.attack_epsilon == 4 / 255
    recorded = yaml.safe_load(save_recipe_config(tmp_path / "run", overridden).read_text(encoding="utf-8"))
    assert recorded["attack_epsilon"] == 4 / 255 and isinstance(recorded["attack_epsilon"], float)
    assert recorded["attack_step_size"] == 2 / 255  # the YAML's fraction, as a float


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_bad_budgets_are_refused_with_the_field_name(stage, tmp_path):
    stage_args = STAGES[stage]
    with pytest.raises(ValueError, match=r"attack_step_size=8\.0 is larger than the whole \[0, 1\] pixel range"):
        parse_recipe_args(stage_args, ["--output_dir", str(tmp_path), "--attack_step_size", "8"])
    with pytest.raises(ValueError, match="attack_epsilon"):
        parse_recipe_args(stage_args, ["--output_dir", str(tmp_path), "--attack_epsilon", "eight/255"])
    with pytest.raises(ValueError, match="attack_epsilon=.* is not a number or a fraction such as '8/255'"):
        stage_args[-1](output_dir=str(tmp_path), use_cpu=True, attack_epsilon="8/zero")


def test_python_values_stay_as_given():
    args = AdversarialTrainingArguments(output_dir="unused", use_cpu=True, attack_epsilon="8/255", eval_attack_epsilon=None)
    assert args.attack_epsilon == 8 / 255 and args.eval_attack_epsilon is None and type(args.attack_step_size) is float
