"""mimir-hf: MIMIR robust Vision Transformers on the Hugging Face stack.

Stage 1 pretrains a `ViTMAEForPreTraining` on adversarial inputs with clean targets and a
mutual-information penalty (`MimirForPreTraining`, `MimirTrainer`); stage 2 finetunes a stock
classifier (the reference's mean-pooled head as a `BeitForImageClassification`) adversarially (`AdversarialTrainer`); `mimir_hf.evaluation` measures
the result with real attacks. Submodules are imported lazily so that `import mimir_hf` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from ._versions import check_transformers_version  # noqa: E402

check_transformers_version()

_LAZY = {
    "MimirConfig": "mimir_hf.modeling",
    "MimirForPreTraining": "mimir_hf.modeling",
    "MimirForPreTrainingOutput": "mimir_hf.modeling",
    "mimir_config": "mimir_hf.modeling",
    "pgd": "mimir_hf.attacks",
}

if TYPE_CHECKING:
    from .attacks import pgd
    from .modeling import MimirConfig, MimirForPreTraining, MimirForPreTrainingOutput, mimir_config


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mimir_hf' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
