"""The files of a RobustBench submission: the ModelInfo JSON, the "[New Model]" issue text and the
model-zoo loader, the last two rendered from Jinja templates (`templates/`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...artefacts import CORRUPTIONS_FILE
from ..robustness_report import RobustnessReport
from .arguments import RobustBenchArguments
from .model_info import build_corruptions_model_info, build_model_info
from .protocol import NOT_AN_ENTRY
from .schema import CORRUPTIONS_MODEL_INFO_SCHEMA, validate_model_info

__all__ = ["RobustBenchSubmission", "write_robustbench_corruptions_info", "write_robustbench_submission"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
_PREPROCESSING_NAMES = {(256, 224): "BicubicRes256Crop224"}


@dataclass
class RobustBenchSubmission:
    """What was written: the ModelInfo, whether it is a leaderboard entry, why not, what the user must fill in."""

    model_info: dict[str, Any]
    ready: bool
    problems: list[str]
    missing: list[str]
    paths: dict[str, Path]


def _render(template: str, **context: Any) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=False,
    )
    # a Python literal in the generated model-zoo file: "text" or None
    environment.filters["python"] = lambda value: "None" if value is None else json.dumps(value)
    return environment.get_template(template).render(**context)


def _report(report: RobustnessReport | str | Path) -> RobustnessReport:
    return report if isinstance(report, RobustnessReport) else RobustnessReport.load(report)


def _entry_name(arguments: RobustBenchArguments) -> str:
    name = arguments.robustbench_name or "MyModel"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"robustbench_name={name!r}: use letters, digits, '_', '-' and '.' only (it is a file name).")
    return name


def _preprocessing_name(report: RobustnessReport) -> str | None:
    """RobustBench's name for the preprocessing the evaluation used, or None when it has no preset for it."""
    pre = report.preprocessing or {}
    resize, crop = pre.get("resize_shorter_side"), pre.get("center_crop")
    if resize is not None and resize == crop:
        return "None"  # RobustBench's `None`: ToTensor alone (images already at the model's size)
    return _PREPROCESSING_NAMES.get((resize, crop))


def _submission_text(name: str, info: dict[str, Any], report: RobustnessReport, missing: list[str],
                     problems: list[str], hub_id: str) -> str:
    autoattack = report.attacks["autoattack"]
    breakdown = "; ".join(
        f"{c.name}: {c.broken} broken, {100 * c.robust_accuracy_after:.2f}% left, {c.wall_time_seconds:.0f} s"
        for c in autoattack.components or ()
    )
    fields = {key: f"TODO ({key})" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
              for key, value in info.items()}
    return _render(
        "submission.md.j2", name=name, fields=fields, threat_model=report.norm, problems=problems, missing=missing,
        not_an_entry=NOT_AN_ENTRY, autoattack_version=autoattack.library_version, breakdown=breakdown,
        num_samples=report.num_samples, dataset=report.dataset, split=report.split,
        normalization=report.threat_model.normalization, mimir_hf_version=report.versions.get("mimir_hf"), hub_id=hub_id,
    )


def write_robustbench_submission(
    report: RobustnessReport | str | Path,
    output_dir: str | Path,
    arguments: RobustBenchArguments | None = None,
    model_config: dict[str, Any] | None = None,
) -> RobustBenchSubmission:
    """Write `model_info/<dataset>/<threat_model>/<Name>.json`, `robustbench_submission.md` and
    `robustbench_model_zoo.py` under `output_dir`, from a report (or the robustness.json / folder to load it from)."""
    report = _report(report)
    arguments = arguments or RobustBenchArguments()
    info, missing, problems = build_model_info(report, arguments, model_config)
    invalid = validate_model_info(info)
    if invalid:  # pragma: no cover - build_model_info only writes valid values
        raise ValueError(f"The ModelInfo built from the report is invalid: {invalid}")
    name = _entry_name(arguments)
    output_dir = Path(output_dir)
    info_path = output_dir / "model_info" / info["dataset"] / report.norm / f"{name}.json"
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    hub_id = arguments.hub_model_id or report.model
    text_path = output_dir / "robustbench_submission.md"
    text_path.write_text(_submission_text(name, info, report, missing, problems, hub_id), encoding="utf-8")
    zoo_path = output_dir / "robustbench_model_zoo.py"
    zoo_path.write_text(
        _render("model_zoo.py.j2", name=name, hub_id=hub_id, revision=arguments.hub_revision,
                preprocessing=_preprocessing_name(report), variable=report.norm.lower()),
        encoding="utf-8",
    )
    return RobustBenchSubmission(
        model_info=info, ready=not problems, problems=problems, missing=missing,
        paths={"model_info": info_path, "submission": text_path, "model_zoo": zoo_path},
    )


def write_robustbench_corruptions_info(
    corruptions: dict[str, Any] | str | Path,
    report: RobustnessReport | str | Path,
    output_dir: str | Path,
    arguments: RobustBenchArguments | None = None,
    model_config: dict[str, Any] | None = None,
) -> RobustBenchSubmission:
    """`model_info/<dataset>/corruptions/<Name>.json` from corruptions.json (the corrupted accuracy; its content,
    the file or its folder) and the robustness report of the clean test set (the clean accuracy). A set that
    is not the full CIFAR-10-C/100-C (15 corruptions × 5 severities × 10,000 images) is marked NOT A
    ROBUSTBENCH ENTRY."""
    if not isinstance(corruptions, dict):
        path = Path(corruptions)
        corruptions = json.loads((path / CORRUPTIONS_FILE if path.is_dir() else path).read_text(encoding="utf-8"))
    report = _report(report)
    arguments = arguments or RobustBenchArguments()
    info, missing, problems = build_corruptions_model_info(corruptions, report, arguments, model_config)
    invalid = validate_model_info(info, CORRUPTIONS_MODEL_INFO_SCHEMA)
    if invalid:  # pragma: no cover - the values are valid by construction
        raise ValueError(f"The corruptions ModelInfo is invalid: {invalid}")
    path = Path(output_dir) / "model_info" / info["dataset"] / "corruptions" / f"{_entry_name(arguments)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return RobustBenchSubmission(model_info=info, ready=not problems, problems=problems, missing=missing,
                                 paths={"model_info": path})
