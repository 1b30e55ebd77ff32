"""Shared bits of the benchmark scripts: machine description, timing, and model shapes.

Benchmarks report ratios measured within one process run (interleaved repetitions, medians),
because absolute times on a shared 2-core machine move with whatever else is running.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

MODEL_SHAPES: dict[str, dict] = {
    # The paper's CIFAR-10 ViT-T: 192 wide, 12 layers, 3 heads, patch 2 on 32x32 (256 tokens).
    "cifar-vit-t": {"size": "vit-t", "image_size": 32, "patch_size": 2},
    # A small model for CPU work: 96 wide, 4 layers, patch 4 (64 tokens), as in the quickstart.
    "small": {"size": "vit-t", "image_size": 32, "patch_size": 4, "hidden_size": 96, "num_hidden_layers": 4,
              "num_attention_heads": 3, "intermediate_size": 384},
}


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} logical CPUs | torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) | python {platform.python_version()} | load average {load[0]:.2f}"
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """Median and inter-quartile range, to show how noisy the machine was."""
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), median(values), max(values)]
    return f"{median(values) * 1e3:8.1f} ms (IQR {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f})"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux) and return the current RSS in MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak RSS since the last `reset_peak_rss`, in MiB."""
    return _status_kib("VmHWM") / 1024
