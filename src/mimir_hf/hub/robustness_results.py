"""Reading the evaluation report (`robustness.json`, schema in docs/CONTRACTS.md) for model cards.

A classifier's card states only what the report measured. This module loads the report, checks
that it can back a robustness claim (the clean, PGD and AutoAttack entries exist and agree with the
threat model) and formats its numbers; it never invents or rounds away a value that goes into the
card's metadata.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..evaluation.attack_specs import format_epsilon  # one formatter for reports and cards

__all__ = [
    "REPORT_FILENAME",
    "SUPPORTED_SCHEMA_VERSIONS",
    "MissingEvaluationError",
    "InvalidReportError",
    "load_robustness_report",
    "check_classifier_report",
    "format_epsilon",
    "attack_display_name",
    "is_sweep_entry",
    "pgd_steps",
    "autoattack_suite",
    "STANDARD_AUTOATTACK",
]

REPORT_FILENAME = "robustness.json"
SUPPORTED_SCHEMA_VERSIONS = (1,)
_PGD = re.compile(r"pgd-(\d+)")


class InvalidReportError(ValueError):
    """The report exists but does not follow the robustness.json schema."""


class MissingEvaluationError(ValueError):
    """A classifier would be published without the evaluation results its card must state."""


def load_robustness_report(path: str | Path) -> dict[str, Any]:
    """Load and structurally check a `robustness.json` (the file or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILENAME
    if not path.is_file():
        raise MissingEvaluationError(
            f"No evaluation report at {str(path)!r}. Evaluate the checkpoint first (mimir_hf.evaluation writes "
            f"{REPORT_FILENAME} with clean, PGD-20 and AutoAttack accuracy) and pass its path."
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InvalidReportError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(report, dict):
        raise InvalidReportError(f"{str(path)!r} must hold a JSON object.")
    version = report.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidReportError(
            f"{str(path)!r} has schema_version {version!r}; this mimir_hf reads {list(SUPPORTED_SCHEMA_VERSIONS)}."
        )
    threat = report.get("threat_model")
    if not isinstance(threat, dict) or not _is_number(threat.get("epsilon")):
        raise InvalidReportError(f"{str(path)!r}: 'threat_model' must be an object with a numeric 'epsilon'.")
    attacks = report.get("attacks")
    if not isinstance(attacks, dict):
        raise InvalidReportError(f"{str(path)!r}: 'attacks' must be an object mapping attack names to results.")
    for name, entry in attacks.items():
        if not isinstance(entry, dict):
            raise InvalidReportError(f"{str(path)!r}: attacks[{name!r}] must be an object.")
        accuracy = entry.get("accuracy")
        if not _is_number(accuracy) or not 0.0 <= accuracy <= 1.0:
            raise InvalidReportError(
                f"{str(path)!r}: attacks[{name!r}].accuracy must be a fraction in [0, 1], got {accuracy!r}."
            )
    report["_path"] = str(path)
    return report


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_sweep_entry(name: str) -> bool:
    return "@" in name


def pgd_steps(name: str) -> int | None:
    match = _PGD.fullmatch(name)
    return int(match.group(1)) if match else None


def check_classifier_report(report: dict[str, Any]) -> None:
    """Raise `MissingEvaluationError` unless the report backs a robustness claim.

    Needed: `clean`, at least one `pgd-<k>` and `autoattack`, each at the threat model's ε (the
    clean entry excepted).
    """
    attacks = report["attacks"]
    where = report.get("_path", REPORT_FILENAME)
    missing = []
    if "clean" not in attacks:
        missing.append("'clean'")
    if not any(pgd_steps(name) is not None for name in attacks):
        missing.append("a PGD entry such as 'pgd-20'")
    if "autoattack" not in attacks:
        missing.append("'autoattack'")
    if missing:
        found = ", ".join(repr(name) for name in attacks) or "none"
        raise MissingEvaluationError(
            f"Refusing to publish a classifier without evaluation results: {where} lacks {', '.join(missing)} "
            f"(found: {found}). Run the robustness evaluation with clean accuracy, PGD-20 and AutoAttack first."
        )
    epsilon = float(report["threat_model"]["epsilon"])
    for name, entry in attacks.items():
        if name == "clean" or is_sweep_entry(name):
            continue
        entry_eps = entry.get("epsilon")
        if _is_number(entry_eps) and not math.isclose(entry_eps, epsilon, rel_tol=1e-4, abs_tol=1e-7):
            raise MissingEvaluationError(
                f"{where}: attacks[{name!r}] ran at epsilon {entry_eps}, but the threat model states {epsilon}. "
                "A card can only state results at one budget; name budget sweeps 'pgd-20@eps=<k>/255'."
            )


_DISPLAY = {
    "clean": "Clean",
    "autoattack": "AutoAttack",
    "cw": "CW-L∞ (PGD on the CW margin)",
    "square": "Square (black-box)",
    "pgd-mi": "PGD-MI (adaptive: CE + nHSIC)",
    "pgd-feature": "PGD-feature (adaptive: feature distance)",
}


STANDARD_AUTOATTACK = ("apgd-ce", "apgd-t", "fab-t", "square")
_AUTOATTACK_COMPONENTS = {
    "apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "apgd-dlr": "APGD-DLR", "fab": "FAB", "fab-t": "FAB-T", "square": "Square",
}


def autoattack_suite(entry: dict[str, Any] | None) -> str | None:
    """What an AutoAttack entry ran, from the entry alone: "standard", or the components that ran.

    "standard" only when the report says version standard and nothing was dropped; a custom subset
    (the quickstart's APGD-CE) is named by its components, so a card never claims the full suite for a
    partial run. None when the report does not say (older reports): the card then names no suite.
    """
    if not entry:
        return None
    version = entry.get("version")
    ran = entry.get("attacks_run") or (entry.get("attacks") if version == "custom" else None)
    if version in ("standard", "plus") and (ran is None or (version == "standard" and sorted(ran) == sorted(STANDARD_AUTOATTACK))):
        return version
    if ran:
        return "custom: " + ", ".join(_AUTOATTACK_COMPONENTS.get(a, a) for a in ran)
    return None


def attack_display_name(name: str, entry: dict[str, Any] | None = None) -> str:
    """How a report entry is named in a card; `entry` (the report's record) refines AutoAttack's name."""
    base, _, suffix = name.partition("@")
    steps = pgd_steps(base)
    text = f"PGD-{steps}" if steps is not None else _DISPLAY.get(base, base)
    if base == "autoattack":
        suite = autoattack_suite(entry)
        if suite:
            text += f" ({suite})"
    if suffix.startswith("eps="):
        text += f" at ε={suffix[len('eps='):]}"
    elif suffix:
        text += f" ({suffix})"
    return text


def attack_order(name: str) -> tuple:
    """Clean first, then PGD by steps, the other white-box attacks, black-box, AutoAttack last."""
    base = name.partition("@")[0]
    steps = pgd_steps(base)
    rank = {"clean": 0, "cw": 2, "pgd-mi": 3, "pgd-feature": 4, "square": 5, "autoattack": 6}
    return (is_sweep_entry(name), 1 if steps is not None else rank.get(base, 5.5), steps or 0, name)
