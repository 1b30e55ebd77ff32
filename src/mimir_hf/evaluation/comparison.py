"""Paired comparison of several models evaluated on the same images.

Per attack this module gives, for every pair of models, the exact McNemar test on the images the two
disagree on and a paired bootstrap interval of the accuracy difference, with the images resampled
jointly so that every model, attack and pair sees the same resamples (the statistics are in
`paired_statistics`, the reasons they are paired in its docstring).

`compare_evaluations(["eval-scratch", "eval-mimir"])` reads the folders `evaluate_robustness`
writes (`robustness.json` + `per_sample.npz`), refuses folders of different images or threat models,
and returns a `Comparison` whose `save()` writes `comparison.json`, `comparison.md` and `comparison.png`.
The markdown is rendered from the JSON form (`format_comparison_markdown`), so a table can always
be regenerated from the JSON alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artefacts import COMPARISON_FILES
from .comparison_inputs import EvaluationFolder, check_comparable, load_evaluation, setting_notes
from .comparison_markdown import format_comparison_markdown
from .paired_statistics import bootstrap_means, holm_adjust, mcnemar_exact, percentile_interval
from .results import ThreatModel

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "Comparison",
    "MetricComparison",
    "PairedDifference",
    "compare_evaluations",
]

COMPARISON_SCHEMA_VERSION = 2
"""2 added `norm`: the threat model the compared accuracies were measured under."""
WORST_CASE = "worst case"


@dataclass(frozen=True)
class PairedDifference:
    """first − second on one metric, with its paired bootstrap interval and (binary outcomes) McNemar test."""

    first: str
    second: str
    difference: float
    interval: tuple[float, float]
    only_first: int | None = None
    only_second: int | None = None
    p_value: float | None = None
    p_value_holm: float | None = None

    def flipped(self) -> PairedDifference:
        """The same comparison as second − first."""
        return PairedDifference(
            self.second, self.first, -self.difference, (-self.interval[1], -self.interval[0]),
            self.only_second, self.only_first, self.p_value, self.p_value_holm,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "difference": self.difference,
            "interval": list(self.interval),
            "only_first_correct": self.only_first,
            "only_second_correct": self.only_second,
            "mcnemar_p": self.p_value,
            "mcnemar_p_holm": self.p_value_holm,
        }


@dataclass(frozen=True)
class MetricComparison:
    """One row of the comparison: an attack, the per-sample worst case, or (clean + robust) / 2."""

    name: str
    kind: str  # "attack" | "worst_case" | "clean_robust_mean"
    description: str
    accuracy: dict[str, float]
    interval: dict[str, tuple[float, float]]
    pairs: list[PairedDifference]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "accuracy": {m: {"value": v, "interval": list(self.interval[m])} for m, v in self.accuracy.items()},
            "pairs": [p.to_dict() for p in self.pairs],
        }


@dataclass
class Comparison:
    """Everything `compare_evaluations` measured; `save(output_dir)` writes the JSON, markdown and PNG."""

    models: list[str]
    folders: list[str]
    num_samples: int
    threat_model: ThreatModel
    metrics: list[MetricComparison]
    bootstrap_samples: int
    confidence: float
    seed: int
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def metric(self, name: str) -> MetricComparison:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"No metric {name!r} in this comparison; it has {[m.name for m in self.metrics]}.")

    def pair(self, metric: str, first: str, second: str) -> PairedDifference:
        """The difference first − second on `metric`, whichever order the pair was computed in."""
        for pair in self.metric(metric).pairs:
            if (pair.first, pair.second) == (first, second):
                return pair
            if (pair.first, pair.second) == (second, first):
                return pair.flipped()
        raise KeyError(f"No pair ({first!r}, {second!r}) in {metric!r}; the models are {self.models}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "models": [{"name": m, "folder": f, **s} for m, f, s in zip(self.models, self.folders, self.sources)],
            "num_samples": self.num_samples,
            "norm": self.threat_model.norm,
            "epsilon": self.threat_model.epsilon,
            "bootstrap": {
                "samples": self.bootstrap_samples,
                "confidence": self.confidence,
                "seed": self.seed,
                "method": "percentile; the images are resampled with replacement, the same resamples for every "
                "model, metric and pair",
            },
            "tests": "exact two-sided McNemar on the discordant images of each pair; Holm-adjusted over the pairs "
            "of each metric",
            "metrics": [m.to_dict() for m in self.metrics],
            "notes": list(self.notes),
        }

    def format_markdown(self, title: str | None = "Paired comparison", level: int = 1) -> str:
        return format_comparison_markdown(self.to_dict(), title=title, level=level)

    def plot(self, path: str | Path) -> Path | None:
        """Accuracy per model and metric as grouped bars with their bootstrap intervals."""
        from .plots import plot_accuracy_comparison

        rows = {m: {metric.name: metric.accuracy[m] for metric in self.metrics} for m in self.models}
        intervals = {m: {metric.name: metric.interval[m] for metric in self.metrics} for m in self.models}
        title = (f"{self.threat_model.describe()}, {self.num_samples} images; error bars: {100 * self.confidence:g} % "
                 "bootstrap interval of each accuracy\n(overlapping bars do not mean 'no difference': the paired "
                 "tests are in the table)")
        return plot_accuracy_comparison(rows, path, title=title, intervals=intervals)

    def save(self, output_dir: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write comparison.json, comparison.md and (if `plot`) comparison.png to `output_dir`."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": output_dir / COMPARISON_FILES["json"], "markdown": output_dir / COMPARISON_FILES["markdown"]}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.format_markdown(), encoding="utf-8")
        if plot:
            figure = self.plot(output_dir / COMPARISON_FILES["plot"])
            if figure is not None:
                paths["plot"] = figure
        return paths


# ----------------------------------------------------------------------------------------------
# the comparison

# (name, kind, description, per-model per-image outcome)
_Row = tuple[str, str, str, dict[str, np.ndarray]]


def _pairs(
    names: list[str],
    outcomes: dict[str, np.ndarray],
    replicates: dict[str, np.ndarray],
    confidence: float,
    binary: bool,
) -> list[PairedDifference]:
    pairs = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = outcomes[first], outcomes[second]
            counts: dict[str, Any] = {}
            if binary:
                only_first, only_second = int(np.sum(a & ~b)), int(np.sum(~a & b))
                counts = {"only_first": only_first, "only_second": only_second,
                          "p_value": mcnemar_exact(only_first, only_second)}
            pairs.append(PairedDifference(
                first, second, float(np.mean(a, dtype=np.float64) - np.mean(b, dtype=np.float64)),
                percentile_interval(replicates[first] - replicates[second], confidence), **counts,
            ))
    if binary:
        adjusted = holm_adjust([p.p_value for p in pairs])
        pairs = [dataclasses.replace(p, p_value_holm=q) for p, q in zip(pairs, adjusted)]
    return pairs


def _load(evaluations: Sequence[str | Path | EvaluationFolder], names: Sequence[str] | None) -> list[EvaluationFolder]:
    """The evaluations, named, after refusing anything that cannot be paired."""
    if len(evaluations) < 2:
        raise ValueError(f"A comparison needs two or more evaluations, got {len(evaluations)}.")
    if names is not None and len(names) != len(evaluations):
        raise ValueError(f"Got {len(names)} names for {len(evaluations)} evaluations; give one name per evaluation.")
    loaded = [e if isinstance(e, EvaluationFolder) else load_evaluation(e) for e in evaluations]
    if names is not None:
        loaded = [dataclasses.replace(e, name=str(n)) for n, e in zip(names, loaded)]
    model_names = [e.name for e in loaded]
    repeated = sorted({n for n in model_names if model_names.count(n) > 1})
    if repeated:
        raise ValueError(f"Every evaluation needs its own name; {repeated} appear more than once. Pass names=.")
    for other in loaded[1:]:
        check_comparable(loaded[0], other)
    return loaded


def _chosen_attacks(loaded: list[EvaluationFolder], attacks: Sequence[str] | None, notes: list[str]) -> list[str]:
    """The attacks to compare (every one all evaluations ran, unless named), with notes on what differs."""
    for key in ("dataset", "split"):
        seen = {e.name: getattr(e.report, key) for e in loaded}
        if len(set(seen.values())) > 1:
            notes.append(f"The reports name different {key}s ({seen}); their indices and labels agree, so the images "
                         "are taken to be the same.")
    common = [a for a in loaded[0].correct if all(a in e.correct for e in loaded)]
    if attacks is None:
        chosen = common
        for e in loaded:
            left = [a for a in e.correct if a not in common]
            if left:
                notes.append(f"Left out, not evaluated for every model: {', '.join(left)} (ran for {e.name}).")
    else:
        chosen = list(dict.fromkeys(attacks))
        for a in chosen:
            lacking = [e for e in loaded if a not in e.correct]
            if lacking:
                raise ValueError(f"Attack {a!r} was not evaluated for {[e.name for e in lacking]}; those evaluations "
                                 f"ran {list(lacking[0].correct)}.")
    for a in chosen:
        notes += setting_notes(a, loaded)
    for e in loaded:
        if e.report.failed_checks:
            notes.append(f"{e.name}: gradient-masking check(s) failed in its report: "
                         f"{', '.join(c.name for c in e.report.failed_checks)}.")
    return chosen


def _rows(loaded: list[EvaluationFolder], chosen: list[str], robust_attack: str, notes: list[str]) -> list[_Row]:
    """The rows: the chosen attacks, the worst case over the headline attacks all share, (clean + robust) / 2."""
    rows: list[_Row] = [
        (a, "attack", "clean accuracy" if a == "clean" else f"robust accuracy under {a}",
         {e.name: e.correct[a] for e in loaded})
        for a in chosen
    ]
    worst = [a for a in loaded[0].worst_case_attacks if all(a in e.worst_case_attacks for e in loaded)]
    if worst:
        if any(e.worst_case_attacks != worst for e in loaded):
            listed = "; ".join(f"{e.name}: {', '.join(e.worst_case_attacks)}" for e in loaded)
            notes.append(f"The reports' worst cases are over different attacks ({listed}); here it is recomputed "
                         f"over those all share: {', '.join(worst)}.")
        rows.append((WORST_CASE, "worst_case", f"correct under every one of {', '.join(worst)}",
                     {e.name: np.logical_and.reduce([e.correct[a] for a in worst]) for e in loaded}))
    else:
        notes.append("No worst-case row: the evaluations share no headline attack.")
    if all("clean" in e.correct and robust_attack in e.correct for e in loaded):
        rows.append((f"(clean + {robust_attack}) / 2", "clean_robust_mean",
                     f"mean of clean accuracy and robust accuracy under {robust_attack}",
                     {e.name: (e.correct["clean"].astype(np.float64) + e.correct[robust_attack]) / 2 for e in loaded}))
    else:
        lacking = [e.name for e in loaded if robust_attack not in e.correct or "clean" not in e.correct]
        notes.append(f"No (clean + {robust_attack}) / 2 row: clean or {robust_attack} is missing for {lacking}; "
                     "name another attack with robust_attack (--robust_attack) to use it instead.")
    if not rows:
        raise ValueError(f"The evaluations share no attack: {[sorted(e.correct) for e in loaded]}.")
    return rows


def _metrics(rows: list[_Row], models: list[str], samples: int, confidence: float, seed: int,
             progress: bool) -> list[MetricComparison]:
    """Each row's accuracies and pairs, from one joint bootstrap over every row and model."""
    columns = [np.asarray(outcome[m], dtype=np.float64) for _, _, _, outcome in rows for m in models]
    replicates = bootstrap_means(np.stack(columns, axis=1), samples, seed=seed, progress=progress)
    metrics = []
    for r, (name, kind, description, outcome) in enumerate(rows):
        per_model = {m: replicates[:, r * len(models) + j] for j, m in enumerate(models)}
        metrics.append(MetricComparison(
            name=name,
            kind=kind,
            description=description,
            accuracy={m: float(np.mean(outcome[m], dtype=np.float64)) for m in models},
            interval={m: percentile_interval(per_model[m], confidence) for m in models},
            pairs=_pairs(models, outcome, per_model, confidence, binary=kind != "clean_robust_mean"),
        ))
    return metrics


def compare_evaluations(
    evaluations: Sequence[str | Path | EvaluationFolder],
    names: Sequence[str] | None = None,
    *,
    attacks: Sequence[str] | None = None,
    robust_attack: str = "autoattack",
    bootstrap_samples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    output_dir: str | Path | None = None,
    progress: bool = False,
) -> Comparison:
    """Paired statistics of two or more models evaluated on the same images.

    Rows: every attack the evaluations share (or `attacks`), the per-sample worst case over the
    headline attacks they share, and (clean + `robust_attack`) / 2, the score that weighs clean
    accuracy and robustness equally. For each row: each model's accuracy with a bootstrap interval,
    and for each pair the difference with a paired bootstrap interval; binary rows also get the
    exact McNemar p-value and its Holm adjustment over the pairs of that row.

    Args:
        evaluations: folders written by `evaluate_robustness` (or already loaded `EvaluationFolder`s).
        names: one display name per evaluation (default: the folder names, which must then differ).
        attacks: the attacks to compare (default: every attack all evaluations ran, in the first's order).
        robust_attack: the attack of the (clean + robust) / 2 row. There is no silent stand-in: if an
            evaluation lacks it the row is left out and a note says so.
        bootstrap_samples: resamples of the images; 10,000 keeps the 95 % bounds stable to ~0.1 point.
        confidence: level of every interval.
        seed: seed of the resampling, recorded in the output.
        output_dir: if given, `Comparison.save` writes the JSON, markdown and PNG there.
        progress: show a progress bar while resampling.

    Raises:
        ValueError: fewer than two evaluations, names that are missing or repeated, evaluations of
            different images (count, indices or labels) or under different threat models (norm or ε),
            or a requested attack that some evaluation lacks.
        FileNotFoundError: a folder without robustness.json or per_sample.npz.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples}.")
    if robust_attack == "clean":
        raise ValueError("robust_attack must be an attack, not 'clean': the row averages clean and robust accuracy.")
    loaded = _load(evaluations, names)
    notes: list[str] = []
    chosen = _chosen_attacks(loaded, attacks, notes)
    rows = _rows(loaded, chosen, robust_attack, notes)
    models = [e.name for e in loaded]
    comparison = Comparison(
        models=models,
        folders=[str(e.folder) for e in loaded],
        num_samples=loaded[0].num_samples,
        threat_model=loaded[0].threat_model,
        metrics=_metrics(rows, models, bootstrap_samples, confidence, seed, progress),
        bootstrap_samples=int(bootstrap_samples),
        confidence=float(confidence),
        seed=int(seed),
        notes=notes,
        sources=[{"model": e.report.model, "dataset": e.report.dataset, "split": e.report.split} for e in loaded],
    )
    if output_dir is not None:
        comparison.save(output_dir)
    return comparison
