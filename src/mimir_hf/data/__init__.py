"""Images for MIMIR: one loader for every source, pixel-space transforms, and the matching processor.

Everything returns pixels in [0, 1] without mean/std normalisation, because MIMIR's attack budgets
are defined there. See `transforms` for the augmentation rules and why evaluation uses PIL resizing.
"""

from .arguments import DataArguments
from .builtin import BUILTIN_DATASETS
from .npz import dataset_from_arrays
from .processing import ImageTransform, collate_images, make_image_processor, with_transform
from .sources import class_names, detect_columns, load_image_dataset
from .transforms import (
    EvalTransform,
    TrainTransform,
    default_crop_fraction,
    eval_resize_size,
    eval_transform,
    to_tensor,
    train_transform,
)

__all__ = [
    "BUILTIN_DATASETS",
    "DataArguments",
    "EvalTransform",
    "ImageTransform",
    "TrainTransform",
    "class_names",
    "collate_images",
    "dataset_from_arrays",
    "default_crop_fraction",
    "detect_columns",
    "eval_resize_size",
    "eval_transform",
    "load_image_dataset",
    "make_image_processor",
    "to_tensor",
    "train_transform",
    "with_transform",
]
