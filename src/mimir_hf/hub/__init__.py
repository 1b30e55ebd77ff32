"""Publishing MIMIR checkpoints: model cards from the recorded run, and one-commit pushes to the Hub.

- `build_model_card` / `render_model_card` / `write_model_card` / `validate_model_card` (offline);
- `publish_checkpoint` pushes weights, config, image processor, card, `robustness.json` and the
  AutoAttack log in a single commit; it refuses a classifier without evaluation results, or with a
  report that measured other weights (the report's weights fingerprint).

`huggingface_hub` reads `HF_ENDPOINT` when it is first imported: set it before importing this
module (or pass `endpoint=` to `publish_checkpoint`).
"""

from .cards import (
    CITATION_BIBTEX,
    REQUIRED_TAGS,
    build_model_card,
    render_model_card,
    template_path,
    validate_model_card,
    write_model_card,
)
from .recipe_configs import load_recipe_config, redact_config
from .publish import PublishError, PublishResult, files_to_publish, publish_checkpoint
from .robustness_results import (
    InvalidReportError,
    MissingEvaluationError,
    check_classifier_report,
    load_classifier_report,
)

__all__ = [
    "CITATION_BIBTEX",
    "REQUIRED_TAGS",
    "InvalidReportError",
    "MissingEvaluationError",
    "PublishError",
    "PublishResult",
    "build_model_card",
    "check_classifier_report",
    "files_to_publish",
    "load_classifier_report",
    "load_recipe_config",
    "publish_checkpoint",
    "redact_config",
    "render_model_card",
    "template_path",
    "validate_model_card",
    "write_model_card",
]
