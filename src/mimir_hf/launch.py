"""How this process was launched: the one reading of what `accelerate launch` (torchrun) tells a process.

Read from the launcher's environment variables rather than from a process group, so that the
answer is there before anything is initialised: the command line is parsed, the library's log
set up and the CPU backend chosen before accelerate or the `Trainer` create one. Inside a run,
`Trainer.is_world_process_zero()` and accelerate's process index agree with these.
"""

from __future__ import annotations

import os

__all__ = ["is_main_process", "launched_distributed", "process_rank"]


def launched_distributed() -> bool:
    """Whether a distributed launcher started this process (torchrun sets `LOCAL_RANK`), alone or among several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ


def process_rank() -> int:
    """This process's global rank in the launch; 0 when it was not launched distributed."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0, the process that writes files and prints results (any process that runs alone)."""
    return process_rank() == 0
