"""The robustness report: `robustness.json` (schema in docs/CONTRACTS.md), written by `save` and read
back by `RobustnessReport.load`, the only reader of that file. Comparisons, RobustBench files, cards,
the Hub's eval results and publishing all take the loaded object.

A report holds what every reader needs without the per-image arrays (the accuracies, the threat model,
each attack's settings, the checks); `per_sample` holds those arrays when the report was just measured
or was loaded with `per_sample=True`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artefacts import AUTOATTACK_LOG, CURVE_FILE, PER_SAMPLE_FILE, REPORT_FILE, REPORT_TABLE_FILE
from .attack_specs import format_epsilon
from .per_sample import PerSampleResults
from .report_reader import InvalidReportError, report_fields
from .results import AttackRecord, AttackResult, Check, ThreatModel, WorstCase

__all__ = ["InvalidReportError", "RobustnessReport", "SCHEMA_VERSION", "ThreatModel", "WorstCase", "report_file"]

SCHEMA_VERSION = 2
"""2 added `weights_fingerprint`, each attack's `kind`, `norm` and `standard_autoattack`, and each check's
`within_tolerance`; version 1 files still load (see `report_reader`)."""


def report_file(path: str | Path) -> Path:
    """`robustness.json` itself, given the file or the evaluation folder that holds it."""
    path = Path(path)
    return path / REPORT_FILE if path.is_dir() else path


@dataclass
class RobustnessReport:
    """Everything one evaluation found. `save(output_dir)` writes it; `RobustnessReport.load(path)` reads it.

    Built by the evaluation with `from_results`. `weights_fingerprint` identifies the weights that were
    measured (`mimir_hf.evaluation.loading.weights_fingerprint`); None in reports older than the field.
    `preprocessing`, `batch_size` and `num_processes` are None in the oldest reports, which did not record them.
    """

    model: str
    dataset: str
    split: str
    num_samples: int
    seed: int
    threat_model: ThreatModel
    attacks: dict[str, AttackRecord]
    worst_case: WorstCase
    checks: list[Check] = field(default_factory=list)
    skipped_checks: list[str] = field(default_factory=list)
    autoattack_warnings: list[str] = field(default_factory=list)
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    weights_fingerprint: str | None = None
    preprocessing: dict[str, Any] | None = None
    batch_size: int | None = None
    num_processes: int | None = None
    per_sample_file: str = PER_SAMPLE_FILE
    autoattack_log: str | None = None
    curve_file: str | None = None
    schema_version: int = SCHEMA_VERSION
    per_sample: PerSampleResults | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ reading it
    @property
    def epsilon(self) -> float:
        return self.threat_model.epsilon

    @property
    def norm(self) -> str:
        return self.threat_model.norm

    def accuracy(self, name: str) -> float:
        return self.attacks[name].accuracy

    @property
    def worst_case_accuracy(self) -> float:
        return self.worst_case.accuracy

    @property
    def headline_attacks(self) -> dict[str, AttackRecord]:
        """Every attack at the threat model's budget (clean included): the ε-sweep entries left out."""
        return {name: record for name, record in self.attacks.items() if not record.is_sweep}

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    # ------------------------------------------------------------------ building it
    @classmethod
    def from_results(
        cls,
        *,
        model: str,
        dataset: str,
        split: str,
        epsilon: float,
        seed: int,
        labels: np.ndarray,
        results: Mapping[str, AttackResult],
        norm: str = "Linf",
        indices: np.ndarray | None = None,
        normalization: str = "none",
        versions: dict[str, str] | None = None,
        checks: list[Check] | None = None,
        skipped_checks: list[str] | None = None,
        autoattack_warnings: list[str] | None = None,
        batch_size: int | None = None,
        class_names: list[str] | None = None,
        preprocessing: dict[str, Any] | None = None,
        num_processes: int = 1,
        weights_fingerprint: str | None = None,
    ) -> RobustnessReport:
        """The report of per-sample results measured on `labels` (all attacks on the same images, in order)."""
        n = int(labels.size)
        worst_attacks = [name for name, r in results.items()
                         if r.spec.kind == "clean" or abs(r.spec.epsilon - epsilon) <= 1e-9]
        worst = (np.logical_and.reduce([results[a].correct for a in worst_attacks]) if worst_attacks
                 else np.zeros(n, dtype=bool))
        per_sample = PerSampleResults(
            labels=labels,
            indices=indices if indices is not None else np.arange(n),
            correct={name: r.correct for name, r in results.items()},
            predictions={name: r.predictions for name, r in results.items()},
            worst_case=worst,
            worst_case_attacks=worst_attacks,
        )
        clean = next((r for r in results.values() if r.spec.kind == "clean"), None)
        return cls(
            model=model,
            dataset=dataset,
            split=split,
            num_samples=n,
            seed=seed,
            threat_model=ThreatModel(norm=norm, epsilon=epsilon, normalization=normalization),
            attacks={name: r.record(batch_size) for name, r in results.items()},
            worst_case=WorstCase(float(np.mean(worst)) if n else float("nan"), worst_attacks),
            checks=list(checks or []),
            skipped_checks=list(skipped_checks or []),
            autoattack_warnings=list(autoattack_warnings or []),
            per_class=_per_class(labels, class_names, None if clean is None else clean.correct, worst),
            versions=dict(versions or {}),
            weights_fingerprint=weights_fingerprint,
            preprocessing={**(preprocessing or {}), "normalization": normalization},
            batch_size=batch_size,
            num_processes=num_processes,
            per_sample=per_sample,
        )

    # ------------------------------------------------------------------ the file
    def to_dict(self) -> dict[str, Any]:
        """The content of `robustness.json`."""
        threat = self.threat_model
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "weights_fingerprint": self.weights_fingerprint,
            "threat_model": {
                "norm": threat.norm,
                "epsilon": threat.epsilon,
                "epsilon_text": threat.epsilon_text,
                "input_range": list(threat.input_range),
                "normalization": threat.normalization,
            },
            "preprocessing": self.preprocessing,
            "evaluation": {"batch_size": self.batch_size, "num_processes": self.num_processes,
                           "indices_in_split": "per_sample_file"},
            "versions": dict(self.versions),
            "attacks": {name: record.to_dict() for name, record in self.attacks.items()},
            "worst_case": {"accuracy": self.worst_case.accuracy, "attacks": list(self.worst_case.attacks)},
            "checks": [c.to_dict() for c in self.checks],
            "checks_passed": not self.failed_checks,
            "skipped_checks": list(self.skipped_checks),
            "autoattack_warnings": list(self.autoattack_warnings),
            "per_class": self.per_class,
            "per_sample_file": self.per_sample_file,
            "autoattack_log": self.autoattack_log,
            "curve_file": self.curve_file,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = REPORT_FILE) -> RobustnessReport:
        """The report in `data` (robustness.json's content); `source` names it in errors."""
        return cls(**report_fields(data, source))

    @classmethod
    def load(cls, path: str | Path, *, per_sample: bool = False) -> RobustnessReport:
        """Read `robustness.json` (the file or its folder); with `per_sample`, also the `per_sample.npz` it names.

        Raises:
            FileNotFoundError: no report there.
            InvalidReportError: not a report this mimir_hf reads (a missing field, a wrong type, a newer
                schema); the message names the file and says how to regenerate it.
        """
        path = report_file(path)
        if not path.is_file():
            raise FileNotFoundError(f"No evaluation report at {str(path)!r}: recipes/evaluate.py (evaluate_robustness "
                                    f"with output_dir) writes {REPORT_FILE}.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InvalidReportError(f"{str(path)!r} is not valid JSON ({error}); rerun the evaluation "
                                     "(recipes/evaluate.py) to regenerate it.") from None
        report = cls.from_dict(data, source=str(path))
        if per_sample:
            report.per_sample = PerSampleResults.load(path.parent / report.per_sample_file)
        return report

    def save(
        self,
        output_dir: str | Path,
        curve: Callable[[RobustnessReport, Path], Path | None] | None = None,
    ) -> dict[str, Path]:
        """Write robustness.json, the table, per_sample.npz (when the arrays are here) and, with a `curve`
        drawer (the runner passes `plots.plot_accuracy_vs_epsilon`), the accuracy-vs-ε PNG that
        robustness.json then names; an `autoattack.log` already in `output_dir` is named too.

        The drawer is passed in rather than imported here, so that the report (data) does not
        depend on the plotting module, which reads reports."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        if self.per_sample is not None:
            paths["per_sample"] = self.per_sample.save(output_dir / self.per_sample_file)
        if curve is not None and (drawn := curve(self, output_dir / CURVE_FILE)) is not None:
            paths["curve"] = drawn
            self.curve_file = CURVE_FILE
        if (output_dir / AUTOATTACK_LOG).exists():
            self.autoattack_log = AUTOATTACK_LOG
            paths["autoattack_log"] = output_dir / AUTOATTACK_LOG
        paths["report"] = output_dir / REPORT_FILE
        paths["report"].write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        paths["table"] = output_dir / REPORT_TABLE_FILE
        paths["table"].write_text(self.format_table() + "\n", encoding="utf-8")
        return paths

    # ------------------------------------------------------------------ human-readable
    def format_table(self) -> str:
        rows = [("attack", "ε", "steps", "accuracy", "time (s)")]
        for name, r in self.attacks.items():
            eps = "-" if r.kind == "clean" else format_epsilon(r.epsilon, self.norm)
            steps = f"{r.steps} queries" if r.kind == "square" else "-" if r.steps in (None, 0) else str(r.steps)
            rows.append((name, eps, steps, f"{100 * r.accuracy:6.2f}%", f"{r.wall_time_seconds:.1f}"))
        rows.append(("worst case", self.threat_model.epsilon_text, "-", f"{100 * self.worst_case.accuracy:6.2f}%", ""))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            f"Robustness of {self.model} on {self.dataset} [{self.split}], {self.num_samples} samples, "
            f"{self.threat_model.describe()} in [0, 1] pixel space",
        ]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines += [f"[{check.label}] {check.name}: {check.detail}" for check in self.checks]
        lines += [f"[skipped] {name}" for name in self.skipped_checks]
        if self.failed_checks:
            lines.append(
                f"WARNING: {len(self.failed_checks)} gradient-masking check(s) FAILED — do not report these numbers "
                "as robustness without an adaptive attack that explains the failure."
            )
        return "\n".join(lines)


def _per_class(
    labels: np.ndarray, class_names: list[str] | None, clean: np.ndarray | None, worst: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Clean and worst-case accuracy per class (a 'robust' favourite class is not robustness)."""
    table: dict[str, dict[str, Any]] = {}
    for label in np.unique(labels):
        mask = labels == label
        name = class_names[int(label)] if class_names and 0 <= int(label) < len(class_names) else str(int(label))
        table[name] = {
            "label": int(label),
            "support": int(mask.sum()),
            "clean_accuracy": float(np.mean(clean[mask])) if clean is not None else None,
            "worst_case_accuracy": float(np.mean(worst[mask])),
        }
    return table
