"""Common-corruption robustness: accuracy per corruption and severity, and the mean (CIFAR-10-C style).

CIFAR-10-C (Hendrycks & Dietterich, 2019) applies 15 corruptions at 5 severities to the 10,000 CIFAR-10
test images. RobustBench's corruptions leaderboard ranks by the mean accuracy over all corruption and
severity pairs, which is `mean_accuracy` here. The data come from a Hub data set (or any source
`mimir_hf.data` reads) holding one row per corrupted image with these columns:

- `image`: the corrupted image (any name `image_column` gives);
- `label`: the class id (`label_column`);
- `corruption`: the corruption's name, e.g. "gaussian_noise" (`corruption_column`);
- `severity`: 1 to 5 (`severity_column`).

A data set stored one corruption per config or file can be assembled into that shape with `datasets`
(`concatenate_datasets` after `add_column`). Images are decoded batch by batch (750,000 images of
CIFAR-10-C never sit in memory at once); no attack runs, so this is one forward pass per image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..artefacts import CORRUPTIONS_FILE
from ..attacks import preserve_mode
from ..validation import check_pixel_values
from .streaming import prepare_evaluation_data

__all__ = [
    "CIFAR10C_CORRUPTIONS",
    "CORRUPTIONS_FILE",
    "CorruptionReport",
    "evaluate_corruptions",
]

logger = logging.getLogger(__name__)

CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)


@dataclass
class CorruptionReport:
    """Per-image correctness grouped by (corruption, severity); `save` writes corruptions.json."""

    model: str
    dataset: str
    split: str
    corruptions: np.ndarray  # (N,) str
    severities: np.ndarray  # (N,) int
    correct: np.ndarray  # (N,) bool
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.correct.size)

    def accuracy(self, corruption: str, severity: int | None = None) -> float:
        mask = self.corruptions == corruption
        if severity is not None:
            mask &= self.severities == severity
        if not mask.any():
            raise KeyError(f"No images of corruption {corruption!r}" + (f" at severity {severity}" if severity else ""))
        return float(self.correct[mask].mean())

    @property
    def table(self) -> dict[str, dict[int, float]]:
        return {
            name: {int(s): self.accuracy(name, int(s)) for s in sorted(set(self.severities[self.corruptions == name]))}
            for name in sorted(set(self.corruptions.tolist()), key=_corruption_order)
        }

    @property
    def mean_accuracy(self) -> float:
        """Mean over (corruption, severity) pairs (RobustBench's `corruptions_acc`), not over images."""
        values = [v for row in self.table.values() for v in row.values()]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        table = self.table
        counts = {
            name: {str(s): int(((self.corruptions == name) & (self.severities == s)).sum()) for s in row}
            for name, row in table.items()
        }
        return {
            "schema_version": 1,
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "num_samples": self.num_samples,
            "threat_model": "corruptions",
            "preprocessing": self.preprocessing,
            "accuracy": {name: {str(s): v for s, v in row.items()} for name, row in table.items()},
            "num_images": counts,
            "mean_per_corruption": {name: float(np.mean(list(row.values()))) for name, row in table.items()},
            "mean_per_severity": {
                str(s): float(np.mean([row[s] for row in table.values() if s in row]))
                for s in sorted({s for row in table.values() for s in row})
            },
            "mean_accuracy": self.mean_accuracy,
            "missing_cifar10c_corruptions": [c for c in CIFAR10C_CORRUPTIONS if c not in table],
        }

    def format_table(self) -> str:
        table = self.table
        severities = sorted({s for row in table.values() for s in row})
        width = max([len("corruption"), *(len(n) for n in table)])
        lines = [f"Common corruptions: {self.model} on {self.dataset} [{self.split}], {self.num_samples} images",
                 "corruption".ljust(width) + "".join(f"  sev {s}" for s in severities) + "    mean"]
        for name, row in table.items():
            cells = "".join(f"  {100 * row[s]:5.1f}" if s in row else "      -" for s in severities)
            lines.append(name.ljust(width) + cells + f"  {100 * np.mean(list(row.values())):6.2f}")
        lines.append(f"mean over corruption × severity: {100 * self.mean_accuracy:.2f}%")
        return "\n".join(lines)

    def save(self, output_dir: str | Path) -> Path:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / CORRUPTIONS_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        (output_dir / "corruptions_table.txt").write_text(self.format_table() + "\n", encoding="utf-8")
        return path


def _corruption_order(name: str) -> tuple[int, str]:
    return (CIFAR10C_CORRUPTIONS.index(name) if name in CIFAR10C_CORRUPTIONS else len(CIFAR10C_CORRUPTIONS), name)


def evaluate_corruptions(
    model: str | Path | nn.Module,
    data: Any,
    *,
    split: str = "test",
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    corruption_column: str = "corruption",
    severity_column: str = "severity",
    image_size: int | None = None,
    num_samples: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    image_processor: Any = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> CorruptionReport:
    """Clean accuracy of `model` on every corruption and severity of `data` (a source name or a `datasets.Dataset`
    with image, label, corruption and severity columns)."""
    from .loading import classifier_image_size, load_classifier

    wrapper, model_name, processor = load_classifier(model, device=device, image_processor=image_processor)
    device = next((p.device for p in wrapper.parameters()), torch.device("cpu"))
    expected = f"image, label, {corruption_column!r} (corruption name) and {severity_column!r} (1-5)"
    if isinstance(data, (str, Path)):
        from .. import data as mdata

        try:
            dataset = mdata.load_image_dataset(
                str(data), split, config_name=dataset_config, image_column=image_column, label_column=label_column,
                require_labels=True, keep_columns=(corruption_column, severity_column),
            )
        except ValueError as error:
            raise ValueError(f"A corruption data set needs the columns {expected}. {error}") from error
        source_name = str(data)
    else:
        dataset = data
        missing = [c for c in ("image", "label", corruption_column, severity_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(f"A corruption data set needs the columns {expected}; missing {missing} (columns: "
                             f"{dataset.column_names}). Name them with image_column/label_column/corruption_column/"
                             "severity_column.")
        source_name = getattr(getattr(dataset, "info", None), "dataset_name", None) or "dataset"
    count = len(dataset) if num_samples is None else min(num_samples, len(dataset))
    corruptions = np.asarray([str(c) for c in dataset[corruption_column]], dtype=str)[:count]
    severities = np.asarray(dataset[severity_column], dtype=np.int64)[:count]
    if severities.size and (severities.min() < 1 or severities.max() > 5):
        raise ValueError(f"Severities must lie in 1..5, got [{severities.min()}, {severities.max()}].")
    images = prepare_evaluation_data(
        dataset.select_columns(["image", "label"]), split=split, dataset_config=None, image_column=None,
        label_column=None, image_size=classifier_image_size(wrapper, processor, image_size), num_samples=count,
        dataset_name=source_name,
    )
    from tqdm.auto import tqdm

    chunks = [list(range(b, min(b + batch_size, count))) for b in range(0, count, batch_size)]
    correct = np.zeros(count, dtype=bool)
    with preserve_mode(wrapper, "eval"), torch.no_grad(), tqdm(total=count, desc="corruptions", unit="img",
                                                                 disable=not progress) as bar:
        for chunk, (x, y) in zip(chunks, images.batches(chunks)):
            check_pixel_values(x, getattr(wrapper, "num_channels", None), name="corrupted images")
            predicted = wrapper(x.to(device)).argmax(dim=1).cpu()
            correct[chunk[0] : chunk[-1] + 1] = (predicted == y).numpy()
            bar.update(len(chunk))
    report = CorruptionReport(
        model=model_name, dataset=source_name, split=split, corruptions=corruptions, severities=severities,
        correct=correct, preprocessing={**images.preprocessing, "normalization": wrapper.normalization},
    )
    logger.info("Mean accuracy over corruption × severity: %.2f%%", 100 * report.mean_accuracy)
    if output_dir is not None:
        report.save(output_dir)
    return report
