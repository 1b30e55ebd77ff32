"""What a training recipe does with its output folder, so that no work is ever lost.

The transformers examples' convention (`run_mae.py`, `run_image_classification.py`): a folder that
holds checkpoints of an unfinished run continues from the last one, saying so, and any other
non-empty folder is refused unless `--overwrite_output_dir` is given, so that re-running a command
never retrains over a finished run. Ctrl-C (or the SIGTERM `accelerate launch` forwards) stops with
one line that names the last checkpoint and says that the same command continues from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from .checkpoints import check_weights_readable
from .runs import checkpoint_folders, finish_distributed, last_complete_checkpoint

__all__ = ["OutputDirArguments", "RunInterrupted", "announce_run", "prepare_output_dir", "run_in_output_dir", "stop_on_interrupt"]

logger = logging.getLogger(__name__)

# What a run leaves before its first checkpoint: TensorBoard's event files, nothing to continue from.
_LOGS_ONLY = {"runs"}
# What a finished run leaves at the top of its folder (besides checkpoints).
_FINISHED_MARKERS = ("trainer_state.json", "train_results.json", "config.json", "model.safetensors")


@dataclass
class OutputDirArguments:
    """What happens to a non-empty `output_dir`."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train afresh into an output_dir that already holds a finished run or other files (its old "
            "checkpoints are deleted). Without it such a folder is refused, and one holding only an unfinished "
            "run's checkpoints continues from the last one."
        },
    )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; its message is the one line that says what was kept and how to continue."""


def _step(checkpoint: str) -> str:
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
        return f"step {state['global_step']} of {state['max_steps']}"
    except (OSError, ValueError, KeyError):
        return Path(checkpoint).name


def prepare_output_dir(training_args: TrainingArguments, overwrite_output_dir: bool = False) -> None:
    """Refuse a folder that would be overwritten, or set `resume_from_checkpoint` to continue an unfinished run.

    An explicit `resume_from_checkpoint` is the user's choice and is kept as it is. With
    `overwrite_output_dir`, the old `checkpoint-N` folders are deleted (main process only): left in
    place, a later continuation would pick an old run's checkpoint by its higher step number.

    Raises:
        ValueError: `output_dir` holds a finished run, or files that are not an unfinished run's.
    """
    output_dir = Path(training_args.output_dir)
    if training_args.resume_from_checkpoint is not None or not output_dir.is_dir():
        return
    contents = [path for path in output_dir.iterdir() if path.name not in _LOGS_ONLY]
    if not contents:
        return
    checkpoints = checkpoint_folders(output_dir)
    if overwrite_output_dir:
        if training_args.should_save:
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint, ignore_errors=True)
        logger.info("--overwrite_output_dir: training afresh into %s%s.", output_dir,
                    f" ({len(checkpoints)} old checkpoint(s) deleted)" if checkpoints else "")
        return
    hint = "Pass --overwrite_output_dir to train afresh over it, or choose another --output_dir."
    finished = [name for name in _FINISHED_MARKERS if (output_dir / name).is_file()]
    if finished:
        raise ValueError(f"{output_dir} already holds a finished run ({', '.join(finished)}). {hint}")
    last = last_complete_checkpoint(output_dir)
    if last is None:
        raise ValueError(f"{output_dir} already exists and is not empty (no checkpoint of an unfinished run in it). {hint}")
    training_args.resume_from_checkpoint = "last"
    logger.info("%s holds an unfinished run: continuing from %s (%s). To start afresh instead, add "
                "--overwrite_output_dir.", output_dir, last, _step(last))


def announce_run(training_args: TrainingArguments) -> None:
    """Say where the run writes and how to watch it (TensorBoard, when the run reports to it)."""
    report_to = training_args.report_to or []
    watch = ""
    if "tensorboard" in report_to or "all" in report_to:
        watch = f"; watch it live with `tensorboard --logdir {training_args.output_dir}`"
    logger.info("Training into %s%s.", training_args.output_dir, watch)


def _interrupted_message(output_dir: Path) -> str:
    last = last_complete_checkpoint(output_dir)
    if last is not None:
        return f"Interrupted. Last checkpoint: {last} ({_step(last)}); the same command continues from it."
    return "Interrupted before the first checkpoint was saved: the same command starts afresh."


@contextlib.contextmanager
def stop_on_interrupt(output_dir: str | Path, message: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn Ctrl-C into `RunInterrupted`, whose message names the last checkpoint in `output_dir`
    (or is `message()`, for runs that keep their progress otherwise).

    `accelerate launch` answers Ctrl-C by sending its child SIGTERM too; that is read as the same
    interruption, and once it is being handled further signals are ignored (the process is about to
    exit), so that the line gets out.
    """
    handle_signals = threading.current_thread() is threading.main_thread()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = (signal.getsignal(signal.SIGINT), signal.signal(signal.SIGTERM, interrupt)) if handle_signals else None
    try:
        yield
    except KeyboardInterrupt:
        if handle_signals:  # while the message is composed, a second Ctrl-C must not cut it short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise RunInterrupted(message() if message is not None else _interrupted_message(Path(output_dir))) from None
    finally:
        # Both handlers as they were: an ignored SIGINT would outlive the run in this process and be
        # inherited by every process it starts later (a subprocess started with SIGINT ignored ignores Ctrl-C).
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def run_in_output_dir(
    run: Callable[..., dict],
    model_args: Any,
    data_args: Any,
    training_args: TrainingArguments,
    overwrite_output_dir: bool = False,
) -> dict:
    """What both training recipes do around their stage: check the starting weights, apply the output
    folder convention (`prepare_output_dir`), run `run(model_args, data_args, training_args)` with Ctrl-C
    as one line, and leave the process group cleanly. Returns the stage's metrics."""
    check_weights_readable(model_args.model_name_or_path)
    prepare_output_dir(training_args, overwrite_output_dir)
    with stop_on_interrupt(training_args.output_dir):
        metrics = run(model_args, data_args, training_args)
    finish_distributed()
    return metrics
