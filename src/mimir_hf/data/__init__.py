"""Images for MIMIR: one loader for every source, pixel-space transforms, and the matching processor.

Everything returns pixels in [0, 1] without mean/std normalisation, because MIMIR's attack budgets
are defined there. See `transforms` for the augmentation rules and why evaluation uses PIL resizing.
"""

from .arguments import DataArguments
from .builtin import BUILTIN_DATASETS
from .npz import dataset_from_arrays
from .rand_augment import RAND_AUGMENT_OPS, RandAugment, parse_rand_augment
from .random_erasing import RANDOM_ERASING_MODES, RandomErasing
from .processing import IMAGE_PROCESSOR_FILE, ImageTransform, collate_images, load_image_processor, make_image_processor, with_transform
from .shards import ShardedStream, stream_prefix
from .sources import class_names, detect_columns, load_image_dataset
from .splits import hold_out_validation, looks_like_test_split
from .streaming import ImageStream, StreamLoader
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
    "IMAGE_PROCESSOR_FILE",
    "RAND_AUGMENT_OPS",
    "RANDOM_ERASING_MODES",
    "BUILTIN_DATASETS",
    "DataArguments",
    "EvalTransform",
    "ImageStream",
    "ImageTransform",
    "RandAugment",
    "RandomErasing",
    "ShardedStream",
    "StreamLoader",
    "TrainTransform",
    "class_names",
    "collate_images",
    "dataset_from_arrays",
    "default_crop_fraction",
    "detect_columns",
    "eval_resize_size",
    "eval_transform",
    "hold_out_validation",
    "load_image_dataset",
    "load_image_processor",
    "looks_like_test_split",
    "make_image_processor",
    "parse_rand_augment",
    "stream_prefix",
    "to_tensor",
    "train_transform",
    "with_transform",
]
