"""Run-level plumbing every recipe needs: where to resume from, and a clean distributed exit."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

__all__ = ["finish_distributed", "resolve_resume"]

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


def finish_distributed() -> None:
    """Tear down the process group; without it rank 0 can abort at exit and the launcher reports failure."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
