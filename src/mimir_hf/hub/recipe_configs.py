"""What a card shows of how a model was made: the run's `recipe_config.yaml` with secrets removed,
the options it chose (those that differ from the defaults of the argument classes the file names, plus
the essentials), and MIMIR's stage-1 settings read from the pretraining checkpoint a classifier started from."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from ..artefacts import RECIPE_CONFIG
from ..training.runs import RecipeConfig

__all__ = [
    "chosen_settings",
    "config_extras",
    "load_recipe_config",
    "redact_config",
    "stage_one_settings",
]

_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)


def redact_config(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Replace secret-looking values (keys naming a token, password, ...) and known secret strings."""
    if isinstance(value, dict):
        return {
            key: ("<redacted>" if _SECRET_KEY.search(str(key)) and item not in (None, "", False) else redact_config(item, secrets))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_config(item, secrets) for item in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, "<redacted>")
    return value


def load_recipe_config(directory: str | Path, secrets: tuple[str, ...] = ()) -> RecipeConfig | None:
    """`<directory>/recipe_config.yaml` with secrets removed, or None when the run did not write one."""
    path = Path(directory) / RECIPE_CONFIG
    if not path.is_file():
        return None
    record = RecipeConfig.load(path)
    return dataclasses.replace(
        record, arguments=redact_config(record.arguments, secrets), resolved=redact_config(record.resolved, secrets)
    )


def config_extras(config: dict[str, Any]) -> dict[str, Any]:
    """Keys of config.json that the stock configuration class does not define (the MIMIR settings)."""
    try:
        from transformers import AutoConfig

        stock = AutoConfig.for_model(config["model_type"]).to_dict()
    except (KeyError, ValueError):  # no or unknown model type: show nothing rather than everything
        return {}
    ignore = {"transformers_version", "architectures", "dtype", "torch_dtype", "id2label", "label2id", "auto_map", "use_cache"}
    return {k: v for k, v in config.items() if k not in stock and k not in ignore}


# Shown even at their default: what a reader needs to know how the model was made.
_ALWAYS_SHOWN = (
    "dataset", "model_name_or_path", "model_size", "image_size", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "learning_rate", "base_learning_rate", "adversarial_method", "attack_epsilon",
    "attack_step_size", "attack_steps", "mi_weight", "attacks", "epsilon", "autoattack_version",
)
# What MIMIR's stage 1 chose, read from the pretraining checkpoint's config.json for a classifier's card.
_STAGE_ONE_KEYS = ("mask_ratio", "norm_pix_loss")


def chosen_settings(record: RecipeConfig) -> tuple[dict[str, Any], bool]:
    """The options of a recipe config that differ from the defaults of the argument classes it names (plus the
    essentials), with the values resolved at run time, and whether it was filtered: a file that names no
    argument classes (written before they were recorded, or by hand) is shown whole. A card lists these; the
    full file travels next to it."""
    ran = {key: record.resolved.get(key, value) for key, value in record.arguments.items()}
    defaults = record.default_arguments()
    if defaults is None:
        return ran, False
    chosen = {
        key: ran[key] for key, value in record.arguments.items()
        if (key in _ALWAYS_SHOWN and ran[key] not in (None, -1)) or key not in defaults or defaults[key] != value
    }
    return chosen, True


def stage_one_settings(training_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """MIMIR's pretraining settings (λ, the attack, the mask ratio) of the checkpoint a classifier started
    from, when that checkpoint is a local directory; a Hub id is linked instead (`base_model`)."""
    source = (training_config or {}).get("model_name_or_path")
    if not isinstance(source, str) or not (Path(source) / "config.json").is_file():
        return None
    config = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    settings = config_extras(config)
    settings.update({key: config[key] for key in _STAGE_ONE_KEYS if key in config})
    return settings or None
