"""Whether a checkpoint was trained with data beyond its benchmark's training set.

RobustBench separates models trained on extra data (`additional_data: true`, e.g. the 1M/5M
EDM-generated CIFAR-10 images) from those that were not, and so must every card we publish. The
answer is read from what the run recorded, never asked of the user:

- the run's `recipe_config.yaml` names `generated_data` (finetuning or pretraining with mixing);
- a converted authors' checkpoint says so in `conversion.json` (`--additional_data` at conversion);
- the pretraining checkpoint a classifier was finetuned from (a local folder in the recipe's
  `model_name_or_path`) was itself trained with generated data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..artefacts import CONVERSION_RECORD, RECIPE_CONFIG

__all__ = ["uses_additional_data"]


def _recipe(folder: Path) -> dict[str, Any] | None:
    path = folder / RECIPE_CONFIG
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _folder_says_so(folder: Path, training_config: dict[str, Any] | None) -> bool:
    if training_config and training_config.get("generated_data"):
        return True
    record = folder / CONVERSION_RECORD
    if record.is_file():
        try:
            return bool(json.loads(record.read_text(encoding="utf-8")).get("additional_data"))
        except json.JSONDecodeError:
            return False
    return False


def uses_additional_data(folder: str | Path, training_config: dict[str, Any] | None = None) -> bool:
    """True when the checkpoint in `folder` (or the local pretraining checkpoint it started from) used extra data."""
    folder = Path(folder)
    training_config = _recipe(folder) if training_config is None else training_config
    if _folder_says_so(folder, training_config):
        return True
    source = (training_config or {}).get("model_name_or_path")
    if isinstance(source, str) and Path(source).is_dir() and Path(source).resolve() != folder.resolve():
        return _folder_says_so(Path(source), _recipe(Path(source)))
    return False
