"""What a card says about a robustness report: whether it can back a robustness claim, and how its
attacks are named and ordered.

A classifier's card states only what the report measured: the report (`RobustnessReport.load`, the
one reader of robustness.json) must hold clean, PGD and AutoAttack results at the threat model's
budget, and every attack is named from its recorded kind and norm, never from its key.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..artefacts import REPORT_FILE
from ..evaluation.attack_specs import format_epsilon, norm_display
from ..evaluation.results import AttackRecord
from ..evaluation.robustness_report import InvalidReportError, RobustnessReport, report_file

__all__ = [
    "InvalidReportError",
    "MissingEvaluationError",
    "attack_display_name",
    "attack_order",
    "check_classifier_report",
    "load_classifier_report",
]


class MissingEvaluationError(ValueError):
    """A classifier would be published without the evaluation results its card must state."""


def check_classifier_report(report: RobustnessReport, source: str = "the report") -> None:
    """Raise `MissingEvaluationError` unless the report backs a robustness claim.

    Needed: `clean`, at least one PGD attack and `autoattack`, each at the threat model's ε (the clean entry
    and the ε-sweep excepted). `source` names the report in the error.
    """
    attacks = report.attacks
    missing = []
    if "clean" not in attacks:
        missing.append("'clean'")
    if not any(r.kind == "pgd" and not r.is_sweep for r in attacks.values()):
        missing.append("a PGD entry such as 'pgd-20'")
    if "autoattack" not in attacks:
        missing.append("'autoattack'")
    if missing:
        found = ", ".join(repr(name) for name in attacks) or "none"
        raise MissingEvaluationError(
            f"Refusing to publish a classifier without evaluation results: {source} lacks {', '.join(missing)} "
            f"(found: {found}). Run the robustness evaluation with clean accuracy, PGD-20 and AutoAttack first."
        )
    for name, record in report.headline_attacks.items():
        if record.kind != "clean" and not math.isclose(record.epsilon, report.epsilon, rel_tol=1e-4, abs_tol=1e-7):
            raise MissingEvaluationError(
                f"{source}: attacks[{name!r}] ran at epsilon {record.epsilon}, but the threat model states "
                f"{report.epsilon}. A card can only state results at one budget; name budget sweeps "
                "'pgd-20@eps=<k>/255'."
            )


def load_classifier_report(path: str | Path) -> tuple[RobustnessReport, Path]:
    """The report at `path` (robustness.json or its folder), checked to back a robustness claim, and its file."""
    path = report_file(path)
    if not path.is_file():
        raise MissingEvaluationError(
            f"No evaluation report at {str(path)!r}. Evaluate the checkpoint first (mimir_hf.evaluation writes "
            f"{REPORT_FILE} with clean, PGD-20 and AutoAttack accuracy) and pass its path."
        )
    report = RobustnessReport.load(path)
    check_classifier_report(report, str(path))
    return report, path


def attack_display_name(record: AttackRecord, with_budget: bool = True) -> str:
    """How a card names an attack: from its kind, norm and steps; AutoAttack with the suite that ran, an
    ε-sweep entry with its budget (unless `with_budget` is False)."""
    norm = norm_display(record.norm)
    text = {
        "clean": "Clean",
        "pgd": f"PGD-{record.steps}",
        "cw": f"CW-{norm} (PGD on the CW margin)",
        "square": "Square (black-box)",
        "pgd-mi": "PGD-MI (adaptive: CE + nHSIC)",
        "pgd-feature": "PGD-feature (adaptive: feature distance)",
        "autoattack": "AutoAttack",
    }.get(record.kind, record.family)
    if record.autoattack_suite:
        text += f" ({record.autoattack_suite})"
    if with_budget and record.is_sweep:
        text += f" at ε={format_epsilon(record.epsilon, record.norm)}"
    return text


_RANK = {"clean": 0, "pgd": 1, "cw": 2, "pgd-mi": 3, "pgd-feature": 4, "square": 5, "autoattack": 6}


def attack_order(record: AttackRecord) -> tuple:
    """Clean first, then PGD by steps, the other white-box attacks, black-box, AutoAttack last; sweeps after."""
    steps = (record.steps or 0) if record.kind == "pgd" else 0
    return (record.is_sweep, _RANK.get(record.kind, 5.5), steps, record.name)
