"""Loading what an evaluation needs: the classifier (an object, a folder or a Hub id) wrapped as a
[0, 1]-pixels → logits module with its saved normalisation, its resolution, a label check, and the
fingerprint of the weights it measures."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .wrapper import LogitsModel, normalization_from_processor

__all__ = ["check_labels", "classifier_image_size", "load_classifier", "weights_fingerprint"]

logger = logging.getLogger(__name__)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_classifier(
    model: str | Path | nn.Module,
    *,
    device: str | torch.device | None = None,
    image_processor: Any = None,
) -> tuple[LogitsModel, str, Any]:
    """Wrap `model` (an object, a local directory or a Hub id) as a [0, 1]-pixels → logits module.

    Returns (wrapper, model name for the report, image processor or None).
    """
    device = torch.device(device) if device is not None else _default_device()
    if isinstance(model, (str, Path)):
        from transformers import AutoModelForImageClassification

        name = str(model)
        try:
            module = AutoModelForImageClassification.from_pretrained(name)
        except (OSError, ValueError, KeyError) as error:
            local = Path(name).expanduser()
            where = (
                f"the directory {name!r} exists but holds no image-classification checkpoint"
                if local.exists()
                else f"{name!r} is neither a local directory nor a Hub model available offline"
            )
            raise OSError(
                f"Cannot load an image classifier from {name!r}: {where}. Give a directory written by "
                f"`save_pretrained` (e.g. the finetune recipe's output) or a Hub id of an image classifier "
                f"(a `vit_mae` pretraining checkpoint must be finetuned first). Cause: {error}"
            ) from error
        if image_processor is None:
            image_processor = _saved_processor(name)
    elif isinstance(model, nn.Module):
        module = model
        source = str(getattr(model, "name_or_path", "") or getattr(getattr(model, "config", None), "_name_or_path", "") or "")
        name = source or type(model).__name__
        if image_processor is None and source and Path(source).is_dir():
            # a model object loaded from a directory: honour the processor saved beside it
            image_processor = _saved_processor(source)
    else:
        raise TypeError(f"`model` must be a path, a Hub id or an nn.Module, got {type(model).__name__}.")
    stats = normalization_from_processor(image_processor)
    config = getattr(module, "config", None)
    wrapper = LogitsModel(
        module,
        mean=stats[0] if stats else None,
        std=stats[1] if stats else None,
        num_channels=getattr(config, "num_channels", None),
    )
    wrapper.to(device)
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in wrapper.parameters()):
        logger.warning("Casting the model to float32 for the evaluation (attacks in half precision are unreliable).")
        wrapper.float()
    return wrapper, name, image_processor


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names and bytes): the identity of the weights measured.

    The report records it, so that a number is never attached to other weights: a checkpoint retrained in
    place keeps its path, and a resumed evaluation must not inherit its predecessor's batches, nor may a
    card carry its predecessor's accuracies. Take it of the `load_classifier` wrapper, as the evaluation
    does, so that the normalisation the model is evaluated with counts too.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def classifier_image_size(wrapper: LogitsModel, image_processor: Any, override: int | None) -> int | None:
    if override:
        return int(override)
    config = getattr(wrapper.model, "config", None)
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    if size:
        return int(size)
    processor_size = getattr(image_processor, "size", None) or {}
    if isinstance(processor_size, dict):
        return processor_size.get("height") or processor_size.get("shortest_edge")
    return None


def check_labels(wrapper: LogitsModel, labels: torch.Tensor, num_classes: int, data_names: list[str] | None) -> None:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"The data has labels in [{low}, {high}] but the model has {num_classes} output classes: this model "
            "was not trained for this dataset (or the label column is wrong)."
        )
    config = getattr(wrapper.model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    model_names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(num_classes)]
    generic = all(n == f"LABEL_{i}" or n == "" for i, n in enumerate(model_names))
    if data_names and not generic:
        mismatched = [
            (i, model_names[i], data_names[i])
            for i in range(min(len(data_names), num_classes))
            if model_names[i].strip().lower() != str(data_names[i]).strip().lower()
        ]
        if mismatched or len(data_names) != num_classes:
            shown = ", ".join(f"{i}: model {m!r} vs data {d!r}" for i, m, d in mismatched[:5])
            raise ValueError(
                f"The model's labels do not match the data's classes ({num_classes} model classes, "
                f"{len(data_names)} data classes{'; ' + shown if shown else ''}). Evaluate the model on the "
                "dataset it was finetuned on."
            )


def _saved_processor(source: str) -> Any:
    # imported here: `mimir_hf.data` needs `datasets`, which an evaluation of a model object on
    # tensors (and the GPU machine) does without
    from ..data.processing import load_image_processor

    return load_image_processor(source)
