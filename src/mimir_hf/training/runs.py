"""Run-level plumbing every recipe needs: where to resume from, a clean distributed exit, and the
`recipe_config.yaml` record of the arguments a run used (read back by `--config` and the model cards)."""

from __future__ import annotations

import dataclasses
import enum
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

__all__ = ["finish_distributed", "recipe_config_dict", "refuse_trainer_push", "resolve_resume", "save_recipe_config"]

logger = logging.getLogger(__name__)

_LAST = ("last", "auto", "true", "True")


def resolve_resume(training_args: TrainingArguments) -> str | bool | None:
    """`resume_from_checkpoint: last` picks the newest checkpoint in `output_dir` (or starts afresh, saying so)."""
    resume = training_args.resume_from_checkpoint
    if resume not in _LAST:
        return resume
    output_dir = Path(training_args.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        logger.warning("resume_from_checkpoint=%s but %s holds no checkpoint: starting afresh.", resume, output_dir)
    return last


def refuse_trainer_push(training_args: TrainingArguments) -> None:
    """`push_to_hub` would upload through `Trainer.push_to_hub`, with a stock card and no robustness
    report; publishing goes through `mimir_hf.hub` (recipes/publish.py), which refuses a classifier
    card without clean, PGD and AutoAttack results."""
    if training_args.push_to_hub:
        raise ValueError(
            "push_to_hub is not supported here: it would publish a checkpoint without its robustness report. "
            "Train, evaluate (recipes/evaluate.py), then publish with recipes/publish.py "
            "(`--kind pretraining` for a pretraining checkpoint)."
        )


def finish_distributed() -> None:
    """Tear down the process group; without it rank 0 can abort at exit and the launcher reports failure."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _plain(value: Any) -> Any:
    """YAML-safe form of a dataclass value (enums by value, paths and other objects as strings)."""
    if isinstance(value, enum.Enum):  # before str: transformers' enums are str subclasses
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def recipe_config_dict(*instances: Any) -> dict[str, Any]:
    """One flat mapping of every init field of the given dataclass instances (secrets left out)."""
    values: dict[str, Any] = {}
    for instance in instances:
        for f in dataclasses.fields(instance):
            if not f.init or "token" in f.name:
                continue
            values[f.name] = _plain(getattr(instance, f.name))
    return values


def save_recipe_config(output_dir: str | Path, *instances: Any, filename: str = "recipe_config.yaml") -> Path:
    """Write the arguments a run used, in a form `--config` reads back, so every output says how it was made."""
    path = Path(output_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe_config_dict(*instances), sort_keys=False), encoding="utf-8")
    return path
