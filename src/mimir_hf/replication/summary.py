"""Tables a replication's write-up quotes beyond one run's paired statistics: across seeds, and across evaluations.

Two questions one comparison of evaluation folders cannot answer:

- **Across seeds.** A paired test on one pair of trained models says how sure we are about *those*
  models on *these* images, not whether the recipe wins again. `seed_differences` gives each seed's
  difference (paired bootstrap interval, exact McNemar test) and the mean difference over the seeds.
  The interval of the mean resamples the images (the same resamples for every seed), so it carries
  the image sampling noise only: with two or three seeds the spread between seeds is reported beside
  it, and nothing here estimates the seed-to-seed variance.
- **Across evaluations of one model.** The adaptive attacks run in an evaluation of their own, on the
  same images as AutoAttack's. `worst_case_over` joins the per-image outcomes of several evaluations
  of one model (refusing folders of different images) into the worst case over every attack, and
  counts the images each attack alone breaks: an adaptive attack that finds nothing the others
  missed adds no robustness claim, one that does lowers the worst case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.comparison_inputs import EvaluationFolder, check_comparable, load_evaluation
from ..evaluation.paired_statistics import bootstrap_means, mcnemar_exact, percentile_interval

__all__ = [
    "SeedDifference",
    "WorstCaseOver",
    "compare_worst_cases",
    "format_summary_markdown",
    "outcome",
    "seed_differences",
    "summarize",
    "worst_case_over",
]

WORST_CASE = "worst case"


def outcome(evaluation: EvaluationFolder, metric: str) -> np.ndarray:
    """Per-image correctness under `metric`: an attack the evaluation ran, or "worst case" (its own worst case)."""
    per_sample = evaluation.report.per_sample
    if metric == WORST_CASE:
        return per_sample.worst_case
    if metric not in per_sample.correct:
        raise ValueError(f"{evaluation.folder} ran no {metric!r}; it ran {sorted(per_sample.correct)}.")
    return per_sample.correct[metric]


@dataclass(frozen=True)
class SeedDifference:
    """first − second under one metric at one seed, in accuracy units (0.01 = one point)."""

    seed: int
    first: str
    second: str
    num_samples: int
    difference: float
    interval: tuple[float, float]
    only_first: int
    only_second: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "first": self.first, "second": self.second, "num_samples": self.num_samples,
                "difference": self.difference, "interval": list(self.interval), "only_first": self.only_first,
                "only_second": self.only_second, "mcnemar_p": self.p_value}


def seed_differences(
    runs: Mapping[int, tuple[str | Path, str | Path]],
    metric: str,
    *,
    bootstrap_samples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """first − second per seed, and their mean over the seeds (see the module docstring).

    Args:
        runs: seed -> (the first model's evaluation folder, the second's), every folder of the same images.
        metric: an attack both evaluations ran, or "worst case".
    """
    if not runs:
        raise ValueError("seed_differences needs at least one seed.")
    loaded = {s: (load_evaluation(a), load_evaluation(b)) for s, (a, b) in sorted(runs.items())}
    reference = next(iter(loaded.values()))[0]
    for first, second in loaded.values():
        check_comparable(reference, first)
        check_comparable(reference, second)
    columns = []
    for first, second in loaded.values():
        columns += [outcome(first, metric), outcome(second, metric)]
    replicates = bootstrap_means(np.stack(columns, axis=1).astype(np.float64), bootstrap_samples, seed=seed)
    per_seed, differences = [], []
    for index, (run_seed, (first, second)) in enumerate(loaded.items()):
        a, b = columns[2 * index], columns[2 * index + 1]
        only_first, only_second = int(np.sum(a & ~b)), int(np.sum(b & ~a))
        paired = replicates[:, 2 * index] - replicates[:, 2 * index + 1]
        differences.append(paired)
        per_seed.append(SeedDifference(run_seed, str(first.folder), str(second.folder), first.num_samples,
                                       float(np.mean(a, dtype=np.float64) - np.mean(b, dtype=np.float64)),
                                       percentile_interval(paired, confidence), only_first, only_second,
                                       mcnemar_exact(only_first, only_second)))
    values = [d.difference for d in per_seed]
    return {
        "metric": metric,
        "num_samples": reference.num_samples,
        "seeds": [d.to_dict() for d in per_seed],
        "mean_difference": float(np.mean(values)),
        "mean_interval_over_images": list(percentile_interval(np.mean(np.stack(differences, axis=1), axis=1), confidence)),
        "spread_between_seeds": float(max(values) - min(values)),
        "same_sign_in_every_seed": bool(all(v > 0 for v in values) or all(v < 0 for v in values)),
        "bootstrap": {"samples": bootstrap_samples, "seed": seed, "confidence": confidence},
    }


@dataclass(frozen=True)
class WorstCaseOver:
    """One model's per-image outcomes joined over several evaluations of the same images."""

    name: str
    folders: list[str]
    indices: np.ndarray  # the test images, in order
    accuracy: dict[str, float]  # every attack, from the first evaluation that ran it
    worst_case: np.ndarray  # correct under every attack of every evaluation
    only_broken_by: dict[str, int]  # images correct under every other attack that this one alone breaks

    @property
    def worst_case_accuracy(self) -> float:
        return float(np.mean(self.worst_case, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "folders": self.folders, "num_samples": int(self.worst_case.size),
                "accuracy": self.accuracy, "worst_case": self.worst_case_accuracy, "only_broken_by": self.only_broken_by}


def worst_case_over(folders: Sequence[str | Path], name: str) -> WorstCaseOver:
    """Join the evaluations of one model on the same images (see the module docstring).

    An attack two evaluations both ran (clean, PGD-20 with the same seed) must agree image by image:
    otherwise the evaluations did not measure the same model, and this refuses them.
    """
    loaded = [load_evaluation(folder) for folder in folders]
    if not loaded:
        raise ValueError("worst_case_over needs at least one evaluation folder.")
    for other in loaded[1:]:
        check_comparable(loaded[0], other)
    correct: dict[str, np.ndarray] = {}
    for evaluation in loaded:
        for attack, outcomes in evaluation.report.per_sample.correct.items():
            if evaluation.report.attacks[attack].is_sweep:
                continue  # a larger budget than the threat model's: a check, not a robustness claim
            if attack in correct and not np.array_equal(correct[attack], outcomes):
                raise ValueError(f"{attack!r} differs between the evaluations of {name!r} ({[str(f) for f in folders]}): "
                                 "they did not measure the same model on the same images.")
            correct.setdefault(attack, outcomes)
    stacked = np.stack(list(correct.values()))
    worst = np.all(stacked, axis=0)
    only = {}
    for index, attack in enumerate(correct):
        if attack == "clean":
            continue
        others = np.all(np.delete(stacked, index, axis=0), axis=0)
        only[attack] = int(np.sum(others & ~stacked[index]))
    return WorstCaseOver(name, [str(f) for f in folders], loaded[0].indices, {a: float(np.mean(c, dtype=np.float64)) for a, c in correct.items()},
                         worst, only)


def compare_worst_cases(first: WorstCaseOver, second: WorstCaseOver, *, bootstrap_samples: int = 10_000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """first − second on the joined worst case: paired bootstrap interval and exact McNemar test."""
    if not np.array_equal(first.indices, second.indices):
        raise ValueError(f"{first.name!r} and {second.name!r} were not evaluated on the same images.")
    a, b = first.worst_case, second.worst_case
    replicates = bootstrap_means(np.stack([a, b], axis=1).astype(np.float64), bootstrap_samples, seed=seed)
    only_first, only_second = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    return {"first": first.name, "second": second.name, "num_samples": int(a.size),
            "difference": first.worst_case_accuracy - second.worst_case_accuracy,
            "interval": list(percentile_interval(replicates[:, 0] - replicates[:, 1], confidence)),
            "only_first": only_first, "only_second": only_second, "mcnemar_p": mcnemar_exact(only_first, only_second),
            "bootstrap": {"samples": bootstrap_samples, "seed": seed, "confidence": confidence}}


# ---------------------------------------------------------------------- a summary described by a YAML file
def summarize(config: Mapping[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Every table of a summary config (see recipes/summarize_replication.py); entries whose folders do not
    exist yet are listed under `not_available` instead of failing, so that a summary of a run in progress
    regenerates what is there."""
    from ..evaluation import compare_evaluations

    unknown = sorted(set(config) - {"output_dir", "bootstrap_samples", "bootstrap_seed", "comparisons", "seeds", "worst_case"})
    if unknown:
        raise ValueError(f"unknown summary keys {unknown}: a summary has output_dir, bootstrap_samples, bootstrap_seed, "
                         "comparisons, seeds and worst_case.")
    output_dir = Path(config["output_dir"])
    samples, seed = int(config.get("bootstrap_samples", 10_000)), int(config.get("bootstrap_seed", 0))
    summary: dict[str, Any] = {"comparisons": {}, "seeds": {}, "worst_case": {}, "not_available": [],
                               "bootstrap": {"samples": samples, "seed": seed, "confidence": 0.95}}

    def available(name: str, folders: Sequence[str]) -> bool:
        missing = [f for f in folders if not Path(f).is_dir()]
        if missing:
            summary["not_available"].append({"table": name, "missing": missing})
        return not missing

    for name, models in (config.get("comparisons") or {}).items():
        if available(name, list(models.values())):
            comparison = compare_evaluations(list(models.values()), names=list(models), bootstrap_samples=samples, seed=seed,
                                             output_dir=output_dir / name, progress=progress)
            summary["comparisons"][name] = {"folder": str(output_dir / name), "models": list(models),
                                            "num_samples": comparison.num_samples}
    for name, entry in (config.get("seeds") or {}).items():
        runs = {int(s): tuple(pair) for s, pair in entry["runs"].items()}
        present = {s: pair for s, pair in runs.items() if all(Path(f).is_dir() for f in pair)}
        if len(present) < len(runs):
            summary["not_available"].append({"table": name, "missing": [f for p in runs.values() for f in p if not Path(f).is_dir()]})
        if present:
            summary["seeds"][name] = {"first": entry["first"], "second": entry["second"],
                                      "metrics": [seed_differences(present, metric, bootstrap_samples=samples, seed=seed)
                                                  for metric in entry["metrics"]]}
    for name, entry in (config.get("worst_case") or {}).items():
        models = entry["models"]
        if not available(name, [f for folders in models.values() for f in folders]):
            continue
        joined = {model: worst_case_over(folders, model) for model, folders in models.items()}
        pairs = [compare_worst_cases(joined[a], joined[b], bootstrap_samples=samples, seed=seed) for a, b in entry.get("pairs", [])]
        summary["worst_case"][name] = {"models": [j.to_dict() for j in joined.values()], "pairs": pairs}
    return summary


def format_summary_markdown(summary: Mapping[str, Any]) -> str:
    """The tables of `summarize`, in percent (differences in points)."""
    from ..evaluation.comparison_markdown import format_percent

    def p(value: float) -> str:
        return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"

    lines = ["# Replication summary", ""]
    for name, entry in summary["comparisons"].items():
        lines.append(f"- Paired comparison `{name}` ({', '.join(entry['models'])}, {entry['num_samples']} images): "
                     f"`{entry['folder']}/comparison.md`.")
    for name, entry in summary["seeds"].items():
        lines += ["", f"## {entry['first']} − {entry['second']} across seeds (`{name}`)", "",
                  "| metric | seed | difference (points) [95 % over images] | only first | only second | McNemar p |",
                  "|---|---|---|---|---|---|"]
        for metric in entry["metrics"]:
            for d in metric["seeds"]:
                low, high = d["interval"]
                lines.append(f"| {metric['metric']} ({metric['num_samples']}) | {d['seed']} | {format_percent(d['difference'], True)} "
                             f"[{format_percent(low, True)}, {format_percent(high, True)}] | {d['only_first']} | "
                             f"{d['only_second']} | {p(d['mcnemar_p'])} |")
            if len(metric["seeds"]) < 2:  # a mean and a spread of one seed say nothing
                continue
            low, high = metric["mean_interval_over_images"]
            lines.append(f"| {metric['metric']} | mean of {len(metric['seeds'])} | {format_percent(metric['mean_difference'], True)} "
                         f"[{format_percent(low, True)}, {format_percent(high, True)}] | | | spread between seeds "
                         f"{format_percent(metric['spread_between_seeds'])} |")
    for name, entry in summary["worst_case"].items():
        attacks = list(dict.fromkeys(a for m in entry["models"] for a in m["accuracy"]))
        lines += ["", f"## Worst case over evaluations (`{name}`)", "",
                  "| model | " + " | ".join(attacks) + " | worst case over all | images only one attack breaks |",
                  "|---|" + "---|" * (len(attacks) + 2)]
        for m in entry["models"]:
            only = ", ".join(f"{a} {n}" for a, n in m["only_broken_by"].items())
            lines.append(f"| {m['name']} ({m['num_samples']}) | " + " | ".join(
                format_percent(m["accuracy"][a]) if a in m["accuracy"] else "—" for a in attacks)
                + f" | {format_percent(m['worst_case'])} | {only} |")
        for pair in entry["pairs"]:
            low, high = pair["interval"]
            lines.append(f"\n{pair['first']} − {pair['second']} on the worst case over all: "
                         f"{format_percent(pair['difference'], True)} points [{format_percent(low, True)}, "
                         f"{format_percent(high, True)}], {pair['only_first']} vs {pair['only_second']} images, "
                         f"McNemar p = {p(pair['mcnemar_p'])}.")
    if summary["not_available"]:
        lines += ["", "Not available yet (the tables above hold what is): " + "; ".join(
            f"`{n['table']}` ({', '.join(Path(f).name for f in n['missing'])} missing)" for n in summary["not_available"]) + "."]
    return "\n".join(lines) + "\n"
