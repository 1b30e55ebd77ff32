"""The data half of every recipe's command line.

Kept separate from the loaders so that a recipe can parse its arguments (and fail on a typo)
before anything heavy is imported or read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

__all__ = ["DEFAULT_IMAGE_SIZE", "DataArguments"]

DEFAULT_IMAGE_SIZE = 32
"""Resolution of a model built from a preset when neither the data arguments nor a checkpoint give one."""


if TYPE_CHECKING:
    import torch.utils.data
    from datasets import Dataset

    from .shards import ShardedStream
    from .transforms import TrainTransform


@dataclass
class DataArguments:
    """Where the images come from and how large they are when they reach the model."""

    dataset: str = field(
        default="builtin:digits",
        metadata={
            "help": "Image source: a Hub dataset name (e.g. `uoft-cs/cifar10`, `zh-plus/tiny-imagenet`, "
            "`ILSVRC/imagenet-1k`), a local image folder (one subfolder per class), a folder of parquet or webdataset "
            "`.tar` shards (splits from the file names: `train-*.parquet`, ...), a `.npz` file, glob or "
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
    train_crop_min_scale: float | None = field(
        default=None,
        metadata={
            "help": "Smallest area fraction of the random resized crop (training images above 64 px). Unset: 0.2 "
            "(MAE's). Singh et al.'s ImageNet recipe uses timm's 0.08."
        },
    )
    rand_augment: str | None = field(
        default=None,
        metadata={
            "help": "RandAugment on every training image after crop and flip, in timm's notation: "
            "`rand-m9-mstd0.5-inc1` (Singh et al., DeiT) applies 2 of 15 ops, each with probability 0.5, at magnitude "
            "9 + N(0, 0.5^2) on a 0-10 scale, in the variants whose severity grows with it. Sections: m<magnitude>, "
            "n<ops>, mstd<std>, mmax<bound>, inc<0|1>. Unset: off."
        },
    )
    random_erasing: float = field(
        default=0.0,
        metadata={
            "help": "Probability of random erasing of a training image, applied last (Singh et al.: 0.25): boxes of "
            "2 to 33 percent of the area, aspect 0.3-3.3, filled per random_erasing_mode. 0 disables it."
        },
    )
    random_erasing_mode: str = field(
        default="pixel",
        metadata={
            "help": "Fill of an erased box: `pixel` (per-pixel N(0, 1) noise clamped to [0, 1]; Singh et al.), `rand` "
            "(one such colour per channel) or `const` (black).",
            "choices": ["pixel", "rand", "const"],
        },
    )
    random_erasing_count: int = field(
        default=1,
        metadata={"help": "Most boxes erased per image (the count is uniform in 1..N; Singh et al.: 1)."},
    )

    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the training split as it goes instead of loading it whole (Hub data sets, folders of parquet / "
            "webdataset shards, image folders): each process and DataLoader worker reads its own shards, shuffled in "
            "windows of shuffle_buffer_size, and a resumed run goes on where the stream was. Needs max_steps. "
            "validation_split_size then holds out the stream's first images (shards in a seeded order); other splits "
            "are streamed up to max_eval_samples, or loaded whole without it. See docs/streaming.md."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000,
        metadata={
            "help": "With streaming: images each DataLoader worker (or process, without workers) shuffles at a time; "
            "it holds them undecoded."
        },
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
        if self.train_crop_min_scale is not None and not 0 < self.train_crop_min_scale <= 1:
            raise ValueError(f"`train_crop_min_scale` must lie in (0, 1]; got {self.train_crop_min_scale}.")
        if self.shuffle_buffer_size < 1:
            raise ValueError(f"`shuffle_buffer_size` must be at least 1; got {self.shuffle_buffer_size}.")
        if self.streaming and self.max_train_samples is not None:
            raise ValueError("`max_train_samples` needs the whole training set; with `streaming` the run's length is max_steps.")
        if self.streaming and self.generated_data:
            raise ValueError("`generated_data` mixing draws real images by index: it needs the training set loaded, not streamed.")
        self.train_transform(32)  # RandAugment policy and erasing settings fail here, not in a DataLoader worker

    def train_transform(self, image_size: int) -> "TrainTransform":
        """The training augmentation these arguments describe (crop + flip, then RandAugment and erasing if set)."""
        from .random_erasing import RandomErasing
        from .transforms import train_transform

        erasing = RandomErasing(self.random_erasing, mode=self.random_erasing_mode, max_count=self.random_erasing_count)
        options = {} if self.train_crop_min_scale is None else {"scale": (self.train_crop_min_scale, 1.0)}
        return train_transform(
            image_size, rand_augment=self.rand_augment, random_erasing=erasing if erasing.probability > 0 else None, **options
        )

    def training_dataset(
        self, train_data: "Dataset | ShardedStream", image_size: int
    ) -> "Dataset | torch.utils.data.IterableDataset":
        """The training set both stages train on: `train_data` under this augmentation, mixed with
        `generated_data` at `unsup_fraction` of every batch when that is set; a stream (`training_stream`)
        becomes an `ImageStream` shuffling windows of `shuffle_buffer_size`."""
        from .mixing import mix_generated_data
        from .processing import with_transform
        from .shards import ShardedStream

        transform = self.train_transform(image_size)
        if isinstance(train_data, ShardedStream):
            from .streaming import ImageStream

            return ImageStream(train_data, transform, self.shuffle_buffer_size)
        return mix_generated_data(with_transform(train_data, transform), self.generated_data, transform, self.unsup_fraction)

    def training_stream(self, *, require_labels: bool = False, max_steps: int) -> "ShardedStream":
        """The training split as a stream (`streaming`); `hold_out_validation` and `training_dataset` take it.

        `max_steps` is the run's: a stream cannot tell how many steps an epoch is, so it must be set.
        """
        from .shards import ShardedStream
        from .streaming import check_max_steps

        check_max_steps(max_steps)
        return ShardedStream.from_dataset(self._load(self.train_split, require_labels=require_labels, streaming=True))

    def resolve_image_size(self, model_image_size: int | tuple[int, int] | list[int] | None, *, resizable: bool = True) -> int:
        """The side of the images both stages train on: `image_size` if set, else the checkpoint's, else 32.

        `model_image_size` is the starting checkpoint's resolution (None for a model built from a
        preset, which is then built at the returned size; 32 is CIFAR-10's and the quickstart's). A
        classifier can be finetuned at another resolution, its position table interpolated once; a
        pretraining run continued from a checkpoint cannot (`resizable=False`), so there an explicit
        `image_size` that differs from the checkpoint's is an error rather than a silent choice.
        """
        if model_image_size is not None:
            if isinstance(model_image_size, (tuple, list)):
                if len(set(model_image_size)) != 1:
                    raise ValueError(f"Only square images are supported; the checkpoint is built for {tuple(model_image_size)}.")
                model_image_size = model_image_size[0]
            model_image_size = int(model_image_size)
            if not resizable and self.image_size not in (None, model_image_size):
                raise ValueError(
                    f"image_size={self.image_size} but the checkpoint was built for {model_image_size}; leave image_size unset."
                )
        if self.image_size is not None:
            return self.image_size
        return DEFAULT_IMAGE_SIZE if model_image_size is None else model_image_size

    def load(self, split: str, *, require_labels: bool = False, max_samples: int | None = None) -> "Dataset":
        """`load_image_dataset` for one split of this source, with the column and config options applied.

        With `streaming`, a split read with `max_samples` is streamed up to that many images and no
        further (an evaluation subset, the preview grid); a whole split is loaded as without it.
        """
        return self._load(split, require_labels=require_labels, max_samples=max_samples, streaming=self.streaming and max_samples is not None)

    def _load(self, split: str, *, require_labels: bool, max_samples: int | None = None, streaming: bool):
        from .sources import load_image_dataset

        return load_image_dataset(
            self.dataset,
            split,
            config_name=self.dataset_config,
            image_column=self.image_column,
            label_column=self.label_column,
            require_labels=require_labels,
            max_samples=max_samples,
            streaming=streaming,
        )
