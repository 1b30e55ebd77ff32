"""RobustBench's ModelInfo JSON schema (one per leaderboard kind) and a validator for the keywords it uses.

A small validator rather than a `jsonschema` dependency: the schema uses only `type`, `required`,
`additionalProperties`, `pattern`, `minLength` and `minimum`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "CORRUPTIONS_MODEL_INFO_FIELDS",
    "CORRUPTIONS_MODEL_INFO_SCHEMA",
    "MODEL_INFO_FIELDS",
    "MODEL_INFO_SCHEMA",
    "validate_model_info",
]

MODEL_INFO_FIELDS = (
    "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
    "eps", "clean_acc", "reported", "autoattack_acc", "footnote",
)
_PERCENT = r"^(100\.00|[0-9]{1,2}\.[0-9]{2})$"
_NULLABLE_STRING = {"type": ["string", "null"]}
MODEL_INFO_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "RobustBench ModelInfo (model_info/<dataset>/<threat_model>/<Name>.json)",
    "type": "object",
    "required": list(MODEL_INFO_FIELDS),
    "additionalProperties": False,
    "properties": {
        "link": _NULLABLE_STRING,
        "name": _NULLABLE_STRING,
        "authors": _NULLABLE_STRING,
        "additional_data": {"type": ["boolean", "null"]},
        "number_forward_passes": {"type": "integer", "minimum": 1},
        "dataset": {"type": "string", "pattern": r"^[a-z0-9_-]+$"},
        "venue": _NULLABLE_STRING,
        "architecture": {"type": "string", "minLength": 1},
        "eps": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(/255)?$"},
        "clean_acc": {"type": "string", "pattern": _PERCENT},
        "reported": {"type": ["string", "null"], "pattern": _PERCENT},
        "autoattack_acc": {"type": "string", "pattern": _PERCENT},
        "footnote": _NULLABLE_STRING,
    },
}
CORRUPTIONS_MODEL_INFO_FIELDS = tuple(
    "corruptions_acc" if f == "autoattack_acc" else f for f in MODEL_INFO_FIELDS
)
CORRUPTIONS_MODEL_INFO_SCHEMA: dict[str, Any] = {
    **MODEL_INFO_SCHEMA,
    "title": "RobustBench ModelInfo, corruptions leaderboard (model_info/<dataset>/corruptions/<Name>.json)",
    "required": list(CORRUPTIONS_MODEL_INFO_FIELDS),
    "properties": {
        **{k: v for k, v in MODEL_INFO_SCHEMA["properties"].items() if k != "autoattack_acc"},
        "eps": {"type": "null"},
        "corruptions_acc": {"type": "string", "pattern": _PERCENT},
    },
}


def validate_model_info(info: Any, schema: dict[str, Any] = MODEL_INFO_SCHEMA) -> list[str]:
    """Problems of `info` against the ModelInfo JSON schema ([] when valid); the keywords the schema uses."""
    problems: list[str] = []
    if not isinstance(info, dict):
        return ["ModelInfo must be a JSON object"]
    for key in schema["required"]:
        if key not in info:
            problems.append(f"missing field {key!r}")
    if schema.get("additionalProperties") is False:
        problems += [f"unknown field {key!r}" for key in info if key not in schema["properties"]]
    python_types = {"string": str, "boolean": bool, "integer": int, "null": type(None)}
    for key, rule in schema["properties"].items():
        if key not in info:
            continue
        value = info[key]
        allowed = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        fits = any(
            isinstance(value, python_types[t]) and not (t == "integer" and isinstance(value, bool)) for t in allowed
        )
        if not fits:
            problems.append(f"{key!r} must be {' or '.join(allowed)}, got {type(value).__name__}")
            continue
        if isinstance(value, str):
            if "pattern" in rule and not re.search(rule["pattern"], value):
                problems.append(f"{key!r} = {value!r} does not match {rule['pattern']}")
            if len(value) < rule.get("minLength", 0):
                problems.append(f"{key!r} must not be empty")
        if isinstance(value, int) and not isinstance(value, bool) and value < rule.get("minimum", value):
            problems.append(f"{key!r} must be >= {rule['minimum']}")
    return problems
