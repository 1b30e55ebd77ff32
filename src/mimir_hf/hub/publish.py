"""Push a MIMIR checkpoint to the Hugging Face Hub in one commit.

What goes up: the safetensors weights (and their index when sharded), `config.json` (with
`architectures` naming the stock transformers class), the image
processor (`preprocessor_config.json`), the generated card (`README.md`), the training
configuration (`recipe_config.yaml`, secrets removed) and, for a classifier, `robustness.json`, the
AutoAttack log, the accuracy-vs-ε picture, `per_sample.npz` and the table that the evaluation wrote. Everything is one `create_commit`, so a repo never shows weights
without the card that describes them.

The token comes from the `token` argument, `HF_TOKEN` or the login cache (`hf auth login`), and is
never logged; errors are re-raised as `PublishError` with the token scrubbed from their text.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artefacts import (
    IMAGE_PROCESSOR_FILE,
    MODEL_CONFIG_FILE,
    RECIPE_CONFIG,
    REPORT_FILE,
    REPORT_TABLE_FILE,
)
from ..evaluation.robustness_report import RobustnessReport
from .cards import CardKind, build_model_card
from .eval_results import EVAL_RESULTS_DIR, eval_result_files
from .recipe_configs import load_recipe_config
from .robustness_results import load_classifier_report

__all__ = ["PublishError", "PublishResult", "files_to_publish", "publish_checkpoint", "stock_config_json"]

logger = logging.getLogger(__name__)

WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
# Files generated from the report: one that a new report no longer produces is removed in the same commit.
GENERATED_PATTERNS = (f"{EVAL_RESULTS_DIR}/*.yaml",)


class PublishError(RuntimeError):
    """Publishing failed or was refused; the message never contains the token."""


@dataclass
class PublishResult:
    repo_id: str
    repo_url: str | None
    commit_oid: str | None
    commit_url: str | None
    files: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    card: str = ""
    dry_run: bool = False


def _redact(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "<redacted>")
    return text


def _check_checkpoint(folder: Path, kind: CardKind) -> dict[str, Any]:
    """Refuse what stock transformers could not load, or what breaks the [0, 1] threat model."""
    if not folder.is_dir():
        raise PublishError(f"Checkpoint directory {str(folder)!r} does not exist.")
    config_path = folder / MODEL_CONFIG_FILE
    if not config_path.is_file():
        raise PublishError(f"{str(folder)!r} has no {MODEL_CONFIG_FILE}; is it a save_pretrained directory?")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "auto_map" in config:
        raise PublishError("config.json has an 'auto_map': the model would need trust_remote_code. Save a stock model.")
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_PRETRAINING_MAPPING_NAMES,
    )

    model_type = config.get("model_type")
    if kind == "classifier":
        if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
            if model_type in MODEL_FOR_PRETRAINING_MAPPING_NAMES:
                raise PublishError(
                    f"{str(folder)!r} is a pretraining checkpoint (model_type {model_type!r}), not a classifier: "
                    "publish it with kind='pretraining' (`--kind pretraining` in recipes/publish.py)."
                )
            raise PublishError(
                f"model_type {model_type!r} is not an image classifier in stock transformers; "
                "a MIMIR classifier is a 'beit' (mean pooling) or 'vit' (CLS pooling) checkpoint from recipes/finetune.py."
            )
        if not config.get("id2label"):
            raise PublishError("config.json has no id2label; the pipeline could not name the classes.")
    elif kind == "pretraining":
        if model_type not in MODEL_FOR_PRETRAINING_MAPPING_NAMES:
            raise PublishError(
                f"model_type {model_type!r} has no pretraining model in stock transformers; "
                "a MIMIR pretraining checkpoint is a 'vit_mae' checkpoint."
            )
    else:
        raise PublishError(f"kind must be 'classifier' or 'pretraining', got {kind!r}.")

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        legacy = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pth")]
        hint = f" (found {legacy}; re-save with save_pretrained, which writes safetensors)" if legacy else ""
        raise PublishError(f"No safetensors weights in {str(folder)!r}{hint}.")
    for index in folder.glob("*.safetensors.index.json"):
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise PublishError(f"{index.name} names shards that are missing: {missing}.")

    processor_path = folder / IMAGE_PROCESSOR_FILE
    if not processor_path.is_file():
        raise PublishError(
            f"{str(folder)!r} has no {IMAGE_PROCESSOR_FILE}; save the image processor next to the model "
            "(mimir_hf.data.make_image_processor(image_size).save_pretrained(folder))."
        )
    processor = json.loads(processor_path.read_text(encoding="utf-8"))
    if processor.get("do_normalize"):
        mean, std = processor.get("image_mean"), processor.get("image_std")
        identity = isinstance(mean, list) and isinstance(std, list) and all(m == 0 for m in mean) and all(s == 1 for s in std)
        if not identity:
            raise PublishError(
                "The image processor normalises its output (do_normalize: true), but MIMIR models take [0, 1] pixels "
                "and ε is measured there; save it with do_normalize=False."
            )
    size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    image_size = config.get("image_size")
    if isinstance(size, dict) and "height" in size and isinstance(image_size, int):
        if (size.get("height"), size.get("width")) != (image_size, image_size):
            raise PublishError(
                f"The image processor outputs {size.get('height')}x{size.get('width')} images but the model takes "
                f"{image_size}x{image_size}."
            )
    return config


def stock_config_json(folder: str | Path, kind: CardKind) -> bytes | None:
    """config.json with `architectures` naming the stock class, or None when it already does.

    A checkpoint saved from a subclass (e.g. `MimirForPreTraining`) records that class; the Hub builds
    its "use this model" snippet from it, and stock transformers has no such class.
    """
    import transformers

    from .cards import stock_classes

    path = Path(folder) / MODEL_CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    stock, _ = stock_classes(config.get("model_type", ""), kind)
    architectures = config.get("architectures") or []
    if architectures and all(hasattr(transformers, name) for name in architectures):
        return None
    config["architectures"] = [stock]
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _check_report_matches(folder: Path, report: RobustnessReport, source: Path) -> None:
    """The report must have measured exactly the weights being published: a checkpoint retrained or edited in
    place keeps its path, and its card must not keep its predecessor's numbers."""
    from ..evaluation.loading import load_classifier, weights_fingerprint

    again = f"evaluate this checkpoint (recipes/evaluate.py --model_name_or_path {folder}) and publish with that report"
    if report.weights_fingerprint is None:
        raise PublishError(f"{source} records no fingerprint of the weights it measured (written by an older mimir_hf), "
                           f"so nothing shows its numbers are about {str(folder)!r}; {again}.")
    wrapper, _, _ = load_classifier(str(folder), device="cpu")
    if weights_fingerprint(wrapper) != report.weights_fingerprint:
        raise PublishError(f"{source} measured other weights than those in {str(folder)!r} (retrained or changed since "
                           f"the evaluation?); {again}.")


def files_to_publish(
    folder: str | Path, *, kind: CardKind = "classifier", report: str | Path | None = None
) -> dict[str, Path]:
    """The local files that go into the commit, by path in the repo (the card excluded).

    Raises:
        PublishError: the checkpoint is not publishable (see `_check_checkpoint`), or the report measured
            other weights.
        MissingEvaluationError: a classifier without a usable `robustness.json`.
    """
    folder = Path(folder)
    _check_checkpoint(folder, kind)
    files: dict[str, Path] = {}
    for pattern in WEIGHT_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            files[path.name] = path
    files[MODEL_CONFIG_FILE] = folder / MODEL_CONFIG_FILE
    files[IMAGE_PROCESSOR_FILE] = folder / IMAGE_PROCESSOR_FILE
    if kind == "classifier":
        loaded, report_file = load_classifier_report(report if report is not None else folder)
        _check_report_matches(folder, loaded, report_file)
        files[REPORT_FILE] = report_file
        if loaded.autoattack_log:
            log_path = report_file.parent / loaded.autoattack_log
            if not log_path.is_file():
                raise PublishError(f"{report_file} names the AutoAttack log {loaded.autoattack_log!r}, but "
                                   f"{str(log_path)!r} does not exist.")
            files[Path(loaded.autoattack_log).name] = log_path
        # The rest of the evaluation, where it was written: the picture the card shows, every image's
        # outcome (so anyone can re-check the numbers image by image) and the printed table.
        for name in (loaded.curve_file, loaded.per_sample_file, REPORT_TABLE_FILE):
            if name and (report_file.parent / name).is_file():
                files[Path(name).name] = report_file.parent / name
    return files


def publish_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    kind: CardKind = "classifier",
    report: str | Path | None = None,
    base_model: str | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the Hub's metadata key
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    template: str | Path | None = None,
    dry_run: bool = False,
    card_path: str | Path | None = None,
) -> PublishResult:
    """Render the card and push the checkpoint in `folder` to `repo_id` in one commit.

    Args:
        folder: the `save_pretrained` directory (weights, config, image processor, recipe_config.yaml).
        repo_id: "<namespace>/<name>"; created if it does not exist.
        kind: "classifier" (requires the evaluation report) or "pretraining".
        report: the `robustness.json` (or its directory); default `<folder>/robustness.json`.
        base_model: for a classifier, the Hub id of the pretraining checkpoint (card `base_model`).
        dataset_id: Hub dataset id for the card's `datasets` metadata.
        license: license id in the card metadata.
        private: create the repo as private (an existing repo keeps its visibility).
        token: a Hub token; default `HF_TOKEN` or the login cache. Never logged.
        endpoint: Hub URL; default `HF_ENDPOINT` as read when huggingface_hub was imported.
        commit_message: default "Upload MIMIR <kind> checkpoint".
        template: a Jinja template to use instead of the packaged one.
        dry_run: write the card locally (to `card_path`, default `<folder>/README.md`) and push nothing.
        card_path: where a dry run writes the card.

    Raises:
        MissingEvaluationError: a classifier without clean, PGD and AutoAttack results.
        PublishError: an unpublishable checkpoint, no token, or a failed upload (token scrubbed).
    """
    folder = Path(folder)
    files = files_to_publish(folder, kind=kind, report=report)
    report_path = files.get(REPORT_FILE)

    if not dry_run:
        token = _token_for(repo_id, token)
    secrets = (token,) if token else ()

    card_text = str(build_model_card(folder, kind=kind, repo_id=repo_id, report=report_path, base_model=base_model,
                                      dataset_id=dataset_id, license=license, template=template, secrets=secrets))
    uploads = _uploads(folder, files, card_text, kind, secrets)
    if report_path is not None:
        # the Hub's per-model results, from the same report as the card's model-index
        from huggingface_hub import constants

        source = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/{repo_id}/blob/main/{REPORT_FILE}"
        evals = eval_result_files(RobustnessReport.load(report_path), dataset_id=dataset_id, source_url=source)
        if not evals:
            logger.info("No .eval_results files: the report's dataset is not a Hub dataset id (pass dataset_id).")
        uploads.update(evals)

    if dry_run:
        target = Path(card_path) if card_path is not None else folder / "README.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(card_text, encoding="utf-8")
        return PublishResult(repo_id, None, None, None, sorted(uploads), [], card_text, dry_run=True)

    try:
        return _push(uploads, repo_id, kind=kind, private=private, token=token, endpoint=endpoint,
                     commit_message=commit_message, card_text=card_text)
    except PublishError as error:
        raise PublishError(_redact(str(error), token)) from None
    except Exception as error:  # noqa: BLE001 - every failure is re-raised, scrubbed of the token
        raise PublishError(
            f"Publishing {str(folder)!r} to {repo_id!r} failed: {type(error).__name__}: {_redact(str(error), token)}"
        ) from None


def _token_for(repo_id: str, token: str | None) -> str:
    """The token a push uses, after refusing an invalid repo id (before anything is uploaded)."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"Invalid repo id {repo_id!r}: {error}") from None
    token = token or get_token()
    if not token:
        raise PublishError("No Hugging Face token: set HF_TOKEN or run `hf auth login` (or pass token=...).")
    return token


def _uploads(folder: Path, files: dict[str, Path], card_text: str, kind: CardKind,
             secrets: tuple[str, ...]) -> dict[str, bytes | Path]:
    """The commit's content: the files, the card, config.json naming a stock class, the recipe config without secrets."""
    uploads: dict[str, bytes | Path] = dict(files)
    uploads["README.md"] = card_text.encode("utf-8")
    config_bytes = stock_config_json(folder, kind)
    if config_bytes is not None:
        uploads[MODEL_CONFIG_FILE] = config_bytes
    recipe = load_recipe_config(folder, secrets)
    if recipe is not None:
        uploads[RECIPE_CONFIG] = recipe.to_yaml().encode("utf-8")
    return uploads


def _push(uploads, repo_id, *, kind, private, token, endpoint, commit_message, card_text) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = repo_url.repo_id or repo_id
    existing = api.list_repo_files(repo_id, repo_type="model")
    stale = sorted(
        path for path in existing
        if path not in uploads and any(fnmatch.fnmatch(path, pattern) for pattern in (*WEIGHT_PATTERNS, *GENERATED_PATTERNS))
    )
    operations: list = [CommitOperationDelete(path_in_repo=path) for path in stale]
    for path_in_repo, source in sorted(uploads.items()):
        operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=source if isinstance(source, bytes) else str(source)))
    logger.info("Pushing %d file(s) to %s in one commit%s.", len(uploads), repo_id,
                f" (removing stale {stale})" if stale else "")
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload MIMIR {kind} checkpoint",
        commit_description="Weights, config, image processor and model card generated by mimir_hf.hub"
        + (" from robustness.json." if kind == "classifier" else "."),
        repo_type="model",
    )
    return PublishResult(repo_id, str(repo_url), info.oid, info.commit_url, sorted(uploads), stale, card_text)
