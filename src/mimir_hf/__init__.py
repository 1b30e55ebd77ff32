"""mimir-hf: MIMIR robust Vision Transformers on the Hugging Face stack.

Stage 1 pretrains a `ViTMAEForPreTraining` on adversarial inputs with clean targets and a
mutual-information penalty (`MimirForPreTraining`, `MimirTrainer`); stage 2 finetunes a stock
classifier (the reference's mean-pooled head as a `BeitForImageClassification`) adversarially (`AdversarialTrainer`); `mimir_hf.evaluation` measures
the result with real attacks. Submodules are imported lazily so that `import mimir_hf` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__  # noqa: E402

from ._requirements import check_transformers_version  # noqa: E402

check_transformers_version()

# `from mimir_hf import MimirTrainer`, as `from trl import DPOTrainer`: the public names of each stage,
# imported on first use.
_LAZY = {
    "AdversarialTrainer": "mimir_hf.finetuning",
    "AdversarialTrainingArguments": "mimir_hf.finetuning",
    "DataArguments": "mimir_hf.data",
    "EvaluationArguments": "mimir_hf.evaluation",
    "MimirTrainer": "mimir_hf.pretraining",
    "MimirTrainingArguments": "mimir_hf.pretraining",
    "compare_evaluations": "mimir_hf.evaluation",
    "evaluate_robustness": "mimir_hf.evaluation",
    "mae_to_classifier": "mimir_hf.finetuning",
    "publish_checkpoint": "mimir_hf.hub",
    "MimirConfig": "mimir_hf.modeling",
    "MimirForPreTraining": "mimir_hf.modeling",
    "MimirForPreTrainingOutput": "mimir_hf.modeling",
    "mimir_config": "mimir_hf.modeling",
    "pgd": "mimir_hf.attacks",
}

if TYPE_CHECKING:
    from .attacks import pgd
    from .data import DataArguments
    from .evaluation import EvaluationArguments, compare_evaluations, evaluate_robustness
    from .finetuning import AdversarialTrainer, AdversarialTrainingArguments, mae_to_classifier
    from .hub import publish_checkpoint
    from .modeling import MimirConfig, MimirForPreTraining, MimirForPreTrainingOutput, mimir_config
    from .pretraining import MimirTrainer, MimirTrainingArguments


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mimir_hf' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
