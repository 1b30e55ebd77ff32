"""AutoAttack's suites and the one rule for what a run was: the standard suite, or something less.

RobustBench's leaderboards, the cards and the Hub's eval results all state "AutoAttack standard" only
when the four standard components ran on every image. An evaluation that asked for "standard" can still
run fewer (APGD-T needs four classes, so it is dropped on a three-class model), and a quick run asks
for a custom subset; either is named by the components that ran, so no output claims the full suite
for a partial run.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PLUS_AUTOATTACK", "STANDARD_AUTOATTACK", "autoattack_suite", "component_display_name", "is_standard_autoattack"]

STANDARD_AUTOATTACK = ("apgd-ce", "apgd-t", "fab-t", "square")
"""The components of pyautoattack's `version="standard"`, in its order."""
PLUS_AUTOATTACK = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
"""The components of pyautoattack's `version="plus"`, in its order."""

_DISPLAY = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "apgd-dlr": "APGD-DLR", "fab": "FAB", "fab-t": "FAB-T",
            "square": "Square"}
_SUITES = {"standard": STANDARD_AUTOATTACK, "plus": PLUS_AUTOATTACK}


def component_display_name(component: str) -> str:
    return _DISPLAY.get(component, component)


def autoattack_suite(
    version: str | None, attacks_run: Sequence[str] | None, requested: Sequence[str] | None = None
) -> str | None:
    """What an AutoAttack run was: "standard", "plus", or "custom: APGD-CE, ..." naming what ran.

    Args:
        version: the version the evaluation asked for ("standard", "plus" or "custom").
        attacks_run: the components that ran (None when the report does not say: older reports).
        requested: the components a "custom" run asked for, used when `attacks_run` is unknown.

    Returns None when nothing says which components ran.
    """
    ran = list(attacks_run) if attacks_run is not None else (list(requested) if version == "custom" and requested else None)
    suite = _SUITES.get(version or "")
    if suite is not None and (ran is None or sorted(ran) == sorted(suite)):
        return version
    if ran:
        return "custom: " + ", ".join(component_display_name(a) for a in ran)
    return None


def is_standard_autoattack(version: str | None, attacks_run: Sequence[str] | None) -> bool:
    """True only when the standard suite ran in full (a dropped component makes it a custom run)."""
    return autoattack_suite(version, attacks_run) == "standard"
