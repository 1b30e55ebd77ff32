"""From `robustness.json` to a RobustBench leaderboard submission.

RobustBench ranks models by AutoAttack "standard" accuracy on fixed images: all 10,000 CIFAR-10/100
test images, and for ImageNet a fixed list of 5,000 validation images (shipped here as package data,
see `data/NOTICE.md`). A leaderboard entry is a `model_info/<dataset>/<threat_model>/<Name>.json` in
RobustBench's `ModelInfo` schema, with accuracies as percentage strings ("59.68"), plus a "[New Model]"
issue and, for the model zoo, a loader.

What an evaluation cannot know (the paper's title, authors, venue and link; whether the training used
extra data; the accuracy the paper reports) is left null unless given, and named in the output. An
evaluation that does not follow the protocol (another data set, a subset, a partial AutoAttack, failed
gradient-masking checks) still produces a schema-valid file, but its footnote starts with
"NOT A ROBUSTBENCH ENTRY" and says why, so it can never pass for a leaderboard number.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CORRUPTIONS_MODEL_INFO_FIELDS",
    "CORRUPTIONS_MODEL_INFO_SCHEMA",
    "MODEL_INFO_FIELDS",
    "MODEL_INFO_SCHEMA",
    "NOT_AN_ENTRY",
    "ROBUSTBENCH_EPSILONS",
    "ROBUSTBENCH_NUM_IMAGES",
    "RobustBenchArguments",
    "RobustBenchSubmission",
    "build_model_info",
    "check_protocol_arguments",
    "imagenet_test_image_ids",
    "imagenet_test_indices",
    "protocol_problems",
    "robustbench_dataset",
    "validate_model_info",
    "write_robustbench_corruptions_info",
    "write_robustbench_submission",
]

MODEL_INFO_FIELDS = (
    "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
    "eps", "clean_acc", "reported", "autoattack_acc", "footnote",
)
NOT_AN_ENTRY = "NOT A ROBUSTBENCH ENTRY"
ROBUSTBENCH_NUM_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 5_000}
ROBUSTBENCH_EPSILONS = {
    ("cifar10", "Linf"): 8 / 255, ("cifar100", "Linf"): 8 / 255, ("imagenet", "Linf"): 4 / 255,
    ("cifar10", "L2"): 0.5,
}
_PERCENT = r"^(100\.00|[0-9]{1,2}\.[0-9]{2})$"
_NULLABLE_STRING = {"type": ["string", "null"]}
MODEL_INFO_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "RobustBench ModelInfo (model_info/<dataset>/<threat_model>/<Name>.json)",
    "type": "object",
    "required": list(MODEL_INFO_FIELDS),
    "additionalProperties": False,
    "properties": {
        "link": _NULLABLE_STRING,
        "name": _NULLABLE_STRING,
        "authors": _NULLABLE_STRING,
        "additional_data": {"type": ["boolean", "null"]},
        "number_forward_passes": {"type": "integer", "minimum": 1},
        "dataset": {"type": "string", "pattern": r"^[a-z0-9_-]+$"},
        "venue": _NULLABLE_STRING,
        "architecture": {"type": "string", "minLength": 1},
        "eps": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(/255)?$"},
        "clean_acc": {"type": "string", "pattern": _PERCENT},
        "reported": {"type": ["string", "null"], "pattern": _PERCENT},
        "autoattack_acc": {"type": "string", "pattern": _PERCENT},
        "footnote": _NULLABLE_STRING,
    },
}
logger = logging.getLogger(__name__)
CORRUPTIONS_MODEL_INFO_FIELDS = tuple(
    "corruptions_acc" if f == "autoattack_acc" else f for f in MODEL_INFO_FIELDS
)
CORRUPTIONS_MODEL_INFO_SCHEMA: dict[str, Any] = {
    **MODEL_INFO_SCHEMA,
    "title": "RobustBench ModelInfo, corruptions leaderboard (model_info/<dataset>/corruptions/<Name>.json)",
    "required": list(CORRUPTIONS_MODEL_INFO_FIELDS),
    "properties": {
        **{k: v for k, v in MODEL_INFO_SCHEMA["properties"].items() if k != "autoattack_acc"},
        "eps": {"type": "null"},
        "corruptions_acc": {"type": "string", "pattern": _PERCENT},
    },
}
_CIFAR_C_IMAGES_PER_PAIR = 10_000
# What only the authors know: left null unless given, and listed for the user.
_USER_FIELDS = ("link", "name", "authors", "venue", "additional_data", "reported")
_PREPROCESSING_NAMES = {(256, 224): "BicubicRes256Crop224"}


@dataclass
class RobustBenchArguments:
    """What a RobustBench entry needs beyond the evaluation (the recipe's `--protocol robustbench` reads these)."""

    robustbench_name: str | None = field(
        default=None, metadata={"help": "Entry name, RobustBench style <FirstAuthor><Year><FirstWordOfTitle>[_<arch>]."}
    )
    paper_link: str | None = field(default=None, metadata={"help": "ModelInfo `link`: the paper's URL."})
    paper_title: str | None = field(default=None, metadata={"help": "ModelInfo `name`: the paper's title."})
    paper_authors: str | None = field(default=None, metadata={"help": "ModelInfo `authors`, comma separated."})
    venue: str | None = field(default=None, metadata={"help": "ModelInfo `venue`, e.g. 'arXiv, Dec 2023'."})
    additional_data: bool | None = field(
        default=None, metadata={"help": "ModelInfo `additional_data`: did training use data beyond the train split?"}
    )
    reported_accuracy: str | None = field(
        default=None, metadata={"help": "ModelInfo `reported`: the robust accuracy (percent) the paper reports."}
    )
    architecture: str | None = field(default=None, metadata={"help": "ModelInfo `architecture` (default: from config)."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repo of the checkpoint, for the model-zoo entry (default: model path)."}
    )
    hub_revision: str | None = field(default=None, metadata={"help": "Hub commit the model-zoo entry pins."})
    imagenet_ids_file: str | None = field(
        default=None,
        metadata={"help": "RobustBench's ImageNet list of 5,000 images (default: the copy shipped with mimir_hf)."},
    )


@dataclass
class RobustBenchSubmission:
    model_info: dict[str, Any]
    ready: bool
    problems: list[str]
    missing: list[str]
    paths: dict[str, Path]


# ----------------------------------------------------------------------------------------------
# data


def robustbench_dataset(name: str | None) -> str | None:
    """RobustBench's name for a data source (`uoft-cs/cifar10` -> `cifar10`), None when it has none."""
    text = (name or "").lower().rstrip("/")
    base = text.rsplit("/", 1)[-1]
    if re.fullmatch(r"cifar-?100", base):
        return "cifar100"
    if re.fullmatch(r"cifar-?10", base):
        return "cifar10"
    if re.fullmatch(r"(ilsvrc2012|imagenet(-1k)?|imagenet1k)", base):
        return "imagenet"
    return None


def imagenet_test_image_ids(path: str | Path | None = None) -> list[str]:
    """RobustBench's 5,000 ImageNet validation images as `<synset>/<file name>` (the shipped copy by default)."""
    if path is None:
        text = resources.files("mimir_hf.evaluation").joinpath("data/robustbench_imagenet_test_image_ids.txt").read_text()
    else:
        text = Path(path).read_text(encoding="utf-8")
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(ids) != len(set(ids)):
        raise ValueError(f"The ImageNet image list {path or '(shipped)'} holds duplicate entries.")
    return ids


def _file_names(dataset: Any) -> list[str]:
    """The base file name of every row (from the image's stored path, or a file-name column)."""
    for column in ("file_name", "filename", "image_id", "path"):
        if column in dataset.column_names:
            return [Path(str(v)).name for v in dataset[column]]
    from datasets import Image

    if "image" in dataset.column_names and isinstance(dataset.features["image"], Image):
        raw = dataset.cast_column("image", Image(decode=False))["image"]
        names = [Path(str(item.get("path") or "")).name for item in raw]
        if any(names):
            return names
    raise ValueError(
        "Cannot tell which ImageNet validation image each row is: the data set keeps no file names (expected a "
        "`file_name`/`filename`/`image_id`/`path` column, or images stored with their paths, as `imagefolder` and "
        "the Hub's imagenet-1k parquet files do)."
    )


def imagenet_test_indices(dataset: Any, ids: list[str] | None = None) -> list[int]:
    """Positions in `dataset` (ImageNet validation) of RobustBench's images, in the list's order."""
    ids = imagenet_test_image_ids() if ids is None else ids
    position = {name: i for i, name in enumerate(_file_names(dataset))}
    wanted = [Path(entry).name for entry in ids]
    missing = [name for name in wanted if name not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} of RobustBench's {len(wanted)} ImageNet images are not in this split (e.g. "
            f"{missing[:3]}); evaluate on the full ImageNet validation split."
        )
    return [position[name] for name in wanted]


# ----------------------------------------------------------------------------------------------
# the protocol


def check_protocol_arguments(eval_args: Any, data_args: Any) -> None:
    """Refuse settings that contradict RobustBench's protocol (an explicit value is never silently replaced)."""
    attacks = [a.lower() for a in eval_args.attacks]
    if "clean" not in attacks or "autoattack" not in attacks:
        raise ValueError(
            f"--protocol robustbench measures clean accuracy and AutoAttack; --attacks {' '.join(eval_args.attacks)} "
            "lacks one. Use --attacks clean autoattack (other attacks may be added)."
        )
    if eval_args.autoattack_version != "standard":
        raise ValueError(
            f"--protocol robustbench runs AutoAttack 'standard'; got --autoattack_version {eval_args.autoattack_version}."
        )
    dataset = robustbench_dataset(data_args.dataset)
    if dataset is None:
        logger.warning(
            "%s is not a RobustBench data set: the ModelInfo JSON is written for the pipeline's sake and marked '%s'.",
            data_args.dataset, NOT_AN_ENTRY,
        )
        return
    norm = getattr(eval_args, "norm", "Linf")
    budget = ROBUSTBENCH_EPSILONS.get((dataset, norm))
    if budget is None:
        raise ValueError(f"RobustBench has no {norm} leaderboard for {dataset}.")
    from .attack_specs import parse_budget

    if abs(parse_budget(eval_args.epsilon) - budget) > 1e-6:
        shown = _eps_text(budget, norm)
        raise ValueError(f"RobustBench's {dataset} {norm} budget is {shown}; got --epsilon {eval_args.epsilon}. Pass "
                         f"--epsilon {shown}.")
    if data_args.max_eval_samples is not None:
        raise ValueError(
            f"RobustBench evaluates {ROBUSTBENCH_NUM_IMAGES[dataset]} {dataset} images; --max_eval_samples "
            f"{data_args.max_eval_samples} would make a subset. Drop it (or use --protocol custom for a first look)."
        )


def protocol_problems(report: dict[str, Any]) -> list[str]:
    """Why this report is not a RobustBench leaderboard number ([] when it is)."""
    problems = []
    dataset = robustbench_dataset(report.get("dataset"))
    threat = report.get("threat_model", {})
    norm = threat.get("norm", "Linf")
    if dataset is None:
        problems.append(f"{report.get('dataset')!r} is not a RobustBench data set (CIFAR-10, CIFAR-100, ImageNet)")
    else:
        expected = ROBUSTBENCH_NUM_IMAGES[dataset]
        if report.get("num_samples") != expected:
            problems.append(f"{report.get('num_samples')} images evaluated; RobustBench uses {expected}")
        budget = ROBUSTBENCH_EPSILONS.get((dataset, norm))
        if budget is None:
            problems.append(f"RobustBench has no {norm} leaderboard for {dataset}")
        elif abs(float(threat.get("epsilon", -1)) - budget) > 1e-6:
            problems.append(f"ε = {threat.get('epsilon')}; RobustBench's {dataset} {norm} budget is {budget:.6g}")
    entry = report.get("attacks", {}).get("autoattack")
    if entry is None:
        problems.append("no AutoAttack result")
    else:
        ran = entry.get("attacks_run") or ["apgd-ce", "apgd-t", "fab-t", "square"]
        if entry.get("version") != "standard" or sorted(ran) != sorted(["apgd-ce", "apgd-t", "fab-t", "square"]):
            problems.append(f"AutoAttack ran {', '.join(ran)} ({entry.get('version')}), not the full standard suite")
    if threat.get("input_range", [0.0, 1.0]) != [0.0, 1.0]:
        problems.append("inputs are not [0, 1] pixels")
    failed = [c["name"] for c in report.get("checks", []) if not c.get("passed", True)]
    if failed:
        problems.append(f"gradient-masking check(s) failed: {', '.join(failed)}")
    return problems


def _percent(fraction: float) -> str:
    return f"{100 * float(fraction):.2f}"


def _eps_text(epsilon: float, norm: str) -> str:
    if norm == "Linf":
        levels = round(epsilon * 255, 4)
        return f"{levels:g}/255"
    return f"{epsilon:g}"


def _architecture(config: dict[str, Any] | None) -> str:
    if not config:
        return "unknown"
    kind = {"vit": "ViT", "beit": "BEiT", "vit_mae": "ViT (MAE)", "deit": "DeiT", "swin": "Swin"}.get(
        str(config.get("model_type")), str(config.get("model_type") or "unknown")
    )
    parts = []
    for key, label in (("hidden_size", "width"), ("num_hidden_layers", "depth"), ("patch_size", "patch")):
        if config.get(key) is not None:
            parts.append(f"{label} {config[key]}")
    return f"{kind} ({', '.join(parts)})" if parts else kind


def _preprocessing_name(report: dict[str, Any]) -> str | None:
    """RobustBench's name for the preprocessing the evaluation used, or None when it has no preset for it."""
    pre = report.get("preprocessing") or {}
    resize, crop = pre.get("resize_shorter_side"), pre.get("center_crop")
    if resize is not None and resize == crop:
        return "None"  # RobustBench's `None`: ToTensor alone (images already at the model's size)
    return _PREPROCESSING_NAMES.get((resize, crop))


def build_model_info(
    report: dict[str, Any], arguments: RobustBenchArguments | None = None, model_config: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The ModelInfo dict, the fields left for the user, and the protocol problems (empty for a real entry)."""
    arguments = arguments or RobustBenchArguments()
    threat = report.get("threat_model", {})
    norm = threat.get("norm", "Linf")
    autoattack = report.get("attacks", {}).get("autoattack")
    clean = report.get("attacks", {}).get("clean")
    if autoattack is None or clean is None:
        raise ValueError("A RobustBench entry needs the clean and AutoAttack accuracies; evaluate with "
                         "--protocol robustbench (or attacks clean + autoattack).")
    problems = protocol_problems(report)
    dataset = robustbench_dataset(report.get("dataset")) or re.sub(r"[^a-z0-9_-]+", "-", str(report.get("dataset")).lower()).strip("-")
    footnote = None
    if problems:
        footnote = f"{NOT_AN_ENTRY}: " + "; ".join(problems) + "."
    info = {
        "link": arguments.paper_link,
        "name": arguments.paper_title,
        "authors": arguments.paper_authors,
        "additional_data": arguments.additional_data,
        "number_forward_passes": 1,  # a stock transformers classifier: one deterministic forward pass
        "dataset": dataset,
        "venue": arguments.venue,
        "architecture": arguments.architecture or _architecture(model_config),
        "eps": _eps_text(float(threat.get("epsilon", autoattack.get("epsilon"))), norm),
        "clean_acc": _percent(clean["accuracy"]),
        "reported": arguments.reported_accuracy,
        "autoattack_acc": _percent(autoattack["accuracy"]),
        "footnote": footnote,
    }
    missing = [key for key in _USER_FIELDS if info[key] is None]
    return info, missing, problems


def validate_model_info(info: Any, schema: dict[str, Any] = MODEL_INFO_SCHEMA) -> list[str]:
    """Problems of `info` against the ModelInfo JSON schema ([] when valid); the keywords the schema uses."""
    problems: list[str] = []
    if not isinstance(info, dict):
        return ["ModelInfo must be a JSON object"]
    for key in schema["required"]:
        if key not in info:
            problems.append(f"missing field {key!r}")
    if schema.get("additionalProperties") is False:
        problems += [f"unknown field {key!r}" for key in info if key not in schema["properties"]]
    python_types = {"string": str, "boolean": bool, "integer": int, "null": type(None)}
    for key, rule in schema["properties"].items():
        if key not in info:
            continue
        value = info[key]
        allowed = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        fits = any(
            isinstance(value, python_types[t]) and not (t == "integer" and isinstance(value, bool)) for t in allowed
        )
        if not fits:
            problems.append(f"{key!r} must be {' or '.join(allowed)}, got {type(value).__name__}")
            continue
        if isinstance(value, str):
            if "pattern" in rule and not re.search(rule["pattern"], value):
                problems.append(f"{key!r} = {value!r} does not match {rule['pattern']}")
            if len(value) < rule.get("minLength", 0):
                problems.append(f"{key!r} must not be empty")
        if isinstance(value, int) and not isinstance(value, bool) and value < rule.get("minimum", value):
            problems.append(f"{key!r} must be >= {rule['minimum']}")
    return problems


# ----------------------------------------------------------------------------------------------
# the files


def _entry_name(arguments: RobustBenchArguments, report: dict[str, Any]) -> str:
    name = arguments.robustbench_name or "MyModel"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"robustbench_name={name!r}: use letters, digits, '_', '-' and '.' only (it is a file name).")
    return name


def _submission_text(name: str, info: dict[str, Any], threat_model: str, report: dict[str, Any], missing: list[str],
                     problems: list[str], hub_id: str) -> str:
    def value(key: str) -> str:
        v = info.get(key)
        return f"TODO ({key})" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    aa = report["attacks"]["autoattack"]
    components = aa.get("components") or []
    breakdown = "; ".join(
        f"{c['name']}: {c['broken']} broken, {100 * c['robust_accuracy_after']:.2f}% left, {c['wall_time_seconds']:.0f} s"
        for c in components
    )
    lines = []
    if problems:
        lines += [f"> **{NOT_AN_ENTRY}.** This draft comes from an evaluation that does not follow RobustBench's "
                  f"protocol: {'; '.join(problems)}. Do not submit it.", ""]
    lines += [
        f"Title: [New Model] {name}",
        "",
        "# Paper Information",
        "",
        f"- **Paper Title**: {value('name')}",
        f"- **Paper URL**: {value('link')}",
        f"- **Paper authors**: {value('authors')}",
        "",
        "# Leaderboard Claim(s)",
        "",
        "## Model 1",
        "",
        f"- **Architecture**: {value('architecture')}",
        f"- **Threat Model**: {threat_model}",
        f"- **eps**: {value('eps')}",
        f"- **Clean accuracy**: {value('clean_acc')}%",
        f"- **Robust accuracy**: {value('autoattack_acc')}%",
        f"- **Additional data**: {value('additional_data')}",
        f"- **Evaluation method**: AutoAttack standard (pyautoattack {aa.get('library_version')}; {breakdown}) on "
        f"{report['num_samples']} {report['dataset']} {report.get('split')} images, [0, 1] pixels, normalisation "
        f"inside the model ({report['threat_model'].get('normalization')}), by mimir_hf "
        f"{report.get('versions', {}).get('mimir_hf')}.",
        f"- **Checkpoint and code**: https://huggingface.co/{hub_id} (a stock transformers checkpoint: "
        "`AutoModelForImageClassification.from_pretrained`, no remote code); code: mimir-hf.",
        "",
        "# Model Zoo:",
        "",
        "- [ ] I want to add my models to the Model Zoo (check if true)",
        "- [x] I use an architecture that is included among those in `transformers` (loader in "
        "robustbench_model_zoo.py, next to this file).",
        "- [ ] I agree to release my model(s) under MIT license (check if true) **OR** under a custom license, "
        "located here: TODO",
        "",
    ]
    if missing:
        lines += [f"Fields to fill in before submitting: {', '.join(missing)}.", ""]
    return "\n".join(lines)


def _zoo_entry(name: str, hub_id: str, revision: str | None, preprocessing: str | None, threat_model: str) -> str:
    revision_text = f'"{revision}"' if revision else "None  # pin the Hub commit you evaluated"
    pre = f'"{preprocessing}"' if preprocessing else (
        "None  # TODO: the evaluation's preprocessing has no RobustBench preset (see robustness.json 'preprocessing')"
    )
    variable = {"Linf": "linf", "L2": "l2"}.get(threat_model, threat_model.lower())
    return f'''"""A RobustBench model-zoo entry for {name}: the Hub checkpoint behind RobustBench's interface
([0, 1] pixels in, logits out; the checkpoint's own normalisation applied inside)."""

from collections import OrderedDict

import torch
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification


class HubImageClassifier(nn.Module):
    def __init__(self, repo_id: str, revision: str | None = None) -> None:
        super().__init__()
        self.model = AutoModelForImageClassification.from_pretrained(repo_id, revision=revision).eval()
        processor = AutoImageProcessor.from_pretrained(repo_id, revision=revision)
        normalize = getattr(processor, "do_normalize", False)
        mean = processor.image_mean if normalize else [0.0, 0.0, 0.0]
        std = processor.image_std if normalize else [1.0, 1.0, 1.0]
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=(x - self.mean) / self.std).logits


{variable} = OrderedDict([
    ("{name}", {{
        "model": lambda: HubImageClassifier("{hub_id}", revision={revision_text}),
        "gdrive_id": None,  # the weights come from the Hugging Face Hub, not Google Drive
        "preprocessing": {pre},
    }}),
])
'''


def write_robustbench_submission(
    report: dict[str, Any] | str | Path,
    output_dir: str | Path,
    arguments: RobustBenchArguments | None = None,
    model_config: dict[str, Any] | None = None,
) -> RobustBenchSubmission:
    """Write `model_info/<dataset>/<threat_model>/<Name>.json`, `robustbench_submission.md` and
    `robustbench_model_zoo.py` under `output_dir`, from a report (dict, robustness.json, or its folder)."""
    if not isinstance(report, dict):
        path = Path(report)
        report = json.loads((path / "robustness.json" if path.is_dir() else path).read_text(encoding="utf-8"))
    arguments = arguments or RobustBenchArguments()
    info, missing, problems = build_model_info(report, arguments, model_config)
    invalid = validate_model_info(info)
    if invalid:  # pragma: no cover - build_model_info only writes valid values
        raise ValueError(f"The ModelInfo built from the report is invalid: {invalid}")
    name = _entry_name(arguments, report)
    threat_model = report.get("threat_model", {}).get("norm", "Linf")
    output_dir = Path(output_dir)
    info_path = output_dir / "model_info" / info["dataset"] / threat_model / f"{name}.json"
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    hub_id = arguments.hub_model_id or str(report.get("model"))
    text_path = output_dir / "robustbench_submission.md"
    text_path.write_text(_submission_text(name, info, threat_model, report, missing, problems, hub_id), encoding="utf-8")
    zoo_path = output_dir / "robustbench_model_zoo.py"
    zoo_path.write_text(
        _zoo_entry(name, hub_id, arguments.hub_revision, _preprocessing_name(report), threat_model), encoding="utf-8"
    )
    return RobustBenchSubmission(
        model_info=info, ready=not problems, problems=problems, missing=missing,
        paths={"model_info": info_path, "submission": text_path, "model_zoo": zoo_path},
    )


def write_robustbench_corruptions_info(
    corruptions: dict[str, Any] | str | Path,
    report: dict[str, Any] | str | Path,
    output_dir: str | Path,
    arguments: RobustBenchArguments | None = None,
    model_config: dict[str, Any] | None = None,
) -> RobustBenchSubmission:
    """`model_info/<dataset>/corruptions/<Name>.json` from corruptions.json (the corrupted accuracy) and
    robustness.json (the clean accuracy on the clean test set). A set that is not the full CIFAR-10-C/100-C
    (15 corruptions × 5 severities × 10,000 images) is marked NOT A ROBUSTBENCH ENTRY."""
    from .corruptions import CIFAR10C_CORRUPTIONS

    def load(value: Any, filename: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        path = Path(value)
        return json.loads((path / filename if path.is_dir() else path).read_text(encoding="utf-8"))

    corruptions, report = load(corruptions, "corruptions.json"), load(report, "robustness.json")
    arguments = arguments or RobustBenchArguments()
    clean = report.get("attacks", {}).get("clean")
    if clean is None:
        raise ValueError("The clean accuracy comes from robustness.json, which has no 'clean' entry.")
    dataset = robustbench_dataset(report.get("dataset"))
    problems = []
    if dataset not in ("cifar10", "cifar100"):
        problems.append(f"{report.get('dataset')!r} is not CIFAR-10/100 (RobustBench's CIFAR corruption leaderboards)")
    elif report.get("num_samples") != ROBUSTBENCH_NUM_IMAGES[dataset]:
        problems.append(f"clean accuracy on {report.get('num_samples')} images; RobustBench uses {ROBUSTBENCH_NUM_IMAGES[dataset]}")
    missing_pairs = [
        f"{c}@{s}" for c in CIFAR10C_CORRUPTIONS for s in range(1, 6)
        if corruptions.get("num_images", {}).get(c, {}).get(str(s)) != _CIFAR_C_IMAGES_PER_PAIR
    ]
    if missing_pairs:
        problems.append(f"{len(missing_pairs)} of the 75 corruption × severity pairs lack their 10,000 images "
                        f"(e.g. {', '.join(missing_pairs[:3])})")
    name = _entry_name(arguments, report)
    folder = dataset or re.sub(r"[^a-z0-9_-]+", "-", str(report.get("dataset")).lower()).strip("-")
    info = {
        "link": arguments.paper_link, "name": arguments.paper_title, "authors": arguments.paper_authors,
        "additional_data": arguments.additional_data, "number_forward_passes": 1, "dataset": folder,
        "venue": arguments.venue, "architecture": arguments.architecture or _architecture(model_config), "eps": None,
        "clean_acc": _percent(clean["accuracy"]), "reported": arguments.reported_accuracy,
        "corruptions_acc": _percent(corruptions["mean_accuracy"]),
        "footnote": (f"{NOT_AN_ENTRY}: " + "; ".join(problems) + ".") if problems else None,
    }
    invalid = validate_model_info(info, CORRUPTIONS_MODEL_INFO_SCHEMA)
    if invalid:  # pragma: no cover - the values above are valid by construction
        raise ValueError(f"The corruptions ModelInfo is invalid: {invalid}")
    path = Path(output_dir) / "model_info" / folder / "corruptions" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    missing = [key for key in _USER_FIELDS if info[key] is None]
    return RobustBenchSubmission(model_info=info, ready=not problems, problems=problems, missing=missing,
                                 paths={"model_info": path})
