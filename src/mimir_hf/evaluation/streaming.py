"""The evaluation set, read one batch at a time.

Loading a split as one tensor costs 12 bytes per pixel-channel of float32 per image before a single
attack runs: ImageNet-val at 224 px is ~30 GB. Here only the labels (needed up front to check them
against the model) are read eagerly; images are decoded and preprocessed per batch, so memory stays
at one batch whatever the size of the split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["EvaluationData", "prepare_evaluation_data"]


@dataclass
class EvaluationData:
    """Which images are evaluated (`indices` into the split) and how to get them, batch by batch."""

    labels: np.ndarray  # (N,) int64, in evaluation order
    indices: np.ndarray  # (N,) positions in the split (RobustBench's ImageNet list is not a prefix)
    source_name: str
    class_names: list[str] | None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    _dataset: Any = None  # a transformed `datasets.Dataset`, rows {"pixel_values", "labels"}
    _pixels: torch.Tensor | None = None  # or an in-memory tensor given by the caller

    def __len__(self) -> int:
        return int(self.labels.size)

    def batches(self, positions: Sequence[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (pixels, labels) for each list of evaluation positions, in order, decoding lazily."""
        if self._pixels is not None:
            for chunk in positions:
                chunk = np.asarray(chunk, dtype=np.int64)
                yield self._pixels[torch.as_tensor(self.indices[chunk])], torch.as_tensor(self.labels[chunk])
            return
        from torch.utils.data import DataLoader

        from ..data import collate_images

        sampler = [[int(self.indices[p]) for p in chunk] for chunk in positions]
        loader = DataLoader(self._dataset, batch_sampler=sampler, collate_fn=collate_images)
        for batch in loader:
            yield batch["pixel_values"], batch["labels"].long()


def _select(dataset: Any, num_samples: int | None, indices: Sequence[int] | None, length: int) -> np.ndarray:
    if indices is not None:
        chosen = np.asarray(list(indices), dtype=np.int64)
        if chosen.size == 0:
            raise ValueError("`indices` is empty: there is nothing to evaluate.")
        if chosen.min() < 0 or chosen.max() >= length:
            raise ValueError(f"`indices` must lie in [0, {length}), got [{chosen.min()}, {chosen.max()}].")
        if np.unique(chosen).size != chosen.size:
            raise ValueError("`indices` holds duplicates; each image is evaluated once.")
        if num_samples is not None:
            chosen = chosen[:num_samples]
        return chosen
    count = length if num_samples is None else min(num_samples, length)
    return np.arange(count, dtype=np.int64)


def prepare_evaluation_data(
    source: Any,
    *,
    labels: torch.Tensor | None = None,
    split: str,
    dataset_config: str | None,
    image_column: str | None,
    label_column: str | None,
    image_size: int | None,
    num_samples: int | None,
    indices: Sequence[int] | None = None,
    crop_fraction: float | None = None,
    dataset_name: str | None = None,
) -> EvaluationData:
    """Index the evaluation images without decoding them (a pixel tensor given by the caller stays as is)."""
    if isinstance(source, torch.Tensor):
        if labels is None:
            raise ValueError("Pass `labels` together with a pixel tensor.")
        pixels, all_labels = source.detach().float().cpu(), torch.as_tensor(labels).long().cpu()
        if pixels.shape[0] != all_labels.shape[0]:
            raise ValueError(f"{pixels.shape[0]} images but {all_labels.shape[0]} labels.")
        chosen = _select(None, num_samples, indices, pixels.shape[0])
        return EvaluationData(
            labels=all_labels.numpy()[chosen], indices=chosen, source_name=dataset_name or "tensor", class_names=None,
            preprocessing={"kind": "given tensor", "input_range": [0.0, 1.0]}, _pixels=pixels,
        )

    from .. import data as mdata
    from ..data.transforms import eval_resize_size

    if isinstance(source, (str, Path)):
        dataset = mdata.load_image_dataset(
            str(source), split, config_name=dataset_config, image_column=image_column,
            label_column=label_column, require_labels=True,
            max_samples=num_samples if indices is None else None,
        )
    else:
        dataset = source
    if "label" not in dataset.column_names:
        raise ValueError("The evaluation split has no labels; robust accuracy needs them (set label_column).")
    if len(dataset) == 0:
        raise ValueError(f"The split {split!r} of {source!r} is empty.")
    if image_size is None:
        raise ValueError("Cannot tell the model's input resolution; pass image_size.")
    chosen = _select(dataset, num_samples, indices, len(dataset))
    all_labels = np.asarray(dataset["label"], dtype=np.int64)  # the label column alone: no image is decoded
    if dataset_name is None:
        info = getattr(dataset, "info", None)
        dataset_name = str(source) if isinstance(source, (str, Path)) else (getattr(info, "dataset_name", None) or "dataset")
    resize = eval_resize_size(image_size, crop_fraction)
    preprocessing = {
        "kind": "resize shorter side + centre crop" if resize != image_size else "resize shorter side",
        "resize_shorter_side": int(resize),
        "center_crop": int(image_size),
        "interpolation": "bicubic",
        "crop_fraction": crop_fraction,
        "input_range": [0.0, 1.0],
        "note": "images already of the target size pass through unchanged (no resampling)",
    }
    return EvaluationData(
        labels=all_labels[chosen], indices=chosen, source_name=dataset_name, class_names=mdata.class_names(dataset),
        preprocessing=preprocessing, _dataset=mdata.with_transform(dataset, mdata.eval_transform(image_size, crop_fraction)),
    )
