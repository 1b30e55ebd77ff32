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
from pathlib import Path
from typing import Any, Literal

import yaml

from ..artefacts import MODEL_CONFIG_FILE, RECIPE_CONFIG, is_hub_id
from ..evaluation.attack_specs import format_epsilon
from ..evaluation.robustness_report import RobustnessReport
from .additional_data import uses_additional_data
from .card_results import eval_results, percent, result_rows
from ..training.runs import RecipeConfig
from .recipe_configs import chosen_settings, config_extras, load_recipe_config, stage_one_settings
from .robustness_results import check_classifier_report, load_classifier_report

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


def _find_epsilon(*sources: tuple[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    for source, data in sources:
        for key, value in (data or {}).items():
            if "epsilon" in str(key).lower() and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return {"key": key, "source": source, "display": format_epsilon(float(value))}
    return None


def _model_size(shown: dict[str, Any], arch: dict[str, Any]) -> dict[str, Any]:
    """The recipe records the preset it started from (`model_size: vit-t`) even when explicit dimensions
    replaced it; the card says what the model is: the preset only when the architecture is that preset."""
    preset = shown.get("model_size")
    if not isinstance(preset, str) or (arch["size_name"] or "").lower() == preset.lower():
        return shown
    dimensions = (f"hidden size {arch['hidden_size']}, {arch['num_hidden_layers']} layers, "
                  f"{arch['num_attention_heads']} heads")
    return {**shown, "model_size": f"custom ({dimensions}; not the {preset} preset)"}


def _run_context(kind: CardKind, arch: dict[str, Any], config: dict[str, Any], training: RecipeConfig | None,
                 evaluation: RecipeConfig | None) -> dict[str, Any]:
    """What the card shows of how the model was made: MIMIR's settings in config.json, the options the training
    (and the evaluation) chose, the stage-1 settings of the pretraining checkpoint, a pretraining's budget."""
    extras = config_extras(config)
    training_config = training.arguments if training else None
    shown_config, filtered = chosen_settings(training) if training else (None, False)
    shown_evaluation, evaluation_filtered = chosen_settings(evaluation) if evaluation else (None, False)
    start = (training_config or {}).get("model_name_or_path")
    settings = stage_one_settings(training_config)
    return {
        "mimir_settings": _dump_yaml(extras) if extras else "",
        "training_config": _dump_yaml(_model_size(shown_config, arch)) if shown_config else "",
        "training_config_filtered": filtered,
        "evaluation_config": _dump_yaml(shown_evaluation) if shown_evaluation else "",
        "evaluation_config_filtered": evaluation_filtered,
        "from_scratch": kind == "classifier" and isinstance(start, str) and start.strip().lower() == "scratch",
        "stage_one_settings": _dump_yaml(settings) if settings else "",
        "epsilon": _find_epsilon((MODEL_CONFIG_FILE, extras), (RECIPE_CONFIG, training_config)) if kind == "pretraining" else None,
    }


def _classifier_context(report: RobustnessReport, report_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What the classifier template shows of the report: threat model, results, sweep, worst case, checks."""
    threat = report.threat_model
    rows, sweep = result_rows(report)
    worst = report.worst_case

    def beside(name: str | None) -> str | None:  # an evaluation file the card links, if it is there
        return name if name and (report_dir / name).is_file() else None

    return {
        "report": {"dataset": report.dataset, "split": report.split, "num_samples": report.num_samples,
                   "seed": report.seed},
        "threat": {"norm": threat.norm, "epsilon": threat.epsilon, "input_range": list(threat.input_range),
                   "normalization": threat.normalization, "norm_display": threat.norm_display,
                   "epsilon_display": threat.epsilon_text},
        "results": rows,
        "sweep": sweep,
        "worst_case": {"attacks": worst.attacks, "accuracy": worst.accuracy, "accuracy_pct": percent(worst.accuracy)},
        "checks": report.checks,
        "failed_checks": report.failed_checks,
        "versions": report.versions,
        "autoattack_log": beside(report.autoattack_log),
        "curve_file": beside(report.curve_file),
        "labels_preview": _labels_preview(config),
    }


def _evaluation(
    folder: Path, report: str | Path | RobustnessReport | None, secrets: tuple[str, ...]
) -> tuple[RobustnessReport, Path, RecipeConfig | None]:
    """A classifier's report (checked to back a claim), the folder its files are in, and the evaluation's
    recipe config when it ran elsewhere than the checkpoint's folder."""
    if isinstance(report, RobustnessReport):
        check_classifier_report(report)
        loaded, report_dir = report, folder
    else:
        loaded, path = load_classifier_report(report if report is not None else folder)
        report_dir = path.parent
    same = report_dir.resolve() == folder.resolve()
    return loaded, report_dir, None if same else load_recipe_config(report_dir, secrets)


def _card_data(kind: CardKind, license: str, dataset_id: str | None, base_model: str | None,  # noqa: A002
               model_name: str, report: RobustnessReport | None):
    """The card's metadata block: tags, license, data set, base model and the `model-index` from the report."""
    from huggingface_hub import ModelCardData

    tags = list(REQUIRED_TAGS) + (["image-classification"] if kind == "classifier" else ["masked-image-modeling"])
    return ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[kind],
        tags=tags,
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model if kind == "classifier" else None,
        model_name=model_name if kind == "classifier" else None,
        eval_results=eval_results(report, dataset_id) if report else None,
    )


def build_model_card(
    folder: str | Path,
    *,
    kind: CardKind = "classifier",
    repo_id: str | None = None,
    report: str | Path | RobustnessReport | None = None,
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
        report: the evaluation's `robustness.json` (or its folder), or a loaded `RobustnessReport` (its
            evaluation files are then looked for in `folder`); default `<folder>/robustness.json`.
            Required for a classifier.
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
    from huggingface_hub import ModelCard

    from .._version import __version__

    folder = Path(folder)
    if kind not in PIPELINE_TAGS:
        raise ValueError(f"kind must be 'classifier' or 'pretraining', got {kind!r}.")
    config = _read_json(folder / MODEL_CONFIG_FILE, MODEL_CONFIG_FILE)
    training_record = load_recipe_config(folder, secrets)
    training_config = training_record.arguments if training_record else None

    loaded_report, report_dir, evaluation_record = None, folder, None
    if kind == "classifier":
        loaded_report, report_dir, evaluation_record = _evaluation(folder, report, secrets)

    dataset_source = loaded_report.dataset if loaded_report else (training_config or {}).get("dataset")
    if dataset_id is None and is_hub_id(dataset_source):
        dataset_id = dataset_source
    model_name = (repo_id or folder.resolve().name).split("/")[-1]
    card_data = _card_data(kind, license, dataset_id, base_model, model_name, loaded_report)
    if uses_additional_data(folder, training_config):  # RobustBench's flag; see hub/additional_data.py
        card_data.additional_data = True

    arch = _architecture(config, kind)
    context: dict[str, Any] = {
        "title": f"MIMIR {arch['size_name'] or 'ViT'} — {'robust classifier' if kind == 'classifier' else 'adversarial MAE pretraining'}"
        + (f" ({model_name})" if model_name else ""),
        "repo_id": repo_id or f"<your-org>/{model_name}",
        "model_name": model_name,
        "arch": arch,
        "base_model": base_model,
        "citation": CITATION_BIBTEX,
        "mimir_hf_version": __version__,
        "dataset": dataset_source,
        **_run_context(kind, arch, config, training_record, evaluation_record),
    }
    if loaded_report is not None:
        context.update(_classifier_context(loaded_report, report_dir, config))

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
    report: RobustnessReport | None = None,
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
        problems += _results_problems({r.metric_config: r for r in data.eval_results or []}, report)
    if problems:
        raise ValueError("Invalid model card: " + "; ".join(problems) + ".")
    return card


def _results_problems(results: dict[str, Any], report: RobustnessReport | None) -> list[str]:
    """A classifier card's model-index: clean, PGD and AutoAttack present, and (given the report) every headline
    attack of the report with its value, ε and attack library's version."""
    problems = []
    pgd = [name for name, r in results.items() if (r.metric_args or {}).get("attack") == "pgd"]
    if not pgd:
        problems.append("no PGD result in model-index")
    problems += [f"no {name!r} result in model-index" for name in ("clean", "autoattack") if name not in results]
    for name, record in (report.headline_attacks if report is not None else {}).items():
        result = results.get(name)
        if result is None:
            problems.append(f"report entry {name!r} is missing from model-index")
            continue
        if result.metric_value != record.accuracy:
            problems.append(f"{name}: card says {result.metric_value!r}, report says {record.accuracy!r}")
        args = result.metric_args or {}
        if record.kind != "clean" and args.get("epsilon") != record.epsilon:
            problems.append(f"{name}: card ε {args.get('epsilon')!r} differs from the report's {record.epsilon!r}")
        if name in ("autoattack", *pgd) and record.library_version and "library_version" not in args:
            problems.append(f"{name}: the attack library's version is missing")
    return problems
