"""One call from an authors' `.pth` file to a stock transformers checkpoint folder.

The folder holds what `recipes/evaluate.py`, `recipes/publish.py`, `AutoModel*` and `pipeline`
need: `config.json` + safetensors weights, the image processor of the reference's evaluation
(bicubic resize of the shorter side to size/0.875 and a centre crop at 224 px, no resize at
CIFAR size, pixels rescaled to [0, 1] and *not* normalised, since the reference feeds [0, 1]
pixels to its models), and `conversion.json` recording the source file's SHA-256, the wrapper and
prefixes that were peeled off and whether the EMA copy was taken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from ..artefacts import CONVERSION_RECORD
from .checkpoint import (
    EMA_CHOICES,
    ReferenceCheckpoint,
    UnsupportedArchitectureError,
    detect_architecture,
    load_reference_checkpoint,
)
from .swin import swin_state_dict_to_model
from .vit import mae_state_dict_to_model, vit_classifier_state_dict_to_model

__all__ = [
    "CIFAR10_LABELS",
    "CONVERSION_RECORD",
    "KINDS",
    "ConversionArguments",
    "ConversionResult",
    "convert_reference_checkpoint",
    "state_dict_to_model",
]

KINDS = ("auto", "mae", "vit", "swin", "cait", "convit")
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_NO_CLASS = {
    "cait": "CaiT (class-attention image transformer)",
    "convit": "ConViT (gated positional self-attention)",
}


@dataclass
class ConversionArguments:
    """What `recipes/convert_reference.py` reads (CLI flags or a YAML `--config`)."""

    checkpoint: str | None = field(default=None, metadata={"help": "The authors' .pth file (read with weights_only=True)."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder to write the stock transformers checkpoint to."})
    kind: str = field(
        default="auto",
        metadata={
            "help": "What the file holds: `mae` (MAE/MIMIR pretraining), `vit` (finetuned timm ViT classifier), `swin` "
            "(ARES/timm Swin classifier) or `auto` (read it from the keys). `cait`/`convit` are refused: transformers "
            "has no class for them.",
            "choices": list(KINDS),
        },
    )
    ema: str = field(
        default="auto",
        metadata={
            "help": "With an EMA copy in the file: `auto` converts it (the weights the reference validates when it "
            "trains with EMA), `ema` requires it, `raw` takes the non-averaged weights.",
            "choices": list(EMA_CHOICES),
        },
    )
    labels: str | None = field(
        default=None,
        metadata={
            "help": "Class names: `cifar10`, or a JSON file (a list of names or an {id: name} mapping). Default: "
            "LABEL_<i>, or the CIFAR-10 names for a 10-class model."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Input resolution. ViTs read it from their position table; Swin defaults to 224 (the reference's)."},
    )
    crop_fraction: float | None = field(
        default=None, metadata={"help": "Evaluation centre-crop fraction; default 0.875 at >= 224 px, 1 (no crop) below."}
    )
    num_attention_heads: int | None = field(
        default=None, metadata={"help": "Encoder heads when the width is not a standard ViT-T/S/B/L one (192/384/768/1024)."}
    )
    decoder_num_attention_heads: int | None = field(
        default=None, metadata={"help": "MAE decoder heads (default 16, the reference's decoders)."}
    )
    layer_norm_eps: float = field(default=1e-6, metadata={"help": "LayerNorm eps (1e-6 in every reference model)."})
    additional_data: bool = field(
        default=False,
        metadata={
            "help": "The checkpoint was trained with data beyond the benchmark's training set (the authors' 1M/5M "
            "EDM-data CIFAR-10 models): recorded in conversion.json, and published cards say `additional_data: true`."
        },
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Write into a non-empty output_dir."})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}.")
        if self.ema not in EMA_CHOICES:
            raise ValueError(f"ema must be one of {EMA_CHOICES}, got {self.ema!r}.")


@dataclass
class ConversionResult:
    model: PreTrainedModel
    output_dir: Path | None
    record: dict[str, Any]


def _resolve_labels(labels: str | None, num_labels: int | None) -> dict[int, str] | None:
    if num_labels is None:
        return None
    if labels is None:
        return dict(enumerate(CIFAR10_LABELS)) if num_labels == 10 else None
    if labels == "cifar10":
        names: Any = list(CIFAR10_LABELS)
    else:
        path = Path(labels)
        if not path.is_file():
            raise FileNotFoundError(f"labels={labels!r} is neither 'cifar10' nor an existing JSON file.")
        names = json.loads(path.read_text(encoding="utf-8"))
    mapping = {int(k): str(v) for k, v in names.items()} if isinstance(names, Mapping) else dict(enumerate(map(str, names)))
    if sorted(mapping) != list(range(num_labels)):
        raise ValueError(f"The label file names {len(mapping)} classes but the checkpoint's head has {num_labels}.")
    return mapping


def state_dict_to_model(
    state: Mapping[str, Any],
    kind: str = "auto",
    *,
    id2label: Mapping[int, str] | None = None,
    image_size: int | None = None,
    num_attention_heads: int | None = None,
    decoder_num_attention_heads: int | None = None,
    layer_norm_eps: float = 1e-6,
) -> tuple[PreTrainedModel, str]:
    """The stock model for an unwrapped reference state dict, and the architecture it was read as."""
    if kind in _NO_CLASS:
        raise UnsupportedArchitectureError(
            f"{_NO_CLASS[kind]} has no transformers class, so it cannot become a stock checkpoint that AutoModel and "
            "pipeline load without remote code. Evaluate it with the reference code instead."
        )
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    detected = detect_architecture(state)
    if kind != "auto" and kind != detected:
        raise ValueError(f"kind={kind!r} was asked for, but the file holds a {detected!r} layout (read from its keys).")
    if detected == "swin":
        model = swin_state_dict_to_model(state, image_size=image_size or 224, layer_norm_eps=layer_norm_eps, id2label=id2label)
        return model, detected
    if detected == "mae":
        model = mae_state_dict_to_model(
            state,
            num_attention_heads=num_attention_heads,
            decoder_num_attention_heads=decoder_num_attention_heads,
            layer_norm_eps=layer_norm_eps,
        )
    else:
        model = vit_classifier_state_dict_to_model(
            state, num_attention_heads=num_attention_heads, id2label=id2label, layer_norm_eps=layer_norm_eps
        )
    native = model.config.image_size
    if image_size is not None and image_size != native:
        raise ValueError(
            f"The checkpoint's position table is for {native} px inputs; image_size={image_size} would need interpolated "
            "positions, which is a different model than the published one. Convert at the native size."
        )
    return model, detected


def _head_size(state: Mapping[str, Any]) -> int | None:
    for key in ("head.weight", "head.fc.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def convert_reference_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    kind: str = "auto",
    ema: str = "auto",
    labels: str | None = None,
    image_size: int | None = None,
    crop_fraction: float | None = None,
    num_attention_heads: int | None = None,
    decoder_num_attention_heads: int | None = None,
    layer_norm_eps: float = 1e-6,
    additional_data: bool = False,
    overwrite_output_dir: bool = False,
) -> ConversionResult:
    """Convert an authors' `.pth` into a stock transformers checkpoint folder (see the module docstring).

    With `output_dir=None` nothing is written and the model is only returned.
    """
    if kind in _NO_CLASS:  # refuse before reading a possibly large file
        state_dict_to_model({}, kind)
    if output_dir is not None:
        out = Path(output_dir)
        if out.exists() and any(out.iterdir()) and not overwrite_output_dir:
            raise FileExistsError(f"{str(out)!r} exists and is not empty; pass overwrite_output_dir=True to write into it.")
    source: ReferenceCheckpoint = load_reference_checkpoint(checkpoint, ema=ema)
    id2label = _resolve_labels(labels, _head_size(source.state_dict))
    model, architecture = state_dict_to_model(
        source.state_dict,
        kind,
        id2label=id2label,
        image_size=image_size,
        num_attention_heads=num_attention_heads,
        decoder_num_attention_heads=decoder_num_attention_heads,
        layer_norm_eps=layer_norm_eps,
    )
    from ..data.processing import make_image_processor  # here: the data layer needs `datasets`, the mapping does not

    resolution = int(model.config.image_size)
    processor = make_image_processor(resolution, crop_fraction)
    record = {
        "source_file": os.path.basename(source.path),
        "source_sha256": source.sha256,
        "source_architecture": architecture,
        "source_wrapper": source.wrapper,
        "stripped_prefixes": source.stripped_prefixes,
        "used_ema_weights": source.used_ema,
        "other_entries": source.other_entries,
        "epoch": source.epoch,
        "model_class": type(model).__name__,
        "image_size": resolution,
        "pixel_range": "[0, 1], not normalised",
        "layer_norm_eps": layer_norm_eps,
        "additional_data": bool(additional_data),
        "arguments": asdict(
            ConversionArguments(
                checkpoint=os.path.basename(source.path),
                output_dir=None,
                kind=kind,
                ema=ema,
                labels=labels,
                image_size=image_size,
                crop_fraction=crop_fraction,
                num_attention_heads=num_attention_heads,
                decoder_num_attention_heads=decoder_num_attention_heads,
                layer_norm_eps=layer_norm_eps,
                additional_data=additional_data,
            )
        ),
    }
    written: Path | None = None
    if output_dir is not None:
        written = Path(output_dir)
        written.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(written)
        processor.save_pretrained(written)
        (written / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return ConversionResult(model=model, output_dir=written, record=record)
