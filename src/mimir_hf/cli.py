"""What every recipe shares on the command line: `--config file.yaml` plus overrides, and errors.

`HfArgumentParser` reads either the command line or a YAML file; recipes want both (a config
per dataset × model size, and a quick `--learning_rate` override on top). The YAML values become
the parser's defaults, so anything on the command line wins, and a key that no dataclass knows is
an error naming the key — a typo in a config must not be silently ignored. The command line reads
the way the YAML does: `--epsilon -8/255` is a value, `--attacks '[clean, pgd-20]'` a list, and an
abbreviated flag (`--num_train_epoch`) is refused rather than guessed.

`run_recipe` turns a user error (a bad path, a bad value) into one line on stderr and exit status 2;
`--debug` or `MIMIR_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError
from transformers import HfArgumentParser, TrainingArguments

from .cli_help import arrange_help
from .validation import check_training_length
from .training.progress import quiet_single_shard_saves
from .launch import is_main_process, launched_distributed, process_rank
from .training.runs import RecipeConfig
from .training.runs import recipe_config_dict, save_recipe_config  # re-exported: recipes import them from here

__all__ = [
    "DEBUG_ENV",
    "INTERRUPTED_EXIT_CODE",
    "USER_ERROR_EXIT_CODE",
    "parse_recipe_args",
    "load_yaml_config",
    "prepare_launch_environment",
    "recipe_config_dict",
    "run_recipe",
    "save_recipe_config",
]

logger = logging.getLogger(__name__)

DEBUG_ENV = "MIMIR_DEBUG"
USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130  # what a shell reports for a process ended by Ctrl-C (128 + SIGINT)
# argparse takes `-8/255` for a flag because only plain negative numbers count as values; a leading
# minus followed by a digit or a dot is always a value here (no recipe flag looks like that).
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a recipe config; it must be a flat mapping of dataclass field names to values (a recorded
    `recipe_config.yaml` also holds its `_record`, which is not an option and is left out)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"Config file {str(path)!r} is not valid YAML: {problem}{where}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"Config file {str(path)!r} must hold a mapping of option names to values.")
    return RecipeConfig.from_mapping(data, source=str(path)).arguments


# What other tools call some of our options; a user who types one is pointed to ours.
_ALIASES = {
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "eps": "epsilon",
    "wd": "weight_decay",
    "steps": "max_steps",
    "model": "model_name_or_path",
    "checkpoint": "model_name_or_path",
    "output": "output_dir",
    "data": "dataset",
    "data_dir": "dataset",
}


def _suggestion(name: str, known: set[str]) -> str | None:
    """The option a mistyped name most likely meant: a known alias, a close spelling, or the one field it ends."""
    if _ALIASES.get(name) in known:
        return _ALIASES[name]
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return close[0]
    ending = sorted((field for field in known if field.endswith("_" + name)), key=len)
    return ending[0] if ending else None


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


def _expand_bracketed_lists(argv: list[str]) -> list[str]:
    """`--attacks '[clean, pgd-20]'` (or unquoted, split by the shell) -> `--attacks clean pgd-20`, as YAML reads it."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("[") and out and out[-1].startswith("--"):
            end = index
            while not argv[end].rstrip().endswith("]") and end + 1 < len(argv):
                end += 1
            text = " ".join(argv[index : end + 1])
            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError:
                items = None
            if isinstance(items, list):
                out.extend(str(item) for item in items)
                index = end + 1
                continue
        out.append(token)
        index += 1
    return out


def _command_line_fields(argv: list[str], known: set[str]) -> set[str]:
    """The fields a command line sets (`--name v`, `--name=v`, and the `--no_name` form of a boolean)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")  # HfArgumentParser also accepts --dash-names
            if name not in known and name.startswith("no_") and name[3:] in known:
                name = name[3:]
            names.add(name)
    return names


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _apply_device_defaults(instance: Any, explicit: set[str]) -> None:
    """Defaults that depend on the machine: no pinned memory without an accelerator (torch warns at every epoch)."""
    if isinstance(instance, TrainingArguments) and "dataloader_pin_memory" not in explicit:
        if instance.dataloader_pin_memory and not _has_accelerator():
            instance.dataloader_pin_memory = False


def prepare_launch_environment() -> None:
    """Make a multi-process launch on a machine without GPUs a CPU (gloo) DDP run.

    `accelerate launch` starts several processes only through torchrun (a MULTI_GPU config), and that
    path does not tell the processes that `use_cpu: true` was asked for: with no GPU, `TrainingArguments`
    then sees no distributed backend and every process trains alone on all the data. Setting
    `ACCELERATE_USE_CPU` — what accelerate's own single-process CPU launcher sets — before the
    arguments are built makes them join one gloo process group. An explicit `ACCELERATE_USE_CPU` is kept.
    """
    if launched_distributed() and "ACCELERATE_USE_CPU" not in os.environ and not _has_accelerator():
        os.environ["ACCELERATE_USE_CPU"] = "true"
        if is_main_process():
            logger.info("No GPU found: the %s launched processes train with DDP on CPU (gloo).", os.environ.get("WORLD_SIZE", "?"))


def _refuse(message: str):
    raise ValueError(f"{message[:1].upper()}{message[1:]}.")


_NONE_WORDS = ("none", "null")


def _optional_fields(dataclass_types: Sequence[type]) -> set[str]:
    """Names of the fields whose type admits None (`int | None`, `Optional[float]`, ...)."""
    names = set()
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for field_ in dataclasses.fields(dataclass_type):
            if type(None) in typing.get_args(hints.get(field_.name)):
                names.add(field_.name)
    return names


def _accept_none_for_optional_fields(parser: argparse.ArgumentParser, dataclass_types: Sequence[type]) -> None:
    """Let `--field none` (or `null`, as YAML writes it) unset an optional field a config sets.

    Without it a config's `validation_split_size: 1000` could not be switched off from the command
    line: argparse would try `int("none")`.
    """
    optional = _optional_fields(dataclass_types)

    def none_or(convert: Callable[[str], Any]) -> Callable[[str], Any]:
        def parse(text: str) -> Any:
            return None if text.strip().lower() in _NONE_WORDS else convert(text)

        parse.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its errors
        return parse

    for action in parser._actions:
        if action.dest in optional and callable(action.type) and action.type is not str:
            action.type = none_or(action.type)


def _case_insensitive_choices(parser: argparse.ArgumentParser) -> None:
    """`--norm l2` means `L2`: a value that matches a choice but for its case is read as that choice."""
    for action in parser._actions:
        choices = action.choices
        if not choices or not all(isinstance(choice, str) for choice in choices):
            continue
        by_lower = {choice.lower(): choice for choice in choices}
        convert = action.type or str

        def parse(text: str, by_lower=by_lower, convert=convert) -> Any:
            return convert(by_lower.get(text.lower(), text) if isinstance(text, str) else text)

        parse.__name__ = getattr(convert, "__name__", "value")
        action.type = parse


def parse_recipe_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    default_config: str | Path | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parse `[--config FILE] [--field value ...]` into one instance of each dataclass.

    Args:
        dataclass_types: the dataclasses to fill, in the order they are returned.
        argv: the arguments (defaults to `sys.argv[1:]`).
        default_config: the YAML file to use when `--config` is not given (recipes use this
            for their no-argument quickstart).
        description: what `--help` prints above the options (recipes pass their docstring).

    Raises:
        ValueError: on a config key or command-line flag that no dataclass declares.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = _split_config_flag(argv)
    rest = _expand_bracketed_lists(rest)
    config_path = config_path or (str(default_config) if default_config is not None else None)
    prepare_launch_environment()

    parser = HfArgumentParser(list(dataclass_types), allow_abbrev=False)
    parser._negative_number_matcher = _NEGATIVE_VALUE  # private argparse attribute; tests/test_cli.py guards it
    parser.error = _refuse  # a bad value is one line, not the usage of 150 options followed by the message
    _case_insensitive_choices(parser)
    _accept_none_for_optional_fields(parser, dataclass_types)
    arrange_help(parser, dataclass_types, default_config, description)
    values: dict[str, Any] = {}
    if config_path is not None:
        values = load_yaml_config(config_path)
        known = _known_fields(dataclass_types)
        unknown = sorted(set(values) - known)
        if unknown:
            hints = []
            for key in unknown:
                close = _suggestion(key, known)
                hints.append(f"{key!r}" + (f" (did you mean {close!r}?)" if close else ""))
            raise ValueError(f"Unknown option(s) in {config_path}: {', '.join(hints)}.")
        parser.set_defaults(**values)
        for action in parser._actions:  # a value from the file satisfies a required flag
            if action.dest in values:
                action.required = False
    known = _known_fields(dataclass_types)
    try:
        parsed = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)
    except ValueError as error:
        unknown = sorted(_command_line_fields(rest, known) - known)
        if unknown:  # abbreviations land here too: argparse may not complete them (allow_abbrev=False)
            hints = []
            for name in unknown:
                close = _suggestion(name, known)
                hints.append(f"--{name}" + (f" (did you mean --{close}?)" if close else ""))
            raise ValueError(f"Unknown option(s): {', '.join(hints)}. Run with --help to list the options.") from None
        raise ValueError(f"{error} Run with --help to list the options.") from None
    explicit = set(values) | _command_line_fields(rest, known)
    for instance in parsed:
        if isinstance(instance, TrainingArguments):  # transformers reads max_steps <= 0 as "unset"
            check_training_length(instance.max_steps, instance.num_train_epochs)
        _apply_device_defaults(instance, explicit)
    return parsed


def _pop_debug_flag(argv: list[str]) -> tuple[bool, list[str]]:
    """A bare `--debug` is ours; `--debug <option>` is `TrainingArguments.debug` and stays."""
    rest, debug = [], False
    for index, token in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token == "--debug" and (following is None or following.startswith("--")):
            debug = True
        else:
            rest.append(token)
    return debug, rest


def _debug_requested() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in (DEBUG_ENV, "ACCELERATE_DEBUG_MODE")
    )


def _show_library_log() -> None:
    """mimir_hf's one-line notices (interpolated positions, dropped decoder, DDP on CPU) on the main process."""
    library = logging.getLogger("mimir_hf")
    if library.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[mimir_hf] %(message)s"))
    library.addHandler(handler)
    library.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    library.propagate = False


def run_recipe(
    main: Callable[[list[str]], Any],
    argv: Sequence[str] | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run a recipe's `main(argv)`; a user error becomes one line on stderr and exit status 2.

    User errors are `ValueError` (bad values, unknown options, unusable data), `OSError` (missing
    files and checkpoints) and `SafetensorError` (a damaged weights file), plus `user_errors`. Ctrl-C
    prints one line too (a training recipe's names its last checkpoint, `mimir_hf.training.output_dir`)
    and exits with 130. Anything else is a bug and keeps its traceback, and so does every error under
    `--debug` or `MIMIR_DEBUG=1` (`accelerate launch --debug` sets `ACCELERATE_DEBUG_MODE`, which counts
    too). Returns `main`'s status (0 when it returns a non-int).
    """
    debug, rest = _pop_debug_flag(list(sys.argv[1:] if argv is None else argv))
    _show_library_log()
    quiet_single_shard_saves()
    try:
        result = main(rest)
    except KeyboardInterrupt as error:  # Ctrl-C: what was kept and how to go on, never a traceback
        if debug or _debug_requested():
            raise
        if os.environ.get("RANK", "0") == "0":
            print(str(error) or "Interrupted.", file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT_CODE
    except (ValueError, OSError, SafetensorError, *user_errors) as error:
        if debug or _debug_requested():
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        prefix = "" if is_main_process() else f"[rank {process_rank()}] "
        print(f"{prefix}error: {message} (run with --debug for the traceback)", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT_CODE
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
