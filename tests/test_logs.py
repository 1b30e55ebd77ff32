"""What a run's output looks like in a terminal and in a log file."""

from __future__ import annotations

import io

import pytest
import torch
from transformers import ProgressCallback, ViTConfig, ViTForImageClassification
from transformers.utils import logging as transformers_logging

from mimir_hf.training.progress import ProgressWithoutNestedBars, log_friendly_progress, quiet_single_shard_saves
from mimir_hf.modeling import MimirForPreTraining, mimir_config
from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments
from tiny_runs import COMMON, TINY_MAE, RandomImages, pretraining_trainer_for


@pytest.fixture
def _tqdm_hook_restored():
    yield
    transformers_logging.set_tqdm_hook(None)


def _tiny_classifier() -> ViTForImageClassification:
    return ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, image_size=8, patch_size=4, num_labels=3))


def _evaluating_trainer(tmp_path) -> MimirTrainer:
    torch.manual_seed(0)
    model = MimirForPreTraining(mimir_config("vit-t", 32, **TINY_MAE))
    args = MimirTrainingArguments(output_dir=str(tmp_path / "pre"), per_device_train_batch_size=8, per_device_eval_batch_size=8,
                                  **{**COMMON, "disable_tqdm": False, "max_steps": 2, "eval_strategy": "steps", "eval_steps": 1})
    return MimirTrainer(model=model, args=args, train_dataset=RandomImages(), eval_dataset=RandomImages())


def test_a_one_file_save_draws_no_bar(tmp_path, capsys, _tqdm_hook_restored):
    model = _tiny_classifier()
    quiet_single_shard_saves()
    model.save_pretrained(tmp_path / "quiet")
    assert "Writing model shards" not in capsys.readouterr().err
    model.save_pretrained(tmp_path / "sharded", max_shard_size="5KB")  # several files: the bar stays
    assert "Writing model shards" in capsys.readouterr().err


def test_no_nested_evaluation_bar_when_the_output_is_a_file(tmp_path, monkeypatch):
    log = io.StringIO()  # a log file: the cursor-up codes of a nested bar would stay in it as `[A`
    monkeypatch.setattr("sys.stderr", log)
    trainer = _evaluating_trainer(tmp_path)
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    assert ProgressWithoutNestedBars in kinds and ProgressCallback not in kinds
    trainer.train()  # evaluates inside training, where the stock evaluation bar is nested
    assert "2/2" in log.getvalue() and "\x1b[A" not in log.getvalue()


def test_a_terminal_keeps_transformers_bars(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    trainer = pretraining_trainer_for(tmp_path, disable_tqdm=False)
    assert ProgressCallback in [type(callback) for callback in trainer.callback_handler.callbacks]
    log_friendly_progress(trainer)  # idempotent on a terminal
    assert ProgressCallback in [type(callback) for callback in trainer.callback_handler.callbacks]


@pytest.mark.parametrize(("report_to", "told"), [(["tensorboard"], True), ([], False)])
def test_a_run_says_where_it_writes_and_how_to_watch_it(tmp_path, caplog, report_to, told):
    from transformers import TrainingArguments

    from mimir_hf.training.output_dir import announce_run

    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=report_to)
    with caplog.at_level("INFO", logger="mimir_hf.training.output_dir"):
        announce_run(args)
    assert f"Training into {tmp_path / 'run'}" in caplog.text
    assert (f"tensorboard --logdir {tmp_path / 'run'}" in caplog.text) == told
