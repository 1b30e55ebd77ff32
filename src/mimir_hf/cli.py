"""Argument parsing shared by every recipe: `--config file.yaml` plus command-line overrides.

`HfArgumentParser` reads either the command line or a YAML file; recipes want both (a config
per dataset × model size, and a quick `--learning_rate` override on top). The YAML values become
the parser's defaults, so anything on the command line wins, and a key that no dataclass knows is
an error naming the key — a typo in a config must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["parse_recipe_args", "load_yaml_config", "recipe_config_dict", "save_recipe_config"]


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a recipe config; it must be a flat mapping of dataclass field names to values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"Config file {str(path)!r} must hold a mapping of option names to values.")
    return data


def _known_fields(dataclass_types: Sequence[type]) -> set[str]:
    return {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    config = None
    rest: list[str] = []
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--config":
            config = next(iterator, None)
            if config is None:
                raise ValueError("--config needs a path to a YAML file.")
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return config, rest


def parse_recipe_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    default_config: str | Path | None = None,
) -> tuple[Any, ...]:
    """Parse `[--config FILE] [--field value ...]` into one instance of each dataclass.

    Args:
        dataclass_types: the dataclasses to fill, in the order they are returned.
        argv: the arguments (defaults to `sys.argv[1:]`).
        default_config: the YAML file to use when `--config` is not given (recipes use this
            for their no-argument quickstart).

    Raises:
        ValueError: on a config key or command-line flag that no dataclass declares.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = _split_config_flag(argv)
    config_path = config_path or (str(default_config) if default_config is not None else None)

    parser = HfArgumentParser(list(dataclass_types))
    if config_path is not None:
        values = load_yaml_config(config_path)
        known = _known_fields(dataclass_types)
        unknown = sorted(set(values) - known)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"Unknown option(s) in {config_path}: {', '.join(hints)}.")
        parser.set_defaults(**values)
        for action in parser._actions:  # a value from the file satisfies a required flag
            if action.dest in values:
                action.required = False
    try:
        return parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)
    except ValueError as error:
        raise ValueError(f"{error} Run with --help to list the options.") from None


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
