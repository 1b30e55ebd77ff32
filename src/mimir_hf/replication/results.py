"""The replication's table: results.json, results.md and results.png, from the evaluations' reports only.

Each headline attack is read from the first evaluation of a run that ran it (clean and PGD-20 on all
images, AutoAttack on a subset), the worst case from the evaluation that ran most of them; an
adaptive evaluation's accuracies go beside them. Wall times and commits come from stages.json, and
the paired statistics (exact McNemar tests, paired bootstrap intervals) from
`mimir_hf.evaluation.compare_evaluations` on the evaluations' per-sample arrays, between the runs
of one seed. Nothing else goes into the table.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..artefacts import REPORT_FILE
from ..evaluation import RobustnessReport
from ..evaluation.comparison_markdown import format_percent
from .plan import EVALUATIONS, Evaluation, Replication
from .scheduler import format_seconds, load_stage_log

__all__ = ["HEADLINE_ATTACKS", "collect_results", "format_markdown", "paired_statistics", "plot_results", "write_results"]

HEADLINE_ATTACKS = ("clean", "pgd-20", "autoattack")


def _read_report(folder: Path) -> RobustnessReport | None:
    """The evaluation's report, or None while the evaluation has not finished."""
    return RobustnessReport.load(folder) if (folder / REPORT_FILE).is_file() else None


def _accuracy(report: RobustnessReport, name: str) -> float | None:
    record = report.attacks.get(name)
    return None if record is None else record.accuracy


def _autoattack(report: RobustnessReport) -> dict:
    record = report.attacks.get("autoattack")
    if record is None:
        return {}
    fields = {"version": record.version, "attacks": list(record.requested_components or record.attacks_run or []),
              "attacks_run": list(record.attacks_run or []), "note": record.note,
              "wall_time_seconds": record.wall_time_seconds, "library_version": record.library_version}
    return {key: value for key, value in fields.items() if value not in (None, [])}


def _run_row(replication: Replication, run, stage_log: dict) -> dict:
    """One run's row: labels, wall times and commits always; accuracies once every headline evaluation exists."""
    out = replication.output_dir
    folders = [e.folder(run.name) for e in replication.headline_evaluations()]
    adaptive = [e.folder(run.name) for e in replication.evaluations_of(run) if e.config == "evaluate_adaptive"]
    stage_names = ([f"pretrain-{run.pretrain_name}"] if run.pretrain_name else []) + [f"finetune-{run.name}", *folders, *adaptive]
    row: dict = {"arm": run.arm.key, "seed": run.seed, "run": run.key, "name": run.name,
                 "label": run.label(replication.finetune_method), "report": str(out / folders[0] / REPORT_FILE),
                 "wall_time_seconds": {s: stage_log.get(s, {}).get("wall_time_seconds") for s in stage_names}}
    commits = sorted({stage_log[s]["commit"] for s in stage_names if stage_log.get(s, {}).get("commit")})
    if commits:
        row["commits"] = commits
    reports = {folder: _read_report(out / folder) for folder in folders}
    if any(report is None for report in reports.values()):
        return {**row, "missing": True}
    if len(folders) > 1:
        row["reports"] = [str(out / folder / REPORT_FILE) for folder in folders]
    accuracy, samples = {}, {}
    for attack in HEADLINE_ATTACKS:
        source = next((r for r in reports.values() if _accuracy(r, attack) is not None), None)
        accuracy[attack] = None if source is None else _accuracy(source, attack)
        samples[attack] = None if source is None else source.num_samples
    widest = max(reports.values(), key=lambda r: len(r.worst_case.attacks))
    autoattack = next((_autoattack(r) for r in reports.values() if "autoattack" in r.attacks), {})
    failed = [c.name for r in reports.values() for c in r.failed_checks]
    first = reports[folders[0]]
    row.update({
        "num_samples": first.num_samples,
        "epsilon": first.epsilon,
        "threat_model": first.threat_model.describe(),
        "accuracy": accuracy,
        "worst_case": {"accuracy": widest.worst_case.accuracy, "attacks": list(widest.worst_case.attacks),
                       "num_samples": widest.num_samples},
        "autoattack": autoattack,
        "checks_passed": not failed,
        "failed_checks": failed,
    })
    if len(folders) > 1:
        row["accuracy_num_samples"] = samples
    for folder in adaptive:
        report = _read_report(out / folder)
        if report is not None:
            row["adaptive"] = {"report": str(out / folder / REPORT_FILE), "num_samples": report.num_samples,
                               "accuracy": {name: record.accuracy for name, record in report.attacks.items()},
                               "checks_passed": not report.failed_checks}
    return row


def collect_results(replication: Replication, stage_log: dict | None = None) -> dict:
    """results.json content (see the module docstring)."""
    stage_log = stage_log if stage_log is not None else load_stage_log(replication.output_dir)
    rows = [_run_row(replication, run, stage_log) for run in replication.runs]
    unfinished = {stage: f"stopped at the {entry['stopped']}" if "stopped" in entry else f"not started ({entry['not_started']})"
                  for stage, entry in stage_log.items() if "stopped" in entry or "not_started" in entry}
    results = {
        "output_dir": str(replication.output_dir),
        "finetune_method": replication.finetune_method,
        "commits": sorted({c for row in rows for c in row.get("commits", [])}),
        "arms": rows,
        **({"unfinished_stages": unfinished} if unfinished else {}),
        "source": "robustness.json of each evaluation; wall times and commits recorded by the replication driver; paired "
        "statistics by mimir_hf.evaluation.compare_evaluations from each evaluation's per_sample.npz, between runs of one seed",
    }
    for evaluation in replication.headline_evaluations():
        for seed, runs in replication.seed_groups().items():
            key = "paired" + evaluation.suffix.replace("-", "_") + ("" if seed is None else f"_seed{seed}")
            keys = {run.key for run in runs}
            results[key] = paired_statistics(replication, [row for row in rows if row["run"] in keys], evaluation)
    return results


def paired_statistics(replication: Replication, rows: list[dict], evaluation: Evaluation = EVALUATIONS[0]) -> dict:
    """The library's paired comparison of the evaluated runs on the headline attacks that `evaluation` ran.

    A run that took hours must still get its table, so a comparison that cannot be made (one run,
    per-sample files missing, runs evaluated on different images) is recorded with its reason instead
    of raised.
    """
    from ..evaluation import compare_evaluations

    evaluated = [row for row in rows if not row.get("missing")]
    if len(evaluated) < 2:
        return {"skipped": "fewer than two arms were evaluated"}
    folders = [replication.output_dir / evaluation.folder(row["name"]) for row in evaluated]
    reports = [_read_report(folder) for folder in folders]
    attacks = [a for a in HEADLINE_ATTACKS if all(r is not None and _accuracy(r, a) is not None for r in reports)]
    try:
        comparison = compare_evaluations(folders, names=[row["name"] for row in evaluated], attacks=attacks or None,
                                         bootstrap_samples=replication.args.bootstrap_samples, seed=replication.args.bootstrap_seed)
    except (ValueError, FileNotFoundError) as error:
        return {"skipped": str(error)}
    return comparison.to_dict()


def _pct(value: float | None) -> str:
    return "—" if value is None else format_percent(value)


def _table_row(row: dict) -> tuple[str, list[str]]:
    """The markdown row of one run, and its notes."""
    walls = row["wall_time_seconds"]
    pre = next((v for k, v in walls.items() if k.startswith("pretrain-")), None)
    evals = [v for k, v in walls.items() if k.startswith("eval-")]
    times = [format_seconds(pre) if any(k.startswith("pretrain-") for k in walls) else "n/a",
             format_seconds(walls.get(f"finetune-{row['name']}")),
             format_seconds(None if None in evals or not evals else sum(evals))]
    if row.get("missing"):
        return f"| {row['label']} | not evaluated | | | | | {' | '.join(times)} | |", []
    acc = row["accuracy"]
    checks = "passed" if row.get("checks_passed") else "FAILED: " + ", ".join(row.get("failed_checks", []))
    images = str(row.get("num_samples"))
    subset = row["worst_case"].get("num_samples")
    if "accuracy_num_samples" in row and subset != row.get("num_samples"):
        images += f" ({subset} for AutoAttack and worst case)"
    line = (f"| {row['label']} | {_pct(acc['clean'])} | {_pct(acc['pgd-20'])} | {_pct(acc['autoattack'])} | "
            f"{_pct(row['worst_case'].get('accuracy'))} | {images} | {' | '.join(times)} | {checks} |")
    notes = []
    aa = row.get("autoattack", {})
    if aa:
        ran = aa.get("attacks_run") or aa.get("attacks")
        notes.append(f"- {row['label']}: AutoAttack version `{aa.get('version')}`" + (f", components {', '.join(ran)}" if ran else "")
                     + (f" ({aa['note']})" if aa.get("note") else "") + ".")
    if row["worst_case"].get("attacks"):
        notes.append(f"- {row['label']}: worst case over {', '.join(row['worst_case']['attacks'])}.")
    if row.get("adaptive"):
        adaptive = ", ".join(f"{name} {_pct(value)}" for name, value in row["adaptive"]["accuracy"].items())
        notes.append(f"- {row['label']}: adaptive evaluation on {row['adaptive']['num_samples']} images: {adaptive}.")
    return line, notes


def _threat_models(rows: list[dict]) -> str:
    """The threat model of the evaluated runs as their reports state it ("L∞ ε = 8/255")."""
    described = sorted({row["threat_model"] for row in rows if row.get("threat_model")})
    return " / ".join(described) if described else "threat model not recorded"


def _autoattack_subset(rows: list[dict]) -> tuple[str, ...] | None:
    """The AutoAttack components every evaluated run used, when that is one subset of the suite (a custom version)."""
    suites = {(row.get("autoattack", {}).get("version"), tuple(row.get("autoattack", {}).get("attacks_run")
                                                             or row.get("autoattack", {}).get("attacks") or ()))
              for row in rows if not row.get("missing")}
    if len(suites) == 1:
        version, components = suites.pop()
        if version == "custom" and components:
            return components
    return None


def _autoattack_header(rows: list[dict]) -> str:
    """"AutoAttack", or the components that ran when every run used the same subset of the suite: a subset's
    accuracy is an upper bound on the standard suite's, and the column must not claim more."""
    subset = _autoattack_subset(rows)
    if subset is None:
        return "AutoAttack"
    return f"AutoAttack ({' + '.join(c.upper() for c in subset)}; an upper bound on the standard suite)"


def format_markdown(results: dict) -> str:
    lines = [
        "# Replication results",
        "",
        f"Accuracies in % on the evaluated test images, {_threat_models(results['arms'])}, from each arm's robustness.json. "
        "Worst case: correct under every headline attack of that report. Wall times as measured by the replication driver."
        + (f" Finetuning: {results['finetune_method']}." if results.get("finetune_method") else ""),
        "",
        f"| arm | clean | PGD-20 | {_autoattack_header(results['arms'])} | worst case | images | pretrain time | finetune time | eval time | checks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in results["arms"]:
        line, row_notes = _table_row(row)
        lines.append(line)
        notes += row_notes
    notes += [f"- Stage {name}: {reason}." for name, reason in (results.get("unfinished_stages") or {}).items()]
    if notes:
        lines += ["", *notes]
    for key in [k for k in results if k.startswith("paired")]:
        paired = results[key] or {}
        which = key.removeprefix("paired").strip("_").replace("_", ", ")
        if "metrics" in paired:
            from ..evaluation import format_comparison_markdown

            title = "Paired statistics (same test images" + (f"; {which})" if which else ")")
            lines += ["", format_comparison_markdown(paired, title=title, level=2).rstrip()]
        elif paired.get("skipped"):
            lines += ["", f"No paired statistics{' (' + which + ')' if which else ''}: {paired['skipped']}"]
    return "\n".join(lines) + "\n"


def write_results(replication: Replication, stage_log: dict | None = None) -> dict:
    results = collect_results(replication, stage_log)
    out = replication.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown = format_markdown(results)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    figure = plot_results(results, out / "results.png")
    print(markdown)
    print(f"Results written to {out / 'results.json'}, {out / 'results.md'}" + (f" and {figure}" if figure else ""))
    return results


def plot_results(results: dict, path: Path) -> Path | None:
    """The table as grouped bars (the runs side by side under each attack), with the paired statistics'
    bootstrap interval of each accuracy where there is one; None if no run was evaluated."""
    from ..evaluation import plot_accuracy_comparison

    evaluated = [row for row in results["arms"] if not row.get("missing")]
    if not evaluated:
        return None
    subset = _autoattack_subset(evaluated)
    legend = {"autoattack": f"AutoAttack ({' + '.join(c.upper() for c in subset)})" if subset else "autoattack"}
    rows = {row["label"]: {legend.get(name, name): value for name, value in
                           {**row["accuracy"], "worst case": row["worst_case"].get("accuracy")}.items()}
            for row in evaluated}
    # Each bar's interval comes from the evaluation its accuracy was read from, as in collect_results: an
    # attack from the first evaluation that ran it, the worst case from the last (the one with most attacks).
    labels = {row["name"]: row["label"] for row in evaluated}
    intervals: dict[str, dict] = {label: {} for label in rows}
    for key in (k for k in results if k.startswith("paired")):
        for metric in (results[key] or {}).get("metrics", []):
            for run_name, entry in metric["accuracy"].items():
                bars = intervals.get(labels.get(run_name))
                name = legend.get(metric["name"], metric["name"])
                if bars is not None and (name == "worst case" or name not in bars):
                    bars[name] = tuple(entry["interval"])
    sizes = {row.get("num_samples") for row in evaluated}
    subsets = {row["worst_case"].get("num_samples") for row in evaluated if "accuracy_num_samples" in row} - sizes
    title = f"CIFAR-10, {_threat_models(evaluated)}" + (f", first {sizes.pop()} test images" if len(sizes) == 1 else "")
    if len(subsets) == 1:
        title += f" (AutoAttack, worst case: first {subsets.pop()})"
    confidence = next((results[k]["bootstrap"]["confidence"] for k in results
                       if k.startswith("paired") and "bootstrap" in (results[k] or {})), None)
    if any(intervals.values()) and confidence is not None:
        title += f"\nerror bars: {100 * confidence:g} % bootstrap intervals"
    return plot_accuracy_comparison(rows, path, title=title, intervals=intervals)
