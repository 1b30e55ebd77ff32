"""Run-level plumbing every recipe needs: where a run starts (afresh, or from the last checkpoint of an
unfinished run), what Ctrl-C says, a clean distributed exit, and the `recipe_config.yaml` record of the
arguments a run used (read back by `--config` and the model cards)."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainingArguments

from ..artefacts import RECIPE_CONFIG
from .learning_rate import ScaledLearningRateArguments

__all__ = [
    "RecipeConfig",
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
    """One flat mapping of every init field of the given dataclass instances (secrets left out), as `--config`
    replays it: a learning rate the run derived from `base_learning_rate` is written `null`, so that a replay
    derives it again for its own batch size; `fp16` and `bf16` record the precision the run used
    (`accelerate launch --mixed_precision bf16` sets TrainingArguments' `mixed_precision` without the flags)."""
    values: dict[str, Any] = {}
    for instance in instances:
        for f in dataclasses.fields(instance):
            if not f.init or "token" in f.name:
                continue
            values[f.name] = _plain(getattr(instance, f.name))
        precision = getattr(instance, "mixed_precision", None) if isinstance(instance, TrainingArguments) else None
        if precision in ("fp16", "bf16"):
            values[precision] = True
        if isinstance(instance, ScaledLearningRateArguments):
            values["learning_rate"] = instance.explicit_learning_rate
    return values


_RECORD = "_record"
_HEADER = (
    "# The arguments of a mimir_hf run: `--config <this file>` replays it. `_record` is not an option: it names\n"
    "# the argument classes that wrote the file and the values resolved at run time (learning_rate: null above\n"
    "# means the run derived it from base_learning_rate; the value it ran with is _record.resolved.learning_rate).\n"
)


@dataclasses.dataclass
class RecipeConfig:
    """`recipe_config.yaml`: the arguments a run used, and how they were written.

    Attributes:
        arguments: every option, as `--config` replays it.
        argument_classes: import paths of the dataclasses that parsed the arguments (their defaults tell a
            card which values the run chose); empty for a file written before they were recorded.
        resolved: values worked out when the run started, e.g. the `learning_rate` the scaling rule gave.
    """

    arguments: dict[str, Any]
    argument_classes: tuple[str, ...] = ()
    resolved: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_arguments(cls, *instances: Any) -> RecipeConfig:
        resolved = {
            "learning_rate": instance.learning_rate
            for instance in instances if isinstance(instance, ScaledLearningRateArguments)
        }
        return cls(
            arguments=recipe_config_dict(*instances),
            argument_classes=tuple(f"{type(i).__module__}.{type(i).__qualname__}" for i in instances),
            resolved=resolved,
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = RECIPE_CONFIG) -> RecipeConfig:
        """The parsed YAML of a recipe config: a recorded one, an older one (no record) or one written by hand."""
        arguments = dict(data)
        record = arguments.pop(_RECORD, None) or {}
        if not isinstance(record, Mapping):
            raise ValueError(f"{source}: {_RECORD} must be a mapping, got {type(record).__name__}.")
        return cls(
            arguments=arguments,
            argument_classes=tuple(record.get("argument_classes") or ()),
            resolved=dict(record.get("resolved") or {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> RecipeConfig:
        """`path` is the file or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / RECIPE_CONFIG
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} must hold a mapping of option names to values.")
        return cls.from_mapping(data, source=str(path))

    def to_yaml(self) -> str:
        document = dict(self.arguments)
        if self.argument_classes or self.resolved:
            document[_RECORD] = {"argument_classes": list(self.argument_classes), "resolved": dict(self.resolved)}
        return _HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)

    def save(self, output_dir: str | Path, filename: str = RECIPE_CONFIG) -> Path:
        path = Path(output_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    def default_arguments(self) -> dict[str, Any] | None:
        """What the recorded argument classes write when given nothing; None when the file names none, or one
        cannot be built (only mimir_hf's own dataclasses are)."""
        if not self.argument_classes:
            return None
        instances = []
        for name in self.argument_classes:
            module, _, qualname = name.rpartition(".")
            try:
                if not module.startswith("mimir_hf."):
                    return None
                cls = getattr(importlib.import_module(module), qualname)
                if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                    return None
                instances.append(cls())
            except Exception:  # noqa: BLE001 - a class since moved or changed: no defaults rather than wrong ones
                logger.info("%s names the argument class %s, which cannot be built here.", RECIPE_CONFIG, name)
                return None
        return recipe_config_dict(*instances)


def save_recipe_config(output_dir: str | Path, *instances: Any, filename: str = RECIPE_CONFIG) -> Path:
    """Write the arguments a run used, in a form `--config` reads back, so every output says how it was made."""
    return RecipeConfig.from_arguments(*instances).save(output_dir, filename)
