"""The data half of every recipe's command line.

Kept separate from the loaders so that a recipe can parse its arguments (and fail on a typo)
before anything heavy is imported or read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

__all__ = ["DataArguments"]


if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class DataArguments:
    """Where the images come from and how large they are when they reach the model."""

    dataset: str = field(
        default="builtin:digits",
        metadata={
            "help": "Image source: a Hub dataset name (e.g. `uoft-cs/cifar10`, `zh-plus/tiny-imagenet`, "
            "`ILSVRC/imagenet-1k`), a local image folder (one subfolder per class), a `.npz` file, glob or "
            "directory of `.npz` files (keys `images`/`labels` or `image`/`label`), or `builtin:digits` "
            "(scikit-learn's handwritten digits at 32x32; needs no download)."
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset (the `name` of `load_dataset`)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str = field(default="test", metadata={"help": "Split used for evaluation."})
    image_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the images; detected (Image feature, then `img`/`image`) when unset."},
    )
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the integer class labels; detected (ClassLabel feature, then "
            "`label`/`labels`/`fine_label`) when unset."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Side of the square images fed to the model; taken from the model config when unset. "
            "Up to 64 px training uses random crop with 4-px padding + flip, above it random resized crop + flip."
        },
    )
    eval_crop_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Evaluation resizes the shorter side to image_size / fraction, then centre-crops image_size. "
            "Unset: 1.0 up to 64 px (no crop), 0.875 above (224 -> resize 256, crop 224)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training images (debugging, quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation images (fast robustness checks)."}
    )
    generated_data: str | None = field(
        default=None,
        metadata={
            "help": "Generated training images mixed into every training batch (the reference's EDM sets): an "
            "uncompressed `.npz` (np.savez) with `image` (N x H x W x 3 uint8) and `label` arrays, or a folder of "
            "`image.npy` + `label.npy`. Memory-mapped, never loaded. Checkpoints trained with it are marked "
            "`additional_data: true`."
        },
    )
    unsup_fraction: float = field(
        default=0.7,
        metadata={"help": "Share of each training batch drawn from generated_data (the reference scripts: 0.7)."},
    )
    validation_split_size: int | None = field(
        default=None,
        metadata={
            "help": "Hold out N training images (drawn with validation_split_seed, removed from training). Finetuning "
            "validates on them instead of on eval_split, so that checkpoint selection never sees test images; "
            "pretraining removes the same images, so no stage of a comparison trains on them."
        },
    )
    validation_split_seed: int = field(
        default=0, metadata={"help": "Seed of the held-out validation draw (the same images for every arm of a comparison)."}
    )

    def __post_init__(self) -> None:
        for name in ("image_size", "max_train_samples", "max_eval_samples", "validation_split_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"`{name}` must be a positive integer or unset; got {value}.")
        if self.eval_crop_fraction is not None and not 0 < self.eval_crop_fraction <= 1:
            raise ValueError(f"`eval_crop_fraction` must lie in (0, 1]; got {self.eval_crop_fraction}.")
        if not 0 <= self.unsup_fraction < 1:
            raise ValueError(f"`unsup_fraction` must lie in [0, 1) (each batch needs real images); got {self.unsup_fraction}.")

    def resolve_image_size(self, model_image_size: int | tuple[int, int] | list[int] | None) -> int:
        """The explicit `image_size` if given, else the model's, so data and position embeddings agree."""
        if self.image_size is not None:
            return self.image_size
        if model_image_size is None:
            raise ValueError("Set `image_size`: neither the data arguments nor the model config give one.")
        if isinstance(model_image_size, (tuple, list)):
            if len(set(model_image_size)) != 1:
                raise ValueError(f"Only square images are supported; the model config has {model_image_size}.")
            return int(model_image_size[0])
        return int(model_image_size)

    def load(self, split: str, *, require_labels: bool = False, max_samples: int | None = None) -> "Dataset":
        """`load_image_dataset` for one split of this source, with the column and config options applied."""
        from .sources import load_image_dataset

        return load_image_dataset(
            self.dataset,
            split,
            config_name=self.dataset_config,
            image_column=self.image_column,
            label_column=self.label_column,
            require_labels=require_labels,
            max_samples=max_samples,
        )
