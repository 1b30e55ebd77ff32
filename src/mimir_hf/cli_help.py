"""What `--help` of a recipe shows: its docstring, `--config`, and its own options before the ~110
stock `TrainingArguments` that every transformers trainer takes (those come last, with a link)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainingArguments

__all__ = ["arrange_help"]

_STOCK_TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The recipe's docstring as written (its example commands keep their lines), defaults shown, and each
    option under its one documented name (`--output_dir`, not also `--output-dir`)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        if action.nargs == 0:
            return next((name for name in action.option_strings if name.startswith("--")), action.option_strings[0])
        return f"{action.option_strings[0]} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def _own_fields(dataclass_type: type) -> list[str]:
    """The fields a TrainingArguments subclass declares or re-declares (a changed default) above the stock class."""
    names: list[str] = []
    for cls in reversed(dataclass_type.__mro__):
        if issubclass(cls, TrainingArguments) and cls is not TrainingArguments:
            names += [name for name in cls.__dict__.get("__annotations__", {}) if name not in names]
    return names


def arrange_help(
    parser: argparse.ArgumentParser, dataclass_types: Sequence[type], default_config: str | Path | None, description: str | None
) -> None:
    """`--help` shows `--config` and the recipe's own options first, transformers' ~110 stock training options last."""
    parser.usage = "%(prog)s [--config FILE.yaml] [--option value ...]"
    parser.description = description
    parser.formatter_class = _HelpFormatter
    actions: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:  # a boolean has two: `--flag` and `--no_flag`
        actions.setdefault(action.dest, []).append(action)
    parser._optionals._group_actions[:] = [action for action in parser._optionals._group_actions if action.dest == "help"]
    config_help = "A YAML file of `option: value` lines; options on the command line override it"
    if default_config is not None:
        config_help += f" (without --config: {Path(default_config).name}, the quickstart)"
    parser.add_argument_group("Config").add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
    stock: list[str] = []
    # the training arguments' own options (the method) come right after the first group (the model)
    training = [dtype for dtype in dataclass_types if issubclass(dtype, TrainingArguments)]
    others = [dtype for dtype in dataclass_types if dtype not in training]
    for dataclass_type in others[:1] + training + others[1:]:
        names = [f.name for f in dataclasses.fields(dataclass_type) if f.init]
        title = dataclass_type.__name__
        if issubclass(dataclass_type, TrainingArguments):
            own = _own_fields(dataclass_type)
            stock += [name for name in names if name not in own]
            names, title = own, f"{title} (its own options and the defaults it changes)"
        summary = (dataclass_type.__doc__ or "").strip().split("\n")[0]
        if summary.startswith(dataclass_type.__name__ + "("):  # the signature dataclasses write when there is no docstring
            summary = ""
        group = parser.add_argument_group(title, summary or None)
        group._group_actions.extend(action for name in names for action in actions.get(name, []))
    if stock:
        group = parser.add_argument_group("transformers TrainingArguments (stock)", f"Documented at {_STOCK_TRAINING_ARGUMENTS_DOCS}")
        group._group_actions.extend(action for name in stock for action in actions.get(name, []))
