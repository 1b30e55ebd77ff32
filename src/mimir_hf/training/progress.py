"""Progress bars that read well in a terminal and in a log file.

Two of transformers' bars make a run's output worse: `save_pretrained` draws a "Writing model shards"
bar at every checkpoint (for the one file of a model this size), and the Trainer's evaluation bar is
nested under the training bar, which it reaches with cursor-up codes that a log file keeps as `[A`
debris. The recipes drop the first; the trainers drop the nested bar when the output is not a
terminal (the training bar and the logged metrics stay).
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import ProgressCallback, Trainer
from transformers.utils import logging as transformers_logging

__all__ = ["ProgressWithoutNestedBars", "log_friendly_progress", "quiet_single_shard_saves"]

_WRITING_SHARDS = "Writing model shards"


def _drop_single_shard_bar(factory, args: tuple[Any, ...], kwargs: dict[str, Any]):
    shards = args[0] if args else kwargs.get("iterable")
    if kwargs.get("desc") == _WRITING_SHARDS and hasattr(shards, "__len__") and len(shards) <= 1:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def quiet_single_shard_saves() -> None:
    """No "Writing model shards" bar for a checkpoint of one file (a sharded save keeps its bar).

    Uses transformers' public `set_tqdm_hook`; where a transformers version lacks it, the bar stays.
    """
    set_hook = getattr(transformers_logging, "set_tqdm_hook", None)
    if set_hook is not None:
        set_hook(_drop_single_shard_bar)


class ProgressWithoutNestedBars(ProgressCallback):
    """transformers' progress bar without the nested evaluation bar (for output that is not a terminal)."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        return


def log_friendly_progress(trainer: Trainer) -> None:
    """Swap the Trainer's progress callback for `ProgressWithoutNestedBars` when stderr is not a terminal."""
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return
    if any(type(callback) is ProgressCallback for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(ProgressWithoutNestedBars)
