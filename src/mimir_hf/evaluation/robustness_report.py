"""The robustness report: `robustness.json` (schema in docs/CONTRACTS.md), per-sample results,
the worst-case column and the printed table."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .attack_specs import format_epsilon, norm_display
from .results import AttackResult, Check

__all__ = ["RobustnessReport", "SCHEMA_VERSION", "load_per_sample"]

SCHEMA_VERSION = 1
PER_SAMPLE_FILE = "per_sample.npz"
REPORT_FILE = "robustness.json"
AUTOATTACK_LOG = "autoattack.log"
CURVE_FILE = "accuracy_vs_epsilon.png"


@dataclass
class RobustnessReport:
    """Everything one evaluation produced. `save(output_dir)` writes it to disk."""

    model: str
    dataset: str
    split: str
    epsilon: float
    seed: int
    labels: np.ndarray
    results: dict[str, AttackResult]
    indices: np.ndarray | None = None
    normalization: str = "none"
    versions: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    skipped_checks: list[str] = field(default_factory=list)
    autoattack_warnings: list[str] = field(default_factory=list)
    batch_size: int | None = None
    class_names: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    num_processes: int = 1
    norm: str = "Linf"

    # ------------------------------------------------------------------ derived figures
    @property
    def num_samples(self) -> int:
        return int(self.labels.size)

    def accuracy(self, name: str) -> float:
        return self.results[name].accuracy

    @property
    def worst_case_attacks(self) -> list[str]:
        """The attacks the worst case is taken over: clean and every attack at the headline budget."""
        return [
            name
            for name, r in self.results.items()
            if r.spec.kind == "clean" or abs(r.spec.epsilon - self.epsilon) <= 1e-9
        ]

    @property
    def worst_case_correct(self) -> np.ndarray:
        """Per sample: correct under *every* attack at the headline budget (a point broken by any is broken)."""
        names = self.worst_case_attacks
        if not names:
            return np.zeros(self.num_samples, dtype=bool)
        return np.logical_and.reduce([self.results[n].correct for n in names])

    @property
    def worst_case_accuracy(self) -> float:
        return float(np.mean(self.worst_case_correct)) if self.num_samples else float("nan")

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def per_class(self) -> dict[str, dict[str, Any]]:
        """Clean and worst-case accuracy per class (a 'robust' favourite class is not robustness)."""
        clean = next((r for r in self.results.values() if r.spec.kind == "clean"), None)
        worst = self.worst_case_correct
        table: dict[str, dict[str, Any]] = {}
        for label in np.unique(self.labels):
            mask = self.labels == label
            name = (
                self.class_names[int(label)]
                if self.class_names and 0 <= int(label) < len(self.class_names)
                else str(int(label))
            )
            table[name] = {
                "label": int(label),
                "support": int(mask.sum()),
                "clean_accuracy": float(np.mean(clean.correct[mask])) if clean is not None else None,
                "worst_case_accuracy": float(np.mean(worst[mask])),
            }
        return table

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        versions = dict(self.versions)
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "threat_model": {
                "norm": self.norm,
                "epsilon": self.epsilon,
                "epsilon_text": format_epsilon(self.epsilon, self.norm),
                "input_range": [0.0, 1.0],
                "normalization": self.normalization,
            },
            "preprocessing": {**self.preprocessing, "normalization": self.normalization},
            "evaluation": {"batch_size": self.batch_size, "num_processes": self.num_processes,
                           "indices_in_split": "per_sample_file"},
            "versions": versions,
            "attacks": {name: r.record(self.batch_size) for name, r in self.results.items()},
            "worst_case": {"accuracy": self.worst_case_accuracy, "attacks": self.worst_case_attacks},
            "checks": [c.to_dict() for c in self.checks],
            "checks_passed": not self.failed_checks,
            "skipped_checks": list(self.skipped_checks),
            "autoattack_warnings": list(self.autoattack_warnings),
            "per_class": self.per_class(),
            "per_sample_file": PER_SAMPLE_FILE,
            "autoattack_log": self.files.get("autoattack_log"),
            "curve_file": self.files.get("curve"),
        }

    def save(
        self,
        output_dir: str | Path,
        curve: Callable[["RobustnessReport", Path], Path | None] | None = None,
    ) -> dict[str, Path]:
        """Write robustness.json, per_sample.npz and, with a `curve` drawer (the runner passes
        `plots.plot_accuracy_vs_epsilon`), the accuracy-vs-ε PNG that robustness.json then names.

        The drawer is passed in rather than imported here, so that the report (data) does not
        depend on the plotting module, which reads reports."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        names = list(self.results)
        np.savez_compressed(
            output_dir / PER_SAMPLE_FILE,
            attacks=np.array(names, dtype=str),
            correct=np.stack([self.results[n].correct for n in names]) if names else np.zeros((0, self.num_samples), bool),
            predictions=np.stack([self.results[n].predictions for n in names]) if names else np.zeros((0, self.num_samples), np.int64),
            labels=self.labels,
            indices=self.indices if self.indices is not None else np.arange(self.num_samples),
            worst_case=self.worst_case_correct,
            worst_case_attacks=np.array(self.worst_case_attacks, dtype=str),
        )
        paths["per_sample"] = output_dir / PER_SAMPLE_FILE
        if curve is not None:
            drawn = curve(self, output_dir / CURVE_FILE)
            if drawn is not None:
                paths["curve"] = drawn
                self.files["curve"] = CURVE_FILE
        if (output_dir / AUTOATTACK_LOG).exists():
            self.files["autoattack_log"] = AUTOATTACK_LOG
            paths["autoattack_log"] = output_dir / AUTOATTACK_LOG
        (output_dir / REPORT_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        paths["report"] = output_dir / REPORT_FILE
        (output_dir / "robustness_table.txt").write_text(self.format_table() + "\n", encoding="utf-8")
        paths["table"] = output_dir / "robustness_table.txt"
        return paths

    # ------------------------------------------------------------------ human-readable
    def format_table(self) -> str:
        rows = [("attack", "ε", "steps", "accuracy", "time (s)")]
        for name, r in self.results.items():
            eps = "-" if r.spec.kind == "clean" else format_epsilon(r.spec.epsilon, self.norm)
            steps = "-" if r.spec.steps in (None, 0) else str(r.spec.steps)
            if r.spec.kind == "square":
                steps = f"{r.spec.steps} queries"
            rows.append((name, eps, steps, f"{100 * r.accuracy:6.2f}%", f"{r.wall_time_seconds:.1f}"))
        rows.append(
            ("worst case", format_epsilon(self.epsilon, self.norm), "-", f"{100 * self.worst_case_accuracy:6.2f}%", "")
        )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            f"Robustness of {self.model} on {self.dataset} [{self.split}], {self.num_samples} samples, "
            f"{norm_display(self.norm)} ε = {format_epsilon(self.epsilon, self.norm)} in [0, 1] pixel space",
        ]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        for check in self.checks:
            lines.append(f"[{'ok' if check.passed else 'FAILED'}] {check.name}: {check.detail}")
        for name in self.skipped_checks:
            lines.append(f"[skipped] {name}")
        if self.failed_checks:
            lines.append(
                f"WARNING: {len(self.failed_checks)} gradient-masking check(s) FAILED — do not report these numbers "
                "as robustness without an adaptive attack that explains the failure."
            )
        return "\n".join(lines)


def load_per_sample(path: str | Path) -> dict[str, Any]:
    """Read `per_sample.npz` back: {"labels", "indices", "worst_case", "correct": {attack: bool array}, ...}."""
    with np.load(path) as data:
        names = [str(n) for n in data["attacks"]]
        return {
            "labels": data["labels"],
            "indices": data["indices"],
            "worst_case": data["worst_case"],
            "worst_case_attacks": [str(n) for n in data["worst_case_attacks"]],
            "correct": {n: data["correct"][i] for i, n in enumerate(names)},
            "predictions": {n: data["predictions"][i] for i, n in enumerate(names)},
        }
