"""Local parquet shards whose images say who they are, for the streaming tests (nothing downloads).

Image i (1-based) is one flat grey level i, so any crop or flip of it still has maximum i / 255:
`image_ids(batch)` reads back which images a batch holds.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage


def _png(level: int, size: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((size, size, 3), level, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_level_shards(folder: Path, num_images: int, num_shards: int, *, split: str = "train", size: int = 16,
                       num_labels: int = 4, first: int = 1, class_names: bool = True) -> Path:
    """`num_images` flat images (levels first, first + 1, ...) in `num_shards` parquet files `<split>-*.parquet`."""
    folder.mkdir(parents=True, exist_ok=True)
    levels = np.arange(first, first + num_images)
    assert levels.max() <= 255
    label = ClassLabel(names=[f"class{i}" for i in range(num_labels)]) if class_names else Value("int64")
    features = Features({"image": Image(), "label": label})
    for shard, chunk in enumerate(np.array_split(levels, num_shards)):
        rows = {"image": [{"bytes": _png(int(v), size), "path": None} for v in chunk], "label": [int(v) % num_labels for v in chunk]}
        path = folder / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"
        Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return folder


def image_ids(pixel_values: torch.Tensor) -> list[int]:
    """Which level-images a batch (B, 3, H, W) in [0, 1] holds."""
    return [int(round(float(image.max()) * 255)) for image in pixel_values]
