"""Run-level plumbing every recipe needs: where a run starts (afresh, or from the last checkpoint of an
unfinished run), what Ctrl-C says, a clean distributed exit, and the `recipe_config.yaml` record of the
arguments a run used (read back by `--config` and the model cards)."""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainingArguments

__all__ = [
    "checkpoint_folders",
    "finish_distributed",
    "last_complete_checkpoint",
    "recipe_config_dict",
    "refuse_fp16_attacks",
    "refuse_trainer_push",
    "resolve_resume",
    "save_recipe_config",
]

logger = logging.getLogger(__name__)

_LAST = ("last", "auto", "true", "True")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# `Trainer._save_checkpoint` writes this file last: a checkpoint folder without it was cut short by a kill
_TRAINER_STATE = "trainer_state.json"


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders in `output_dir`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and _CHECKPOINT.match(path.name)]
    return sorted(found, key=lambda path: int(_CHECKPOINT.match(path.name).group(1)))


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `output_dir` whose save finished, or None.

    transformers' `get_last_checkpoint` takes the highest number even when a kill cut that save short,
    and resuming from it then fails on a missing or truncated file; the folder is passed over, saying so.
    """
    for checkpoint in reversed(checkpoint_folders(output_dir)):
        if (checkpoint / _TRAINER_STATE).is_file():
            return str(checkpoint)
        logger.warning("%s is incomplete (its save was cut short): passed over.", checkpoint)
    return None


def resolve_resume(training_args: TrainingArguments) -> str | bool | None:
    """`resume_from_checkpoint: last` picks the newest complete checkpoint in `output_dir` (or starts afresh, saying so)."""
    resume = training_args.resume_from_checkpoint
    if resume not in _LAST:
        return resume
    output_dir = Path(training_args.output_dir)
    last = last_complete_checkpoint(output_dir)
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


def refuse_fp16_attacks(training_args: TrainingArguments, stage: str) -> None:
    """fp16 is refused while an attack runs: the attack's input gradient is not loss-scaled, so in float16
    it underflows to 0 and PGD takes sign(0) = 0 steps.

    The precision checked is the one the run will use, `mixed_precision`: `accelerate launch
    --mixed_precision fp16` sets it without the `fp16` flag.
    """
    if training_args.fp16 or getattr(training_args, "mixed_precision", "no") == "fp16":
        how = "" if training_args.fp16 else " (here from `accelerate launch --mixed_precision fp16` or its config)"
        raise ValueError(
            f"fp16 is not supported for {stage}{how}: the attack's input gradient is not loss-scaled, so in float16 "
            "it underflows to 0 and PGD takes sign(0) = 0 steps. Use bf16 (bf16=True: `--bf16 true`, or `accelerate launch "
            "--mixed_precision bf16`; same speed on Ampere and newer GPUs, no scaling needed) or full precision."
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
    """One flat mapping of every init field of the given dataclass instances (secrets left out).

    `fp16` and `bf16` record the precision the run used: `accelerate launch --mixed_precision bf16`
    sets it (TrainingArguments' `mixed_precision`) without the flags.
    """
    values: dict[str, Any] = {}
    for instance in instances:
        for f in dataclasses.fields(instance):
            if not f.init or "token" in f.name:
                continue
            values[f.name] = _plain(getattr(instance, f.name))
        precision = getattr(instance, "mixed_precision", None) if isinstance(instance, TrainingArguments) else None
        if precision in ("fp16", "bf16"):
            values[precision] = True
    return values


def save_recipe_config(output_dir: str | Path, *instances: Any, filename: str = "recipe_config.yaml") -> Path:
    """Write the arguments a run used, in a form `--config` reads back, so every output says how it was made."""
    path = Path(output_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe_config_dict(*instances), sort_keys=False), encoding="utf-8")
    return path
