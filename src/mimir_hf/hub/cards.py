"""Model cards for MIMIR checkpoints, rendered from what the run recorded (works offline).

Two Jinja templates ship with the package (`mimir_hf/hub/templates/`, see `model_cards/README.md`):
`pretraining.md.j2` for a stage-1 `vit_mae` checkpoint and `classifier.md.j2` for a robust
image classifier (`BeitForImageClassification` mean-pooled, or `ViTForImageClassification`). The card's numbers come from `robustness.json`, its training section
from `<checkpoint>/recipe_config.yaml` and its architecture from `config.json`; the metadata block
is built with `huggingface_hub`'s `ModelCardData`/`EvalResult` and checked by parsing the card back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .additional_data import uses_additional_data
from .card_results import eval_results, percent, result_rows
from .recipe_configs import (
    RECIPE_CONFIG,
    chosen_settings,
    config_extras,
    load_recipe_config,
    redact_config,
    stage_one_settings,
)
from .robustness_results import (
    REPORT_FILENAME,
    check_classifier_report,
    format_epsilon,
    is_sweep_entry,
    load_robustness_report,
    pgd_steps,
)

__all__ = [
    "CardKind",
    "REQUIRED_TAGS",
    "CITATION_BIBTEX",
    "template_path",
    "build_model_card",
    "render_model_card",
    "validate_model_card",
    "write_model_card",
]

CardKind = Literal["classifier", "pretraining"]
TEMPLATES_DIR = Path(__file__).parent / "templates"
REQUIRED_TAGS = ("mimir", "adversarial-robustness", "vision-transformer")
PIPELINE_TAGS = {"classifier": "image-classification", "pretraining": "image-feature-extraction"}
DEFAULT_LICENSE = "apache-2.0"
CITATION_BIBTEX = """@article{xu2023mimir,
  title   = {{MIMIR}: Masked Image Modeling for Mutual Information-based Adversarial Robustness},
  author  = {Xu, Xiaoyun and Yu, Shujian and Wu, Jingzheng and Picek, Stjepan},
  journal = {arXiv preprint arXiv:2312.04960},
  year    = {2023},
  url     = {https://arxiv.org/abs/2312.04960}
}"""
# ViT sizes used by MIMIR (hidden, layers, heads) -> name.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_UNRENDERED = re.compile(r"\{\{[^{}]*\}\}|\{%.*?%\}|\{#.*?#\}")


def template_path(kind: CardKind) -> Path:
    """The packaged Jinja template for `kind`."""
    if kind not in PIPELINE_TAGS:
        raise ValueError(f"kind must be 'classifier' or 'pretraining', got {kind!r}.")
    return TEMPLATES_DIR / f"{kind}.md.j2"


def _dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}.")
    return json.loads(path.read_text(encoding="utf-8"))


def _looks_like_hub_id(value: Any) -> bool:
    return isinstance(value, str) and _HUB_ID.fullmatch(value) is not None and not Path(value).exists()


def stock_classes(model_type: str, kind: CardKind) -> tuple[str, str]:
    """The stock transformers classes (head model, bare encoder) that load a `model_type` checkpoint."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_PRETRAINING_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    heads = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES if kind == "classifier" else MODEL_FOR_PRETRAINING_MAPPING_NAMES
    default = "ViTForImageClassification" if kind == "classifier" else "ViTMAEForPreTraining"
    return heads.get(model_type, default), MODEL_MAPPING_NAMES.get(model_type, "AutoModel")


def _architecture(config: dict[str, Any], kind: CardKind) -> dict[str, Any]:
    hidden = config.get("hidden_size")
    layers = config.get("num_hidden_layers")
    heads = config.get("num_attention_heads")
    from ..modeling.presets import size_name  # the paper's size table has one home

    size = size_name(hidden, layers, heads)
    description = (
        f"{size} Vision Transformer" if size else f"Vision Transformer (hidden size {hidden}, {layers} layers, {heads} heads)"
    )
    if config.get("model_type") == "swin":  # a converted Swin classifier (recipes/convert_reference.py)
        description = (
            f"Swin Transformer (embed dim {config.get('embed_dim')}, depths {config.get('depths')}, heads "
            f"{config.get('num_heads')}, window {config.get('window_size')})"
        )
    model_type = config.get("model_type", "?")
    class_name, base_class = stock_classes(model_type, kind)
    id2label = config.get("id2label") or {}
    return {
        "description": description,
        "size_name": size,
        "model_type": model_type,
        "class_name": class_name,
        "base_class_name": base_class,
        "image_size": config.get("image_size"),
        "patch_size": config.get("patch_size"),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_labels": len(id2label) or config.get("num_labels"),
        "pooling": _pooling(config) if kind == "classifier" else None,
        "mask_ratio": config.get("mask_ratio"),
        "norm_pix_loss": config.get("norm_pix_loss"),
        "decoder_hidden_size": config.get("decoder_hidden_size"),
        "decoder_num_hidden_layers": config.get("decoder_num_hidden_layers"),
    }


def _pooling(config: dict[str, Any]) -> str:
    """How the classifier reads the encoder: the card says it, since it changes what the numbers mean."""
    if config.get("model_type") == "swin":
        return "mean of the last stage's tokens after its LayerNorm (Swin)"
    if config.get("use_mean_pooling"):
        return "mean of the patch tokens through a LayerNorm (as the MIMIR reference and MAE finetuning)"
    return "the CLS token after the encoder's final LayerNorm"


def _labels_preview(config: dict[str, Any], limit: int = 10) -> str:
    id2label = config.get("id2label") or {}
    labels = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    if not labels or all(re.fullmatch(r"LABEL_\d+", label) for label in labels):
        return ""
    shown = ", ".join(labels[:limit])
    return shown + (f", … ({len(labels)} in total)" if len(labels) > limit else "")


@dataclass
class _CardInputs:
    kind: CardKind
    config: dict[str, Any]
    report: dict[str, Any] | None
    training_config: dict[str, Any] | None
    evaluation_config: dict[str, Any] | None


def _find_epsilon(*sources: tuple[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    for source, data in sources:
        for key, value in (data or {}).items():
            if "epsilon" in str(key).lower() and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return {"key": key, "source": source, "display": format_epsilon(float(value))}
    return None


def build_model_card(
    folder: str | Path,
    *,
    kind: CardKind = "classifier",
    repo_id: str | None = None,
    report: str | Path | dict[str, Any] | None = None,
    base_model: str | None = None,
    dataset_id: str | None = None,
    license: str = DEFAULT_LICENSE,  # noqa: A002 - the Hub's metadata key
    template: str | Path | None = None,
    secrets: tuple[str, ...] = (),
):
    """Render the card of the checkpoint in `folder` and check it; returns a `huggingface_hub.ModelCard`.

    Args:
        folder: a `save_pretrained` directory (config.json, weights, image processor, recipe_config.yaml).
        kind: "classifier" (needs the evaluation report) or "pretraining".
        repo_id: the Hub repo the card will live in (used in the snippets and as the model-index name).
        report: the `robustness.json` (path, its directory, or the loaded dict); default
            `<folder>/robustness.json`. Required for a classifier.
        base_model: Hub id of the pretraining checkpoint a classifier was finetuned from (the recipe
            config usually names a local directory, which cannot be told from a Hub id, so it is not guessed).
        dataset_id: Hub dataset id for the `datasets` metadata; default: the report's/recipe's dataset
            when it looks like a Hub id.
        license: SPDX-style license id for the metadata.
        template: a Jinja template to use instead of the packaged one.
        secrets: strings to scrub from the embedded configuration (tokens).

    Raises:
        MissingEvaluationError: a classifier without a report holding clean, PGD and AutoAttack entries.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .._version import __version__

    folder = Path(folder)
    if kind not in PIPELINE_TAGS:
        raise ValueError(f"kind must be 'classifier' or 'pretraining', got {kind!r}.")
    config = _read_json(folder / "config.json", "config.json")
    training_record = load_recipe_config(folder, secrets)
    training_config = training_record.arguments if training_record else None

    loaded_report = None
    evaluation_record = None
    if kind == "classifier":
        loaded_report = report if isinstance(report, dict) else load_robustness_report(report or folder / REPORT_FILENAME)
        check_classifier_report(loaded_report)
        report_dir = Path(loaded_report.get("_path", folder / REPORT_FILENAME)).parent
        if report_dir.resolve() != folder.resolve():
            evaluation_record = load_recipe_config(report_dir, secrets)

    dataset_source = (loaded_report or {}).get("dataset") or (training_config or {}).get("dataset")
    if dataset_id is None and _looks_like_hub_id(dataset_source):
        dataset_id = dataset_source
    model_name = (repo_id or folder.resolve().name).split("/")[-1]
    tags = list(REQUIRED_TAGS) + (["image-classification"] if kind == "classifier" else ["masked-image-modeling"])
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[kind],
        tags=tags,
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model if kind == "classifier" else None,
        model_name=model_name if kind == "classifier" else None,
        eval_results=eval_results(loaded_report, dataset_id) if loaded_report else None,
    )
    if uses_additional_data(folder, training_config):  # RobustBench's flag; see hub/additional_data.py
        card_data.additional_data = True

    arch = _architecture(config, kind)
    extras = config_extras(config)
    shown_config, filtered = chosen_settings(training_record) if training_record else (None, False)
    shown_evaluation, evaluation_filtered = chosen_settings(evaluation_record) if evaluation_record else (None, False)
    start = (training_config or {}).get("model_name_or_path")
    context: dict[str, Any] = {
        "title": f"MIMIR {arch['size_name'] or 'ViT'} — {'robust classifier' if kind == 'classifier' else 'adversarial MAE pretraining'}"
        + (f" ({model_name})" if model_name else ""),
        "repo_id": repo_id or f"<your-org>/{model_name}",
        "model_name": model_name,
        "arch": arch,
        "base_model": base_model,
        "mimir_settings": _dump_yaml(extras) if extras else "",
        "training_config": _dump_yaml(shown_config) if shown_config else "",
        "training_config_filtered": filtered,
        "evaluation_config": _dump_yaml(shown_evaluation) if shown_evaluation else "",
        "evaluation_config_filtered": evaluation_filtered,
        "from_scratch": kind == "classifier" and isinstance(start, str) and start.strip().lower() == "scratch",
        "stage_one_settings": _dump_yaml(settings) if (settings := stage_one_settings(training_config)) else "",
        "citation": CITATION_BIBTEX,
        "mimir_hf_version": __version__,
        "dataset": dataset_source,
    }
    if kind == "pretraining":
        context["epsilon"] = _find_epsilon(("config.json", extras), (RECIPE_CONFIG, training_config))
    else:
        assert loaded_report is not None
        threat = dict(loaded_report["threat_model"])
        threat.setdefault("norm", "Linf")
        threat.setdefault("input_range", [0.0, 1.0])
        threat.setdefault("normalization", "none")
        threat["norm_display"] = "L∞" if str(threat["norm"]).lower() in ("linf", "l_inf", "l∞") else threat["norm"]
        threat["epsilon_display"] = format_epsilon(float(threat["epsilon"]), str(threat["norm"]))
        rows, sweep = result_rows(loaded_report)
        worst = loaded_report.get("worst_case")
        if isinstance(worst, dict) and isinstance(worst.get("accuracy"), (int, float)):
            worst = {**worst, "attacks": worst.get("attacks") or [], "accuracy_pct": percent(worst["accuracy"])}
        else:
            worst = None
        checks = [c for c in loaded_report.get("checks") or [] if isinstance(c, dict)]
        autoattack_log = loaded_report.get("autoattack_log")
        report_dir = Path(loaded_report.get("_path", folder / REPORT_FILENAME)).parent
        curve = loaded_report.get("curve_file")
        context.update(
            report={
                "dataset": loaded_report.get("dataset", "?"),
                "split": loaded_report.get("split", "?"),
                "num_samples": loaded_report.get("num_samples", 0),
                "seed": loaded_report.get("seed", "?"),
            },
            threat=threat,
            results=rows,
            sweep=sweep,
            worst_case=worst,
            checks=checks,
            failed_checks=[c for c in checks if not c.get("passed", False)],
            versions=loaded_report.get("versions") or {},
            autoattack_log=autoattack_log if autoattack_log and (report_dir / autoattack_log).is_file() else None,
            curve_file=curve if curve and (report_dir / curve).is_file() else None,
            labels_preview=_labels_preview(config),
        )

    source = Path(template) if template is not None else template_path(kind)
    card = ModelCard.from_template(card_data, template_path=str(source), **context)
    validate_model_card(str(card), kind=kind, report=loaded_report, base_model=base_model if kind == "classifier" else None)
    return card


def render_model_card(folder: str | Path, **kwargs: Any) -> str:
    """The card text (README.md) for the checkpoint in `folder`; see `build_model_card`."""
    return str(build_model_card(folder, **kwargs))


def write_model_card(folder: str | Path, output: str | Path | None = None, **kwargs: Any) -> Path:
    """Render the card and write it (default `<folder>/README.md`); returns the path written."""
    text = render_model_card(folder, **kwargs)
    path = Path(output) if output is not None else Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def validate_model_card(
    text: str,
    *,
    kind: CardKind = "classifier",
    report: dict[str, Any] | None = None,
    base_model: str | None = None,
):
    """Parse a card back and check its metadata; returns the parsed `ModelCard`.

    `ModelCard` itself raises on a malformed YAML block or `model-index`. On top of that: the required
    tags, `library_name: transformers`, the pipeline tag, no unrendered template syntax, and — for a
    classifier — clean, PGD and AutoAttack results whose values and ε equal the report's.

    Raises:
        ValueError: describing the first problem found.
    """
    from huggingface_hub import ModelCard

    if not text.lstrip().startswith("---"):
        raise ValueError("The card has no YAML metadata block.")
    card = ModelCard(text)  # raises ValueError on a malformed model-index
    data = card.data
    problems = []
    leftover = _UNRENDERED.search(text)
    if leftover:
        problems.append(f"unrendered template syntax {leftover.group(0)!r} left in the card")
    if data.library_name != "transformers":
        problems.append(f"library_name is {data.library_name!r}, expected 'transformers'")
    if data.pipeline_tag != PIPELINE_TAGS[kind]:
        problems.append(f"pipeline_tag is {data.pipeline_tag!r}, expected {PIPELINE_TAGS[kind]!r}")
    missing_tags = [t for t in REQUIRED_TAGS if t not in (data.tags or [])]
    if missing_tags:
        problems.append(f"missing tags {missing_tags}")
    if not data.license:
        problems.append("no license")
    if base_model is not None and data.base_model != base_model:
        problems.append(f"base_model is {data.base_model!r}, expected {base_model!r}")
    if kind == "classifier":
        results = {r.metric_config: r for r in data.eval_results or []}
        needed = ["clean", "autoattack"]
        pgd = sorted((n for n in results if n and pgd_steps(n) is not None), key=pgd_steps)
        if not pgd:
            problems.append("no PGD result in model-index")
        for name in needed:
            if name not in results:
                problems.append(f"no {name!r} result in model-index")
        if report is not None:
            for name, entry in report["attacks"].items():
                if is_sweep_entry(name):
                    continue
                result = results.get(name)
                if result is None:
                    problems.append(f"report entry {name!r} is missing from model-index")
                    continue
                if result.metric_value != entry["accuracy"]:
                    problems.append(f"{name}: card says {result.metric_value!r}, report says {entry['accuracy']!r}")
                if name != "clean":
                    card_eps = (result.metric_args or {}).get("epsilon")
                    report_eps = entry.get("epsilon", report["threat_model"]["epsilon"])
                    if card_eps != report_eps:
                        problems.append(f"{name}: card ε {card_eps!r} differs from the report's {report_eps!r}")
            for name in ("autoattack", *pgd):
                if name in results and "library_version" not in (results[name].metric_args or {}) and report["attacks"].get(name, {}).get("library_version"):
                    problems.append(f"{name}: the attack library's version is missing")
    if problems:
        raise ValueError("Invalid model card: " + "; ".join(problems) + ".")
    return card
