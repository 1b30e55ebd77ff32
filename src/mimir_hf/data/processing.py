"""Glue between data sets, DataLoaders and saved checkpoints.

`with_transform` applies a transform lazily (on access), so nothing is preprocessed up front and
each epoch draws fresh augmentations. `make_image_processor` builds the stock transformers
processor saved next to every checkpoint: it is `BitImageProcessor` (resize shorter side,
centre-crop, rescale 1/255, normalisation off, RGB conversion on) because that stock class
does exactly what `eval_transform` does, so `AutoImageProcessor`/`pipeline` need no custom code.

Backend note: without torchvision (as here), `AutoImageProcessor` loads the PIL backend, which
matches `eval_transform` bit for bit. Where torchvision is installed it picks the torchvision
backend by default; images that need no resize (CIFAR-10 at 32, Tiny-ImageNet at 64) still match
exactly, resized ones can differ by a grey level or so — pass `backend="pil"` for exact equality.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset
from transformers import BitImageProcessorPil
from transformers.image_utils import PILImageResampling

from ..artefacts import IMAGE_PROCESSOR_FILE
from .transforms import ImageInput, eval_resize_size

__all__ = [
    "IMAGE_PROCESSOR_FILE",
    "ImageTransform",
    "collate_images",
    "load_image_processor",
    "make_image_processor",
    "with_transform",
]



class ImageTransform:
    """Batch function for `Dataset.with_transform`: `image` -> `pixel_values`, `label` -> `labels`.

    The output names are the ones transformers models take as keyword arguments.
    """

    def __init__(self, transform: Callable[[ImageInput], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        if "image" not in batch:
            raise ValueError(
                f"Expected an `image` column, got {sorted(batch)}; load the data with `load_image_dataset`, "
                "which names the columns `image` and `label`."
            )
        out: dict[str, list[Any]] = {"pixel_values": [self.transform(image) for image in batch["image"]]}
        if "label" in batch:
            out["labels"] = [int(label) for label in batch["label"]]
        return out

    def __repr__(self) -> str:
        return f"ImageTransform({self.transform!r})"


def with_transform(dataset: Dataset, transform: Callable[[ImageInput], torch.Tensor]) -> Dataset:
    """A view of `dataset` whose rows are `{"pixel_values": float CHW tensor, "labels": int}` (labels if present).

    Trainer users: set `remove_unused_columns=False`, since the stored columns (`image`, `label`)
    are not the model's argument names.
    """
    return dataset.with_transform(ImageTransform(transform))


def collate_images(rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack rows into `pixel_values` (B, 3, H, W) float32 and, if every row has one, `labels` (B,) int64."""
    if not rows:
        raise ValueError("Cannot collate an empty batch.")
    pixels = [torch.as_tensor(row["pixel_values"]) for row in rows]
    shapes = {tuple(p.shape) for p in pixels}
    if len(shapes) != 1:
        raise ValueError(
            f"Images in a batch have different shapes {sorted(shapes)}; use a transform that outputs a fixed "
            "size (`train_transform(image_size)` / `eval_transform(image_size)`)."
        )
    batch = {"pixel_values": torch.stack(pixels).to(torch.float32)}
    if all("labels" in row for row in rows):
        batch["labels"] = torch.tensor([int(row["labels"]) for row in rows], dtype=torch.int64)
    return batch


def make_image_processor(image_size: int, crop_fraction: float | None = None) -> BitImageProcessorPil:
    """A stock processor (pixel space, no normalisation) reproducing `eval_transform(image_size, crop_fraction)`."""
    return BitImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": eval_resize_size(image_size, crop_fraction)},
        resample=PILImageResampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=False,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        do_convert_rgb=True,
    )


def load_image_processor(source: str | os.PathLike) -> Any | None:
    """The image processor saved with a checkpoint (a directory or a Hub id), or None if it has none.

    "None" means exactly "no `preprocessor_config.json`": the pixels then go in as they are. A
    processor that exists but fails to load is an error, never a silent None, because evaluating a
    model that expects normalised inputs on raw pixels gives plausible but meaningless numbers.
    """
    from transformers import AutoImageProcessor
    from transformers.utils import cached_file

    source = os.fspath(source)
    # `_raise_exceptions_for_missing_entries` is private; tests/test_data.py has a canary for it.
    found = cached_file(source, IMAGE_PROCESSOR_FILE, _raise_exceptions_for_missing_entries=False)
    if found is None:
        return None
    try:
        return AutoImageProcessor.from_pretrained(source)
    except Exception as error:
        raise ValueError(
            f"{source!r} has an image processor ({IMAGE_PROCESSOR_FILE}) that does not load: {error}. Refusing to "
            "go on without it, since the model may expect normalised pixels; fix or remove that file."
        ) from error
