"""Count the Python-level calls that read a tensor back to the host (a device sync on a GPU).

On a GPU each of `Tensor.item()`, `bool(t)`, `int(t)`, `float(t)`, `t.tolist()` and `t.numpy()`
waits for every queued kernel. On the CPU they cost nothing, which is exactly why a CPU test has
to count the calls instead of timing them. `torch.cuda.set_sync_debug_mode("error")` catches the
remaining, C++-side syncs on a real GPU (the `gpu` tests use it).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

import torch

_METHODS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


class SyncLog:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def count(self) -> int:
        return len(self.calls)

    def report(self) -> str:
        return "\n\n".join(self.calls)


@contextlib.contextmanager
def count_host_syncs() -> Iterator[SyncLog]:
    """Within the block, every read-back of a tensor's value is recorded with the stack that made it."""
    log = SyncLog()
    originals = {name: getattr(torch.Tensor, name) for name in _METHODS}

    def wrap(name: str, original):
        def counted(self, *args, **kwargs):
            stack = "".join(traceback.format_stack(limit=8)[:-1])
            log.calls.append(f"Tensor.{name} on {tuple(self.shape)} {self.dtype}\n{stack}")
            return original(self, *args, **kwargs)

        return counted

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield log
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
