"""Parsing `robustness.json` into the fields of a `RobustnessReport`: the one place that reads the file.

Every field is required; a missing one or one of the wrong type is an error that names the file and
the field, never a default. Fields that exist only for some attacks (AutoAttack's components, Square's
queries) are read where present. An attack's `standard_autoattack` must agree with its version and
the components that ran (one rule, `autoattack_suite.is_standard_autoattack`).

Schema version 1 (reports written before the weights fingerprint) still loads: its attacks carry no
`kind`, `norm` or `standard_autoattack`, which are then worked out once, here, from the attack's name
(by the evaluation's own name parser), the threat model, and AutoAttack's version and components. Its
`weights_fingerprint` is None, and so are `preprocessing` and the `evaluation` settings in the oldest
files, which did not record them.
"""

from __future__ import annotations

from typing import Any

from ..attacks import NORMS
from .attack_specs import AttackSettings, parse_attack_name
from .autoattack_suite import is_standard_autoattack
from .results import AttackRecord, AutoAttackComponent, Check, ThreatModel, WorstCase

__all__ = ["InvalidReportError", "SUPPORTED_SCHEMA_VERSIONS", "report_fields"]

SUPPORTED_SCHEMA_VERSIONS = (1, 2)
_REGENERATE = "rerun the evaluation (recipes/evaluate.py) to regenerate it"
# keys of an attack entry read into typed fields; any other key is kept verbatim in `extra`
_ATTACK_KEYS = {
    "kind", "norm", "accuracy", "epsilon", "num_samples", "steps", "step_size", "restarts", "seed", "library",
    "library_version", "wall_time_seconds", "max_perturbation", "num_correct", "standard_autoattack", "version",
    "attacks", "attacks_run", "components", "note", "queries", "mi_weight", "mi_dropped_steps", "batch_size",
}


class InvalidReportError(ValueError):
    """The file is not a robustness report this mimir_hf reads (a missing field, a wrong type, a newer schema)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KINDS = {
    "a string": lambda v: isinstance(v, str),
    "an integer": _is_int,
    "a number": _is_number,
    "true or false": lambda v: isinstance(v, bool),
    "a list": lambda v: isinstance(v, list),
    "an object": lambda v: isinstance(v, dict),
}


class _Fields:
    """One JSON object of the report, read field by field with errors that name the file and the field."""

    def __init__(self, data: Any, source: str, where: str = "") -> None:
        self.source, self.where = source, where
        if not isinstance(data, dict):
            raise self.error(f"{where or 'the report'} must be a JSON object")
        self.data = data

    def error(self, problem: str) -> InvalidReportError:
        return InvalidReportError(f"{self.source}: {problem}; {_REGENERATE}.")

    def _name(self, key: str) -> str:
        return f"'{self.where}.{key}'" if self.where else f"'{key}'"

    def get(self, key: str, kind: str, *, nullable: bool = False, required: bool = True) -> Any:
        if key not in self.data:
            if required:
                raise self.error(f"the field {self._name(key)} is missing")
            return None
        value = self.data[key]
        if value is None and (nullable or not required):
            return None
        if not _KINDS[kind](value):
            raise self.error(f"{self._name(key)} must be {kind}{' or null' if nullable else ''}, got {value!r}")
        return value

    def nested(self, key: str, *, required: bool = True) -> _Fields | None:
        value = self.get(key, "an object", required=required)
        return None if value is None else _Fields(value, self.source, f"{self.where}.{key}" if self.where else key)

    def strings(self, key: str, *, required: bool = True) -> list[str] | None:
        values = self.get(key, "a list", required=required)
        if values is not None and not all(isinstance(v, str) for v in values):
            raise self.error(f"{self._name(key)} must be a list of strings, got {values!r}")
        return values


def report_fields(data: Any, source: str) -> dict[str, Any]:
    """The `RobustnessReport` constructor's arguments from robustness.json's content."""
    top = _Fields(data, source)
    version = top.get("schema_version", "an integer")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidReportError(f"{source} has schema_version {version}; this mimir_hf reads "
                                 f"{list(SUPPORTED_SCHEMA_VERSIONS)}. Update mimir_hf, or {_REGENERATE} with this one.")
    legacy = version == 1
    threat = _threat_model(top.nested("threat_model"))
    attacks = top.nested("attacks")
    evaluation = top.nested("evaluation", required=not legacy)
    worst = top.nested("worst_case")
    return {
        "schema_version": version,
        "model": top.get("model", "a string"),
        "dataset": top.get("dataset", "a string"),
        "split": top.get("split", "a string"),
        "num_samples": top.get("num_samples", "an integer"),
        "seed": top.get("seed", "an integer"),
        "weights_fingerprint": None if legacy else top.get("weights_fingerprint", "a string", nullable=True),
        "threat_model": threat,
        "preprocessing": top.get("preprocessing", "an object", required=not legacy),
        "batch_size": None if evaluation is None else evaluation.get("batch_size", "an integer", nullable=True),
        "num_processes": None if evaluation is None else evaluation.get("num_processes", "an integer"),
        "versions": top.get("versions", "an object"),
        "attacks": {name: _attack(attacks.nested(name), name, threat, legacy) for name in attacks.data},
        "worst_case": WorstCase(accuracy=worst.get("accuracy", "a number"), attacks=worst.strings("attacks")),
        "checks": [_check(_Fields(entry, source, f"checks[{i}]"), legacy)
                   for i, entry in enumerate(top.get("checks", "a list"))],
        "skipped_checks": top.strings("skipped_checks"),
        "autoattack_warnings": top.strings("autoattack_warnings"),
        "per_class": top.get("per_class", "an object"),
        "per_sample_file": top.get("per_sample_file", "a string"),
        "autoattack_log": top.get("autoattack_log", "a string", nullable=True),
        "curve_file": top.get("curve_file", "a string", nullable=True),
    }


def _threat_model(fields: _Fields) -> ThreatModel:
    norm = fields.get("norm", "a string")
    if norm not in NORMS:
        raise fields.error(f"'threat_model.norm' must be one of {list(NORMS)}, got {norm!r}")
    input_range = fields.get("input_range", "a list")
    return ThreatModel(norm=norm, epsilon=fields.get("epsilon", "a number"),
                       normalization=fields.get("normalization", "a string"), input_range=tuple(input_range))


def _check(fields: _Fields, legacy: bool) -> Check:
    return Check(
        name=fields.get("name", "a string"),
        passed=fields.get("passed", "true or false"),
        detail=fields.get("detail", "a string"),
        within_tolerance=None if legacy else fields.get("within_tolerance", "true or false"),
    )


def _attack(fields: _Fields, name: str, threat: ThreatModel, legacy: bool) -> AttackRecord:
    accuracy = fields.get("accuracy", "a number")
    if not 0.0 <= accuracy <= 1.0:
        raise fields.error(f"'{fields.where}.accuracy' must be a fraction in [0, 1], got {accuracy!r}")
    kind = _legacy_kind(fields, name, threat) if legacy else fields.get("kind", "a string")
    version = fields.get("version", "a string", required=kind == "autoattack")
    attacks_run = fields.strings("attacks_run", required=False)
    requested = fields.strings("attacks", required=False)
    components = fields.get("components", "a list", required=False)
    standard = _standard(kind, version, attacks_run)
    if not legacy and fields.get("standard_autoattack", "true or false") != standard:
        raise fields.error(f"'{fields.where}.standard_autoattack' contradicts its version {version!r} and the "
                           f"components that ran ({attacks_run})")
    return AttackRecord(
        name=name,
        kind=kind,
        norm=threat.norm if legacy else fields.get("norm", "a string"),
        epsilon=fields.get("epsilon", "a number"),
        accuracy=accuracy,
        num_samples=fields.get("num_samples", "an integer"),
        num_correct=fields.get("num_correct", "an integer"),
        steps=fields.get("steps", "an integer", nullable=True),
        step_size=fields.get("step_size", "a number", nullable=True),
        restarts=fields.get("restarts", "an integer"),
        seed=fields.get("seed", "an integer"),
        library=fields.get("library", "a string"),
        library_version=fields.get("library_version", "a string"),
        wall_time_seconds=fields.get("wall_time_seconds", "a number"),
        max_perturbation=fields.get("max_perturbation", "a number"),
        standard_autoattack=standard,
        version=version,
        requested_components=None if requested is None else tuple(requested),
        attacks_run=None if attacks_run is None else tuple(attacks_run),
        components=None if components is None else tuple(
            _component(_Fields(c, fields.source, f"{fields.where}.components[{i}]")) for i, c in enumerate(components)
        ),
        note=fields.get("note", "a string", required=False),
        queries=fields.get("queries", "an integer", required=False),
        mi_weight=fields.get("mi_weight", "a number", required=False),
        mi_dropped_steps=fields.get("mi_dropped_steps", "an integer", required=False),
        batch_size=fields.get("batch_size", "an integer", required=False),
        extra={key: value for key, value in fields.data.items() if key not in _ATTACK_KEYS},
    )


def _component(fields: _Fields) -> AutoAttackComponent:
    return AutoAttackComponent(
        name=fields.get("name", "a string"),
        attacked=fields.get("attacked", "an integer"),
        broken=fields.get("broken", "an integer"),
        robust_accuracy_after=fields.get("robust_accuracy_after", "a number"),
        wall_time_seconds=fields.get("wall_time_seconds", "a number"),
    )


def _legacy_kind(fields: _Fields, name: str, threat: ThreatModel) -> str:
    """A version-1 attack's kind, from its name as the evaluation's own parser reads it."""
    try:
        return parse_attack_name(name, AttackSettings(norm=threat.norm, epsilon=threat.epsilon)).kind
    except ValueError as error:
        raise fields.error(f"'{fields.where}' is no attack this mimir_hf knows ({error})") from None


def _standard(kind: str, version: str | None, attacks_run: list[str] | None) -> bool:
    return kind == "autoattack" and is_standard_autoattack(version, attacks_run)
