"""Plain records shared by the runner, the checks and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .attack_specs import AttackSpec

__all__ = ["AttackResult", "Check"]


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

    def record(self, batch_size: int | None = None) -> dict[str, Any]:
        """The attack's entry in `robustness.json`."""
        spec = self.spec
        entry: dict[str, Any] = {
            "accuracy": self.accuracy,
            "epsilon": spec.epsilon,
            "num_samples": int(self.correct.size),
            "steps": spec.steps,
            "step_size": spec.step_size,
            "restarts": spec.restarts,
            "seed": spec.seed,
            "library": spec.library,
            "library_version": self.library_version,
            "wall_time_seconds": round(self.wall_time_seconds, 3),
            "max_perturbation": self.max_perturbation,
            "num_correct": int(np.sum(self.correct)),
        }
        if batch_size is not None and spec.kind == "pgd-mi":
            entry["batch_size"] = batch_size  # nHSIC is a batch statistic
        for key, value in spec.options.items():
            entry.setdefault(key, value)
        entry.update(self.extra)
        return entry


@dataclass
class Check:
    """One gradient-masking sanity check."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": bool(self.passed), "detail": self.detail}
