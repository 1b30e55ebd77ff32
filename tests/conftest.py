"""Shared test set-up: deterministic seeds, no network, small models."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per process: tests start subprocesses (DDP ranks, stock-transformers loaders, the Hub
# client) and on 2 cores OpenMP barriers stall ~20x whenever another process holds a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def library_logger_restored():
    """`run_recipe` gives the `mimir_hf` logger a handler, as a recipe process wants; a test that runs a
    recipe in-process puts the logger back, so that other tests do not inherit it."""
    import logging

    library = logging.getLogger("mimir_hf")
    saved = (list(library.handlers), library.level, library.propagate)
    yield
    library.handlers[:] = saved[0]
    library.setLevel(saved[1])
    library.propagate = saved[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA; without it they are skipped, not failed (CI has no GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.py on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def load_benchmark():
    """Import a script from benchmarks/ (not a package) by file name, e.g. `load_benchmark("step_cost")`."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
