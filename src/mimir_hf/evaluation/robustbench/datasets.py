"""RobustBench's names for data sets, its budgets and image counts, and its fixed list of ImageNet images."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ROBUSTBENCH_EPSILONS",
    "ROBUSTBENCH_NUM_IMAGES",
    "imagenet_test_image_ids",
    "imagenet_test_indices",
    "robustbench_dataset",
]

ROBUSTBENCH_NUM_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 5_000}
ROBUSTBENCH_EPSILONS = {
    ("cifar10", "Linf"): 8 / 255, ("cifar100", "Linf"): 8 / 255, ("imagenet", "Linf"): 4 / 255,
    ("cifar10", "L2"): 0.5,
}
CIFAR_C_IMAGES_PER_PAIR = 10_000
"""Images per corruption and severity in CIFAR-10-C/100-C."""


def robustbench_dataset(name: str | None) -> str | None:
    """RobustBench's name for a data source (`uoft-cs/cifar10` -> `cifar10`), None when it has none."""
    text = (name or "").lower().rstrip("/")
    base = text.rsplit("/", 1)[-1]
    if re.fullmatch(r"cifar-?100", base):
        return "cifar100"
    if re.fullmatch(r"cifar-?10", base):
        return "cifar10"
    if re.fullmatch(r"(ilsvrc2012|imagenet(-1k)?|imagenet1k)", base):
        return "imagenet"
    return None


def imagenet_test_image_ids(path: str | Path | None = None) -> list[str]:
    """RobustBench's 5,000 ImageNet validation images as `<synset>/<file name>` (the shipped copy by default)."""
    if path is None:
        text = resources.files("mimir_hf.evaluation").joinpath("data/robustbench_imagenet_test_image_ids.txt").read_text()
    else:
        text = Path(path).read_text(encoding="utf-8")
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(ids) != len(set(ids)):
        raise ValueError(f"The ImageNet image list {path or '(shipped)'} holds duplicate entries.")
    return ids


def _file_names(dataset: Any) -> list[str]:
    """The base file name of every row (from the image's stored path, or a file-name column)."""
    for column in ("file_name", "filename", "image_id", "path"):
        if column in dataset.column_names:
            return [Path(str(v)).name for v in dataset[column]]
    from datasets import Image

    if "image" in dataset.column_names and isinstance(dataset.features["image"], Image):
        raw = dataset.cast_column("image", Image(decode=False))["image"]
        names = [Path(str(item.get("path") or "")).name for item in raw]
        if any(names):
            return names
    raise ValueError(
        "Cannot tell which ImageNet validation image each row is: the data set keeps no file names (expected a "
        "`file_name`/`filename`/`image_id`/`path` column, or images stored with their paths, as `imagefolder` and "
        "the Hub's imagenet-1k parquet files do)."
    )


def imagenet_test_indices(dataset: Any, ids: list[str] | None = None) -> list[int]:
    """Positions in `dataset` (ImageNet validation) of RobustBench's images, in the list's order."""
    ids = imagenet_test_image_ids() if ids is None else ids
    position = {name: i for i, name in enumerate(_file_names(dataset))}
    wanted = [Path(entry).name for entry in ids]
    missing = [name for name in wanted if name not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} of RobustBench's {len(wanted)} ImageNet images are not in this split (e.g. "
            f"{missing[:3]}); evaluate on the full ImageNet validation split."
        )
    return [position[name] for name in wanted]


def model_info_dataset(name: str) -> str:
    """A ModelInfo's `dataset` (also its folder): RobustBench's name, or a slug of a source RobustBench does not know."""
    return robustbench_dataset(name) or re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-")
