"""Robustness evaluation of image classifiers in pixel space [0, 1]: L∞ or L2 attacks, and common corruptions.

`evaluate_robustness(model, data, attacks=[...])` runs the named attacks (clean, PGD-k, CW-L∞,
AutoAttack and Square from the authors' `pyautoattack`, and the MIMIR-aware adaptive PGD-MI and
PGD-feature), checks the figures against each other for signs of gradient masking, and writes
`robustness.json` (schema in docs/CONTRACTS.md), per-sample results, AutoAttack's log and an
accuracy-vs-ε plot; `RobustnessReport.load(folder)` reads a report back (`per_sample=True` adds
every image's outcome) and `plot_accuracy_comparison` draws several models side by side. `compare_evaluations`
gives paired statistics (exact McNemar, paired bootstrap intervals) of several such evaluations of the
same images. `robust_accuracy_metric_path()` is a local `evaluate` module.
"""

from __future__ import annotations

from pathlib import Path

from .arguments import ComparisonArguments, EvaluationArguments
from .attack_specs import (
    DEFAULT_ATTACKS,
    DEFAULT_EPSILON_SWEEP,
    DEFAULT_L2_EPSILON_SWEEP,
    AttackSettings,
    AttackSpec,
    format_epsilon,
    parse_attack_name,
    parse_budget,
    plan_attacks,
)
from .attacks import Attack, build_attack
from .checks import run_checks
from .comparison import Comparison, MetricComparison, PairedDifference, compare_evaluations
from .comparison_inputs import EvaluationFolder, load_evaluation
from .comparison_markdown import format_comparison_markdown
from .corruptions import CorruptionReport, evaluate_corruptions
from .plots import plot_accuracy_comparison, plot_accuracy_vs_epsilon
from .robustbench import RobustBenchArguments, write_robustbench_submission
from .paired_statistics import bootstrap_means, holm_adjust, mcnemar_exact
from .per_sample import PerSampleResults
from .robustness_report import InvalidReportError, RobustnessReport
from .results import AttackRecord, AttackResult, AutoAttackComponent, Check, ThreatModel, WorstCase
from .from_args import evaluate_from_args
from .loading import load_classifier
from .runner import GradientMaskingWarning, evaluate_robustness
from .wrapper import LogitsModel, normalization_from_processor


def robust_accuracy_metric_path() -> str:
    """Path of the robust-accuracy `evaluate` module: `evaluate.load(robust_accuracy_metric_path())` (offline)."""
    return str(Path(__file__).parent / "metric" / "robust_accuracy.py")


__all__ = [
    "DEFAULT_ATTACKS",
    "DEFAULT_EPSILON_SWEEP",
    "DEFAULT_L2_EPSILON_SWEEP",
    "Attack",
    "AttackRecord",
    "AttackResult",
    "AttackSettings",
    "AttackSpec",
    "AutoAttackComponent",
    "Check",
    "Comparison",
    "CorruptionReport",
    "RobustBenchArguments",
    "ComparisonArguments",
    "EvaluationArguments",
    "EvaluationFolder",
    "GradientMaskingWarning",
    "InvalidReportError",
    "LogitsModel",
    "MetricComparison",
    "PairedDifference",
    "PerSampleResults",
    "RobustnessReport",
    "ThreatModel",
    "WorstCase",
    "bootstrap_means",
    "build_attack",
    "compare_evaluations",
    "evaluate_corruptions",
    "evaluate_from_args",
    "evaluate_robustness",
    "format_comparison_markdown",
    "format_epsilon",
    "holm_adjust",
    "load_classifier",
    "load_evaluation",
    "mcnemar_exact",
    "normalization_from_processor",
    "parse_attack_name",
    "parse_budget",
    "plan_attacks",
    "plot_accuracy_comparison",
    "plot_accuracy_vs_epsilon",
    "robust_accuracy_metric_path",
    "run_checks",
    "write_robustbench_submission",
]
