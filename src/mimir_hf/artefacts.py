"""The names of the files a run writes and another part reads, and whether a string names a Hub repo.

A recipe writes a file under one of these names and a later stage (a comparison, a card, the publisher,
the replication driver) finds it by the same name; spelling a name twice lets the two drift apart.
The stock transformers files keep transformers' own names (a canary test checks that they agree).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "AUTOATTACK_LOG",
    "COMPARISON_FILES",
    "CONVERSION_RECORD",
    "CORRUPTIONS_FILE",
    "CURVE_FILE",
    "IMAGE_PROCESSOR_FILE",
    "MODEL_CONFIG_FILE",
    "PER_SAMPLE_FILE",
    "RECIPE_CONFIG",
    "REPORT_FILE",
    "REPORT_TABLE_FILE",
    "is_hub_id",
]

# what every recipe writes next to its output
RECIPE_CONFIG = "recipe_config.yaml"
"""The arguments a run used, in the form `--config` reads back."""

# a robustness evaluation (mimir_hf.evaluation.evaluate_robustness)
REPORT_FILE = "robustness.json"
PER_SAMPLE_FILE = "per_sample.npz"
AUTOATTACK_LOG = "autoattack.log"
CURVE_FILE = "accuracy_vs_epsilon.png"
REPORT_TABLE_FILE = "robustness_table.txt"
CORRUPTIONS_FILE = "corruptions.json"

# a paired comparison of evaluations (mimir_hf.evaluation.compare_evaluations)
COMPARISON_FILES = {"json": "comparison.json", "markdown": "comparison.md", "plot": "comparison.png"}

# a converted authors' checkpoint (mimir_hf.convert)
CONVERSION_RECORD = "conversion.json"

# stock transformers files, under transformers' names
MODEL_CONFIG_FILE = "config.json"
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(value: object) -> bool:
    """Whether `value` names a Hub repo (`<namespace>/<name>`) rather than something on this machine.

    A relative path such as `outputs/run` has the same shape, so an existing local path is never a Hub id.
    """
    return isinstance(value, str) and _HUB_ID.fullmatch(value) is not None and not Path(value).exists()
