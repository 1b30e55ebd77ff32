"""Paired comparison of several models evaluated on the same images.

Two robust accuracies measured on the same 1000 test images are not independent: most images are
easy or hard for every model, so each accuracy's own error bar (±2.5 points at 20 % on 1000 images)
says little about their difference. The information is in the images on which two models disagree.
Per attack this module therefore gives, for every pair of models, the exact McNemar test on those
discordant images and a paired bootstrap interval of the accuracy difference, with the images
resampled jointly so that every model, attack and pair sees the same resamples.

`compare_evaluations(["eval-scratch", "eval-mimir"])` reads the folders `evaluate_robustness`
writes (`robustness.json` + `per_sample.npz`), refuses folders of different images, and returns a
`Comparison` whose `save()` writes `comparison.json`, `comparison.md` and `comparison.png`.
The markdown is rendered from the JSON form (`format_comparison_markdown`), so a table can always
be regenerated from the JSON alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .attack_specs import format_epsilon
from .robustness_report import PER_SAMPLE_FILE, REPORT_FILE, load_per_sample

__all__ = [
    "COMPARISON_FILES",
    "Comparison",
    "EvaluationFolder",
    "MetricComparison",
    "PairedDifference",
    "bootstrap_means",
    "compare_evaluations",
    "format_comparison_markdown",
    "holm_adjust",
    "load_evaluation",
    "mcnemar_exact",
]

COMPARISON_SCHEMA_VERSION = 1
COMPARISON_FILES = {"json": "comparison.json", "markdown": "comparison.md", "plot": "comparison.png"}
WORST_CASE = "worst case"
_BOOTSTRAP_CHUNK = 256  # resamples per matrix product: bounds memory at 256 × N counts
# Attack settings that change what an accuracy means; a difference between models is reported.
_SETTINGS = ("epsilon", "steps", "step_size", "restarts", "version", "attacks", "attacks_run", "queries", "mi_weight")


# ----------------------------------------------------------------------------------------------
# statistics


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts of a paired binary outcome.

    Under "both models are equally accurate" each of the n = b + c images that exactly one model
    gets right is equally likely to favour either, so min(b, c) is the tail of Binomial(n, 1/2).
    The exact test stays valid for the few-dozen discordant images typical of robust accuracy,
    where the χ² approximation does not. The sum is done in integers (no scipy, no rounding before
    the last division), so it is exact for any n.

    Args:
        only_first: images the first model classifies correctly and the second does not (b).
        only_second: images the second model classifies correctly and the first does not (c).

    Returns:
        min(1, 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2ⁿ); 1.0 when there is no discordant image.
    """
    for name, value in (("only_first", only_first), ("only_second", only_second)):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer count, got {value!r}.")
    b, c = int(only_first), int(only_second)
    n = b + c
    if n == 0:
        return 1.0
    tail, term = 0, 1  # term = C(n, k), updated exactly
    for k in range(min(b, c) + 1):
        tail += term
        term = term * (n - k) // (k + 1)
    return min(1.0, 2 * tail / 2**n)  # int / int is correctly rounded even for huge n


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    Comparing k models tests k(k−1)/2 pairs at once; the adjusted values can be read against the
    usual threshold with the family-wise error controlled, and Holm is uniformly more powerful than
    plain Bonferroni without assuming independence between the tests.
    """
    values = [float(p) for p in p_values]
    if any(not 0.0 <= p <= 1.0 for p in values):
        raise ValueError(f"p-values must lie in [0, 1], got {values}.")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def bootstrap_means(values: np.ndarray, samples: int, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Means of each column over `samples` resamples of the rows (with replacement), shape (samples, M).

    Each resample draws N row indices and turns them into per-row counts, so every column (a model's
    per-image outcome under one attack) is averaged over the *same* resampled images: differences
    between columns are then paired bootstrap replicates. Seeded: the same call gives the same numbers.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"values must be a non-empty (rows, columns) array, got shape {values.shape}.")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    from tqdm.auto import tqdm

    n = values.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((samples, values.shape[1]))
    with tqdm(total=samples, desc="bootstrap", unit="resample", disable=not progress, leave=False) as bar:
        for start in range(0, samples, _BOOTSTRAP_CHUNK):
            rows = min(_BOOTSTRAP_CHUNK, samples - start)
            drawn = rng.integers(0, n, size=(rows, n))
            counts = np.bincount((drawn + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
            means[start : start + rows] = counts @ values / n
            bar.update(rows)
    return means


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    # interpolation may round one ulp past the replicates (e.g. above an accuracy of 1)
    return float(max(low, replicates.min())), float(min(high, replicates.max()))


# ----------------------------------------------------------------------------------------------
# reading evaluation folders


@dataclass(frozen=True)
class EvaluationFolder:
    """One folder written by `evaluate_robustness`, read back for a comparison."""

    name: str
    folder: Path
    report: dict[str, Any]
    labels: np.ndarray
    indices: np.ndarray
    correct: dict[str, np.ndarray]
    worst_case_attacks: list[str]

    @property
    def num_samples(self) -> int:
        return int(self.labels.size)

    @property
    def epsilon(self) -> float | None:
        return self.report.get("threat_model", {}).get("epsilon")


def load_evaluation(folder: str | Path, name: str | None = None) -> EvaluationFolder:
    """Read `robustness.json` and `per_sample.npz` of one evaluation (`name` defaults to the folder's name)."""
    folder = Path(folder)
    report_path, per_sample_path = folder / REPORT_FILE, folder / PER_SAMPLE_FILE
    missing = [p.name for p in (report_path, per_sample_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{str(folder)!r} is not an evaluation folder: {' and '.join(missing)} missing. A comparison needs the "
            "per-sample results that recipes/evaluate.py (evaluate_robustness with output_dir) writes."
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    per_sample = load_per_sample(per_sample_path)
    return EvaluationFolder(
        name=name if name is not None else folder.resolve().name,
        folder=folder,
        report=report,
        labels=np.asarray(per_sample["labels"]),
        indices=np.asarray(per_sample["indices"]),
        correct={k: np.asarray(v, dtype=bool) for k, v in per_sample["correct"].items()},
        worst_case_attacks=list(per_sample["worst_case_attacks"]),
    )


def _check_same_images(reference: EvaluationFolder, other: EvaluationFolder) -> None:
    """A paired test is only meaningful on the same images, so anything else is an error, not a note."""
    where = f"{reference.name!r} ({reference.folder}) and {other.name!r} ({other.folder})"
    if reference.num_samples != other.num_samples:
        raise ValueError(
            f"Evaluations {where} are not of the same images: {reference.num_samples} against {other.num_samples} "
            "images. Evaluate every model with the same dataset, split and max_eval_samples."
        )
    for what, a, b in (("image indices", reference.indices, other.indices), ("labels", reference.labels, other.labels)):
        differ = np.flatnonzero(np.asarray(a) != np.asarray(b))
        if differ.size:
            first = int(differ[0])
            raise ValueError(
                f"Evaluations {where} are not of the same images: their {what} differ at {differ.size} of "
                f"{reference.num_samples} positions (first at position {first}: {a[first]} against {b[first]}). "
                "Evaluate every model with the same dataset, split and max_eval_samples."
            )
    eps_a, eps_b = reference.epsilon, other.epsilon
    if eps_a is not None and eps_b is not None and abs(eps_a - eps_b) > 1e-9:
        raise ValueError(
            f"Evaluations {where} use different threat models: ε = {format_epsilon(eps_a)} against "
            f"{format_epsilon(eps_b)}. Robust accuracies at different budgets are not comparable."
        )


def _setting_notes(attack: str, evaluations: Sequence[EvaluationFolder]) -> list[str]:
    entries = [e.report.get("attacks", {}).get(attack, {}) for e in evaluations]
    notes = []
    for key in _SETTINGS:
        seen = {e.name: entries[i].get(key) for i, e in enumerate(evaluations)}
        if len({json.dumps(v, sort_keys=True) for v in seen.values()}) > 1:
            listed = ", ".join(f"{name}: {value}" for name, value in seen.items())
            notes.append(f"{attack}: `{key}` differs between the evaluations ({listed}); the accuracies are not "
                         "measured by the same attack.")
    return notes


# ----------------------------------------------------------------------------------------------
# results


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
    epsilon: float | None
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
            "epsilon": self.epsilon,
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
        eps = f"L∞ ε = {format_epsilon(self.epsilon)}, " if self.epsilon is not None else ""
        title = (f"{eps}{self.num_samples} images; error bars: {100 * self.confidence:g} % bootstrap interval of each "
                 "accuracy\n(overlapping bars do not mean 'no difference': the paired tests are in the table)")
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
                _interval(replicates[first] - replicates[second], confidence), **counts,
            ))
    if binary:
        adjusted = holm_adjust([p.p_value for p in pairs])
        pairs = [PairedDifference(p.first, p.second, p.difference, p.interval, p.only_first, p.only_second,
                                  p.p_value, q) for p, q in zip(pairs, adjusted)]
    return pairs


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
            different images (count, indices or labels) or at different ε, or a requested attack
            that some evaluation lacks.
        FileNotFoundError: a folder without robustness.json or per_sample.npz.
    """
    if len(evaluations) < 2:
        raise ValueError(f"A comparison needs two or more evaluations, got {len(evaluations)}.")
    if names is not None and len(names) != len(evaluations):
        raise ValueError(f"Got {len(names)} names for {len(evaluations)} evaluations; give one name per evaluation.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples}.")
    if robust_attack == "clean":
        raise ValueError("robust_attack must be an attack, not 'clean': the row averages clean and robust accuracy.")
    loaded = [
        e if isinstance(e, EvaluationFolder) else load_evaluation(e)
        for e in evaluations
    ]
    if names is not None:
        loaded = [EvaluationFolder(str(n), e.folder, e.report, e.labels, e.indices, e.correct, e.worst_case_attacks)
                  for n, e in zip(names, loaded)]
    model_names = [e.name for e in loaded]
    repeated = sorted({n for n in model_names if model_names.count(n) > 1})
    if repeated:
        raise ValueError(f"Every evaluation needs its own name; {repeated} appear more than once. Pass names=.")
    reference = loaded[0]
    for other in loaded[1:]:
        _check_same_images(reference, other)

    notes: list[str] = []
    for key in ("dataset", "split"):
        seen = {e.name: e.report.get(key) for e in loaded}
        if len(set(seen.values())) > 1:
            notes.append(f"The reports name different {key}s ({seen}); their indices and labels agree, so the images "
                         "are taken to be the same.")
    common = [a for a in reference.correct if all(a in e.correct for e in loaded)]
    if attacks is None:
        chosen = common
        for e in loaded:
            left = [a for a in e.correct if a not in common]
            if left:
                notes.append(f"Left out, not evaluated for every model: {', '.join(left)} (ran for {e.name}).")
    else:
        chosen = list(dict.fromkeys(attacks))
        for a in chosen:
            lacking = [e.name for e in loaded if a not in e.correct]
            if lacking:
                raise ValueError(f"Attack {a!r} was not evaluated for {lacking}; those evaluations ran "
                                 f"{[n for n in loaded[model_names.index(lacking[0])].correct]}.")
    for a in chosen:
        notes += _setting_notes(a, loaded)
    for e in loaded:
        failed = [c.get("name") for c in e.report.get("checks", []) if not c.get("passed", True)]
        if failed:
            notes.append(f"{e.name}: gradient-masking check(s) failed in its report: {', '.join(failed)}.")

    # (name, kind, description, per-model per-image outcome)
    rows: list[tuple[str, str, str, dict[str, np.ndarray]]] = [
        (a, "attack", "clean accuracy" if a == "clean" else f"robust accuracy under {a}",
         {e.name: e.correct[a] for e in loaded})
        for a in chosen
    ]
    worst = [a for a in reference.worst_case_attacks if all(a in e.worst_case_attacks for e in loaded)]
    if worst:
        if any(e.worst_case_attacks != worst for e in loaded):
            listed = "; ".join(f"{e.name}: {', '.join(e.worst_case_attacks)}" for e in loaded)
            notes.append(f"The reports' worst cases are over different attacks ({listed}); here it is recomputed "
                         f"over those all share: {', '.join(worst)}.")
        rows.append((WORST_CASE, "worst_case", f"correct under every one of {', '.join(worst)}",
                     {e.name: np.logical_and.reduce([e.correct[a] for a in worst]) for e in loaded}))
    else:
        notes.append("No worst-case row: the evaluations share no headline attack.")
    if "clean" in common and robust_attack in common:
        rows.append((f"(clean + {robust_attack}) / 2", "clean_robust_mean",
                     f"mean of clean accuracy and robust accuracy under {robust_attack}",
                     {e.name: (e.correct["clean"].astype(np.float64) + e.correct[robust_attack]) / 2 for e in loaded}))
    else:
        lacking = [e.name for e in loaded if robust_attack not in e.correct or "clean" not in e.correct]
        notes.append(f"No (clean + {robust_attack}) / 2 row: clean or {robust_attack} is missing for {lacking}; "
                     "name another attack with robust_attack (--robust_attack) to use it instead.")

    if not rows:
        raise ValueError(f"The evaluations share no attack: {[sorted(e.correct) for e in loaded]}.")
    columns = [np.asarray(outcome[m], dtype=np.float64) for _, _, _, outcome in rows for m in model_names]
    replicates = bootstrap_means(np.stack(columns, axis=1), bootstrap_samples, seed=seed, progress=progress)
    metrics = []
    for r, (name, kind, description, outcome) in enumerate(rows):
        per_model = {m: replicates[:, r * len(model_names) + j] for j, m in enumerate(model_names)}
        metrics.append(MetricComparison(
            name=name,
            kind=kind,
            description=description,
            accuracy={m: float(np.mean(outcome[m], dtype=np.float64)) for m in model_names},
            interval={m: _interval(per_model[m], confidence) for m in model_names},
            pairs=_pairs(model_names, outcome, per_model, confidence, binary=kind != "clean_robust_mean"),
        ))
    comparison = Comparison(
        models=model_names,
        folders=[str(e.folder) for e in loaded],
        num_samples=reference.num_samples,
        epsilon=reference.epsilon,
        metrics=metrics,
        bootstrap_samples=int(bootstrap_samples),
        confidence=float(confidence),
        seed=int(seed),
        notes=notes,
        sources=[{k: e.report.get(k) for k in ("model", "dataset", "split")} for e in loaded],
    )
    if output_dir is not None:
        comparison.save(output_dir)
    return comparison


# ----------------------------------------------------------------------------------------------
# the table


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def _signed(value: float) -> str:
    text = f"{100 * value:+.1f}"
    return text.replace("-", "−") if not math.isclose(value, 0.0, abs_tol=5e-4) else f"{100 * abs(value):.1f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def format_comparison_markdown(data: Mapping[str, Any], title: str | None = "Paired comparison", level: int = 1) -> str:
    """The markdown tables of a comparison, from its JSON form (`Comparison.to_dict()` or comparison.json)."""
    models = [m["name"] for m in data["models"]]
    bootstrap = data["bootstrap"]
    level_pct = f"{100 * bootstrap['confidence']:g} %"
    eps = f", L∞ ε = {format_epsilon(data['epsilon'])}" if data.get("epsilon") is not None else ""
    lines = [f"{'#' * level} {title}", ""] if title else []
    lines += [
        f"{data['num_samples']} images, the same indices and labels in every evaluation{eps}. Values in %; brackets: "
        f"{level_pct} percentile bootstrap interval ({bootstrap['samples']} resamples of the images, seed "
        f"{bootstrap['seed']}, the same resamples for every model and row). McNemar p: exact two-sided test on the "
        "images exactly one of the two models gets right; Holm: adjusted over the pairs of that row.",
        "",
        "| | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for metric in data["metrics"]:
        cells = [f"{_percent(a['value'])} [{_percent(a['interval'][0])}, {_percent(a['interval'][1])}]"
                 for a in (metric["accuracy"][m] for m in models)]
        lines.append(f"| {metric['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| row | first − second | difference (points) [{level_pct}] | only first correct | only second correct "
        "| McNemar p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric in data["metrics"]:
        for pair in metric["pairs"]:
            low, high = pair["interval"]
            only = [str(pair[k]) if pair[k] is not None else "—" for k in ("only_first_correct", "only_second_correct")]
            lines.append(
                f"| {metric['name']} | {pair['first']} − {pair['second']} | {_signed(pair['difference'])} "
                f"[{_signed(low)}, {_signed(high)}] | {only[0]} | {only[1]} | {_p(pair['mcnemar_p'])} "
                f"| {_p(pair['mcnemar_p_holm'])} |"
            )
    means = [m["name"] for m in data["metrics"] if m["kind"] == "clean_robust_mean"]
    notes = list(data.get("notes", []))
    if means:
        notes.insert(0, f"{means[0]} is not a yes/no outcome per image, so it has an interval but no McNemar test.")
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
