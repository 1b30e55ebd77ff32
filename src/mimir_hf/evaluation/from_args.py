"""`evaluate_from_args`: the evaluation recipe's arguments → `evaluate_robustness`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .robustness_report import RobustnessReport
from .runner import evaluate_robustness

if TYPE_CHECKING:
    from ..data import DataArguments
    from .arguments import EvaluationArguments

__all__ = ["evaluate_from_args"]


def evaluate_from_args(
    eval_args: EvaluationArguments,
    data_args: DataArguments,
    *,
    progress: bool | None = None,
    robustbench_args: Any = None,
) -> RobustnessReport:
    """Run `evaluate_robustness` from the recipe's `EvaluationArguments` and `DataArguments`.

    With `protocol: robustbench` the arguments are checked against RobustBench's protocol first (an explicit
    value that breaks it is an error, never silently replaced), and ImageNet is evaluated on RobustBench's
    5,000-image list (`robustbench_args.imagenet_ids_file`, default the shipped copy).
    """
    with _torch_threads(eval_args.num_threads):
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


def _evaluate_from_args(
    eval_args: EvaluationArguments, data_args: DataArguments, *, progress: bool | None, robustbench_args: Any
) -> RobustnessReport:
    """Every option passed by name: a runner parameter renamed is a TypeError here, never an option dropped."""
    data: Any = data_args.dataset
    indices = None
    dataset_name = None
    if eval_args.protocol == "robustbench":
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
    if data_args.streaming and indices is None and data_args.max_eval_samples is not None:
        # the split's first images, streamed: the rest of it is never downloaded (a whole split loads as without streaming)
        data = data_args.load(data_args.eval_split, require_labels=True, max_samples=data_args.max_eval_samples)
        dataset_name = data_args.dataset
    return evaluate_robustness(
        eval_args.model_name_or_path,
        data,
        eval_args.attack_settings(),
        split=data_args.eval_split,
        dataset_config=data_args.dataset_config,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        image_size=data_args.image_size,
        eval_crop_fraction=data_args.eval_crop_fraction,
        num_samples=data_args.max_eval_samples,
        indices=indices,
        dataset_name=dataset_name,
        batch_size=eval_args.batch_size,
        device=eval_args.device,
        output_dir=eval_args.output_dir,
        check_tolerance=eval_args.check_tolerance,
        large_epsilon_max_accuracy=eval_args.large_epsilon_max_accuracy,
        resume=eval_args.resume,
        progress=(not eval_args.no_progress) if progress is None else progress,
    )
