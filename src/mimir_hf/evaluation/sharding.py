"""Sharded evaluation under `accelerate launch`: each process attacks its own batches.

The batches are fixed by the global batch size over the evaluation order, and every batch carries
its own seed (`state.batch_seed`), so which process runs a batch does not change its result: the
gathered report equals a single-process run on the same images. Batches are dealt round-robin
(batch i to process i mod world size), which balances the cost when hard images cluster.
Accelerate is the engine (its process state and `gather_object`); nothing here starts processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..launch import launched_distributed

__all__ = ["ProcessShard", "current_shard", "gather_records"]


@dataclass(frozen=True)
class ProcessShard:
    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def batches(self, num_batches: int) -> list[int]:
        return list(range(self.rank, num_batches, self.world_size))


def _partial_state():
    from accelerate import PartialState

    # A CPU-only multi-process launch must ask for the CPU (gloo) backend explicitly, as TrainingArguments
    # does from ACCELERATE_USE_CPU; without it accelerate falls back to one independent process per rank.
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def current_shard() -> ProcessShard:
    """This process's place among the processes `accelerate launch` started (one process: rank 0 of 1)."""
    if not launched_distributed():
        return ProcessShard()
    state = _partial_state()
    return ProcessShard(rank=state.process_index, world_size=state.num_processes, device=state.device)


def gather_records(records: list[Any], shard: ProcessShard) -> list[Any]:
    """Every process's records, on every process (accelerate's `gather_object`)."""
    if shard.world_size == 1:
        return list(records)
    from accelerate.utils import gather_object

    return list(gather_object(records))


def wait_for_everyone(shard: ProcessShard) -> None:
    if shard.world_size > 1:
        _partial_state().wait_for_everyone()
