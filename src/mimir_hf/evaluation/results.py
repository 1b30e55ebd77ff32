"""Plain records shared by the runner, the checks and the report: one attack's per-sample outcome as
measured (`AttackResult`), the same attack as `robustness.json` states it (`AttackRecord`), one
gradient-masking check (`Check`), the threat model and the per-image worst case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .attack_specs import AttackSpec, format_epsilon, norm_display
from .autoattack_suite import autoattack_suite, is_standard_autoattack

__all__ = ["AttackRecord", "AttackResult", "AutoAttackComponent", "Check", "ThreatModel", "WorstCase"]


@dataclass(frozen=True)
class AutoAttackComponent:
    """One component of AutoAttack's cascade, over all images: points attacked and broken, accuracy after it."""

    name: str
    attacked: int
    broken: int
    robust_accuracy_after: float
    wall_time_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "attacked": self.attacked, "broken": self.broken,
                "robust_accuracy_after": self.robust_accuracy_after, "wall_time_seconds": self.wall_time_seconds}


@dataclass(frozen=True)
class AttackRecord:
    """One attack as `robustness.json` states it: what ran (kind, norm, budget, settings) and what it found.

    Readers take the kind, the norm and whether AutoAttack was the standard suite from here, never from
    the attack's name. The fields after `standard_autoattack` exist for the attacks that have them
    (None elsewhere); `extra` keeps, verbatim, keys a newer writer added.
    """

    name: str
    kind: str  # clean | pgd | cw | autoattack | square | pgd-mi | pgd-feature
    norm: str  # "Linf" | "L2"
    epsilon: float
    accuracy: float
    num_samples: int
    num_correct: int
    steps: int | None
    step_size: float | None
    restarts: int
    seed: int
    library: str
    library_version: str
    wall_time_seconds: float
    max_perturbation: float
    standard_autoattack: bool = False
    version: str | None = None  # AutoAttack: the version asked for
    requested_components: tuple[str, ...] | None = None  # AutoAttack "custom": the components asked for
    attacks_run: tuple[str, ...] | None = None  # AutoAttack and Square: the components that ran
    components: tuple[AutoAttackComponent, ...] | None = None  # AutoAttack: what each component broke
    note: str | None = None  # why the components that ran differ from those asked for
    queries: int | None = None  # Square
    mi_weight: float | None = None  # pgd-mi
    mi_dropped_steps: int | None = None  # pgd-mi
    batch_size: int | None = None  # pgd-mi: nHSIC is a batch statistic
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_sweep(self) -> bool:
        """Run at a budget of its own (`pgd-20@eps=16/255`): part of the ε-curve, not of the headline results."""
        return "@" in self.name

    @property
    def family(self) -> str:
        """The attack without its own budget: the name its ε-curve is drawn under."""
        return self.name.partition("@")[0]

    @property
    def white_box(self) -> bool:
        return self.kind in ("pgd", "cw", "pgd-mi", "pgd-feature")

    @property
    def autoattack_suite(self) -> str | None:
        """"standard", "plus" or "custom: <components that ran>" for AutoAttack; None for every other attack."""
        if self.kind != "autoattack":
            return None
        return autoattack_suite(self.version, self.attacks_run, self.requested_components)

    def settings(self) -> dict[str, Any]:
        """The settings that change what the accuracy means (a comparison notes any that differ)."""
        return {"epsilon": self.epsilon, "steps": self.steps, "step_size": self.step_size, "restarts": self.restarts,
                "version": self.version, "attacks": _listed(self.requested_components),
                "attacks_run": _listed(self.attacks_run), "queries": self.queries, "mi_weight": self.mi_weight}

    def to_dict(self) -> dict[str, Any]:
        """The attack's entry in `robustness.json` (its name is the key it is stored under)."""
        entry: dict[str, Any] = {
            "kind": self.kind, "norm": self.norm, "accuracy": self.accuracy, "epsilon": self.epsilon,
            "num_samples": self.num_samples, "steps": self.steps, "step_size": self.step_size,
            "restarts": self.restarts, "seed": self.seed, "library": self.library,
            "library_version": self.library_version, "wall_time_seconds": self.wall_time_seconds,
            "max_perturbation": self.max_perturbation, "num_correct": self.num_correct,
            "standard_autoattack": self.standard_autoattack,
        }
        optional = {
            "batch_size": self.batch_size, "version": self.version, "attacks": _listed(self.requested_components),
            "queries": self.queries, "mi_weight": self.mi_weight, "mi_dropped_steps": self.mi_dropped_steps,
            "attacks_run": _listed(self.attacks_run), "note": self.note,
            "components": None if self.components is None else [c.to_dict() for c in self.components],
        }
        entry.update({key: value for key, value in optional.items() if value is not None})
        entry.update(self.extra)
        return entry


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


@dataclass
class AttackResult:
    """Per-sample outcome of one attack. `correct[i]` is True when sample i is still classified
    correctly (robust accuracy counts a point only if it is correct clean *and* under attack)."""

    spec: AttackSpec
    correct: np.ndarray  # bool (N,)
    predictions: np.ndarray  # int64 (N,), -1 where the attack was not run (clean-misclassified points)
    wall_time_seconds: float = 0.0
    max_perturbation: float = 0.0
    library_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if self.correct.size else float("nan")

    def record(self, batch_size: int | None = None) -> AttackRecord:
        """What `robustness.json` states about this attack."""
        spec = self.spec
        known = {**spec.options, **self.extra}
        components = known.pop("components", None)
        requested = known.pop("attacks", None)
        attacks_run = known.pop("attacks_run", None)
        version = known.pop("version", None)
        return AttackRecord(
            name=spec.name,
            kind=spec.kind,
            norm=spec.norm,
            epsilon=spec.epsilon,
            accuracy=self.accuracy,
            num_samples=int(self.correct.size),
            num_correct=int(np.sum(self.correct)),
            steps=spec.steps,
            step_size=spec.step_size,
            restarts=spec.restarts,
            seed=spec.seed,
            library=spec.library,
            library_version=self.library_version,
            wall_time_seconds=round(self.wall_time_seconds, 3),
            max_perturbation=self.max_perturbation,
            standard_autoattack=spec.kind == "autoattack" and is_standard_autoattack(version, attacks_run),
            version=version,
            requested_components=None if requested is None else tuple(requested),
            attacks_run=None if attacks_run is None else tuple(attacks_run),
            components=None if components is None else tuple(AutoAttackComponent(**c) for c in components),
            note=known.pop("note", None),
            queries=known.pop("queries", None),
            mi_weight=known.pop("mi_weight", None),
            mi_dropped_steps=known.pop("mi_dropped_steps", None),
            batch_size=batch_size if batch_size is not None and spec.kind == "pgd-mi" else None,
            extra=known,
        )


@dataclass(frozen=True)
class Check:
    """One gradient-masking sanity check.

    `within_tolerance`: the check passed only because the figures disagree by less than its tolerance
    (e.g. AutoAttack one image above PGD); the detail then says so. None for reports written before
    the flag existed.
    """

    name: str
    passed: bool
    detail: str
    within_tolerance: bool | None = False

    @property
    def label(self) -> str:
        """How the printed table marks the check."""
        if not self.passed:
            return "FAILED"
        return "ok, within tolerance" if self.within_tolerance else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": bool(self.passed), "detail": self.detail,
                "within_tolerance": self.within_tolerance}


@dataclass(frozen=True)
class ThreatModel:
    """The budget every headline attack ran at, in [0, 1] pixel units, and how the pixels reach the model."""

    norm: str  # "Linf" | "L2"
    epsilon: float
    normalization: str = "none"
    input_range: tuple[float, float] = (0.0, 1.0)

    @property
    def epsilon_text(self) -> str:
        return format_epsilon(self.epsilon, self.norm)

    @property
    def norm_display(self) -> str:
        return norm_display(self.norm)

    def describe(self) -> str:
        """"L∞ ε = 8/255", "L2 ε = 0.5": how tables and titles state the threat model."""
        return f"{self.norm_display} ε = {self.epsilon_text}"


@dataclass(frozen=True)
class WorstCase:
    """Per image, correct under every one of `attacks` (clean and every attack at the headline budget)."""

    accuracy: float
    attacks: list[str]
