"""`recipe_config.yaml`: replayed with `--config`, it derives the learning rate again for the replay's batch;
it names the argument classes that wrote it; older files still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mimir_hf.cli import parse_recipe_args, save_recipe_config
from mimir_hf.data import DataArguments
from mimir_hf.evaluation import EvaluationArguments, RobustBenchArguments, parse_budget
from mimir_hf.hub.recipe_configs import chosen_settings
from mimir_hf.pretraining import MimirTrainingArguments, PretrainModelArguments
from mimir_hf.training.runs import RecipeConfig

PRETRAINING = (PretrainModelArguments, DataArguments, MimirTrainingArguments)
COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "cpu-v2"


def _recorded_run(tmp_path: Path) -> Path:
    arguments = parse_recipe_args(
        PRETRAINING, ["--output_dir", str(tmp_path / "run"), "--per_device_train_batch_size", "8", "--report_to", "none"]
    )
    assert arguments[2].learning_rate == pytest.approx(1.5e-4 * 8 / 256)
    return save_recipe_config(tmp_path / "run", *arguments)


def test_a_replayed_config_derives_the_learning_rate_for_its_own_batch(tmp_path):
    recorded = _recorded_run(tmp_path)
    _, _, doubled = parse_recipe_args(PRETRAINING, ["--config", str(recorded), "--per_device_train_batch_size", "16"])
    assert doubled.learning_rate == pytest.approx(2 * 1.5e-4 * 8 / 256)
    _, _, explicit = parse_recipe_args(
        PRETRAINING, ["--config", str(recorded), "--per_device_train_batch_size", "16", "--learning_rate", "1e-3"]
    )
    assert explicit.learning_rate == 1e-3
    # the file still says what the run used, and an explicit rate is recorded as given
    assert RecipeConfig.load(recorded).resolved["learning_rate"] == pytest.approx(1.5e-4 * 8 / 256)
    again = save_recipe_config(tmp_path / "explicit", *parse_recipe_args(PRETRAINING, ["--config", str(recorded),
                                                                                       "--learning_rate", "1e-3"]))
    assert RecipeConfig.load(again).arguments["learning_rate"] == 1e-3


def test_the_record_names_the_classes_that_wrote_it(tmp_path):
    record = RecipeConfig.load(_recorded_run(tmp_path))
    assert record.argument_classes == tuple(f"{c.__module__}.{c.__qualname__}" for c in PRETRAINING)
    defaults = record.default_arguments()
    assert defaults is not None and defaults["mi_weight"] == 1e-5 and defaults["learning_rate"] is None
    chosen, filtered = chosen_settings(record)
    assert filtered and "adam_beta2" not in chosen  # a default is not a choice
    assert chosen["learning_rate"] == pytest.approx(1.5e-4 * 8 / 256)  # the card shows the rate that ran
    foreign = RecipeConfig(arguments={}, argument_classes=("builtins.object",))
    assert foreign.default_arguments() is None  # only mimir_hf's own argument classes are built


@pytest.mark.parametrize("path", sorted(COMMITTED.glob("*/recipe_config.yaml")), ids=lambda p: p.parent.name)
def test_older_recipe_configs_still_load(path):
    """Files written before the record existed: every value is read, and a card shows them all."""
    record = RecipeConfig.load(path)
    assert record.argument_classes == () and record.arguments == yaml.safe_load(path.read_text())
    assert chosen_settings(record) == (record.arguments, False)
    if path.parent.name.startswith("eval-"):
        eval_args, _, _ = parse_recipe_args((EvaluationArguments, DataArguments, RobustBenchArguments), ["--config", str(path)])
        assert eval_args.attack_settings().epsilon_sweep == tuple(map(parse_budget, record.arguments["epsilon_sweep"]))
