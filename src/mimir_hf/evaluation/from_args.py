"""`evaluate_from_args`: the evaluation recipe's arguments → `evaluate_robustness`."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import torch

from .robustness_report import RobustnessReport
from .runner import evaluate_robustness

__all__ = ["evaluate_from_args"]

logger = logging.getLogger(__name__)


def evaluate_from_args(
    eval_args: Any, data_args: Any, *, progress: bool | None = None, robustbench_args: Any = None
) -> RobustnessReport:
    """Run `evaluate_robustness` from the recipe's `EvaluationArguments` and `DataArguments`.

    With `protocol: robustbench` the arguments are checked against RobustBench's protocol first (an explicit
    value that breaks it is an error, never silently replaced), and ImageNet is evaluated on RobustBench's
    5,000-image list (`robustbench_args.imagenet_ids_file`, default the shipped copy).
    """
    with _torch_threads(getattr(eval_args, "num_threads", None)):
        return _evaluate_from_args(eval_args, data_args, progress=progress, robustbench_args=robustbench_args)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the duration only: the caller's process keeps its own setting."""
    if not num_threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _evaluate_from_args(eval_args: Any, data_args: Any, *, progress: bool | None, robustbench_args: Any) -> RobustnessReport:
    data: Any = data_args.dataset
    indices = None
    dataset_name = None
    norm = getattr(eval_args, "norm", "Linf")
    sweep: Any = eval_args.epsilon_sweep
    if norm == "L2":
        from dataclasses import fields

        default_sweep = next(f.default_factory() for f in fields(eval_args) if f.name == "epsilon_sweep")
        if list(sweep) == list(default_sweep):
            sweep = None  # the L∞ default sweep means nothing as L2 radii: the L2 default replaces it
        if "/255" in str(eval_args.epsilon):
            logger.warning("--norm L2 with --epsilon %s: an L2 budget is a radius (RobustBench's CIFAR-10 L2 budget "
                           "is 0.5), not a per-pixel k/255 budget.", eval_args.epsilon)
    if getattr(eval_args, "protocol", "custom") == "robustbench":
        from .robustbench import check_protocol_arguments, imagenet_test_image_ids, imagenet_test_indices, robustbench_dataset

        check_protocol_arguments(eval_args, data_args)
        if robustbench_dataset(data_args.dataset) == "imagenet":
            from .. import data as mdata

            data = mdata.load_image_dataset(
                data_args.dataset, data_args.eval_split, config_name=data_args.dataset_config,
                image_column=data_args.image_column, label_column=data_args.label_column, require_labels=True,
            )
            ids_file = getattr(robustbench_args, "imagenet_ids_file", None)
            indices = imagenet_test_indices(data, imagenet_test_image_ids(ids_file))
            dataset_name = data_args.dataset
    if getattr(data_args, "streaming", False) and indices is None and data_args.max_eval_samples is not None:
        # the split's first images, streamed: the rest of it is never downloaded (a whole split loads as without streaming)
        data = data_args.load(data_args.eval_split, require_labels=True, max_samples=data_args.max_eval_samples)
        dataset_name = data_args.dataset
    # Every argument whose name evaluate_robustness also takes goes through by name (so a new option
    # needs no line here); only the few whose names differ, or that were resolved above, are mapped.
    parameters = inspect.signature(evaluate_robustness).parameters
    by_name = {
        f.name: getattr(arguments, f.name)
        for arguments in (data_args, eval_args)
        for f in dataclasses.fields(arguments)
        if f.name in parameters and f.name not in ("epsilon_sweep", "progress")
    }
    return evaluate_robustness(
        eval_args.model_name_or_path,
        data,
        **by_name,
        indices=indices,
        dataset_name=dataset_name,
        split=data_args.eval_split,
        num_samples=data_args.max_eval_samples,
        epsilon_sweep=sweep,
        progress=(not eval_args.no_progress) if progress is None else progress,
    )
