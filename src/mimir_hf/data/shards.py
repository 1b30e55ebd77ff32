"""The shards a streamed training set is read from, and the images held out of them for validation.

A `datasets.IterableDataset` is a list of shards: files, parquet row groups (after `reshard()`), or
slices of an index. `ShardedStream` is that list with the image column left undecoded, so that an
image is decoded only when a training row is made from it, never when it is skipped or shuffled
past, plus the images held out of it.

The held-out validation split of a stream cannot be a seeded draw over the whole set, as
`hold_out_validation` makes it for a map-style set: that needs every image's index before the first
step. It is instead the first `size` images read with the shards in a seeded order (the same images
for every arm of a comparison that uses the same data and seed), removed from training by dropping
the shards read whole and skipping the first images of the one read in part. Shards of one image
(an image folder's index) make it a uniform draw; shards of many images make it a draw of shards.

`stream_prefix` reads the first images of a stream into a small map-style Dataset (the first
`max_eval_samples` of an evaluation split, the preview grid's images) without reading the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, Value

__all__ = ["ShardedStream", "stream_prefix"]

RAW_IMAGE = Image(mode="RGB", decode=False)
"""The image column as a stream carries it: bytes or a path, decoded by `Image(mode="RGB").decode_example`."""


def _decoded_features(features: Features) -> Features:
    decoded = features.copy()
    decoded["image"] = Image(mode="RGB")
    return decoded


def stream_prefix(dataset: IterableDataset, size: int) -> Dataset:
    """The first `size` images of `dataset` (columns `image`, `label`) as a map-style Dataset in memory."""
    raw = dataset.cast_column("image", RAW_IMAGE)
    rows = list(raw.take(size))
    if not rows:
        raise ValueError("The stream holds no images.")
    return Dataset.from_list(rows, features=_decoded_features(raw.features))


@dataclass(frozen=True)
class ShardedStream:
    """A stream's shards, its image column undecoded (`RAW_IMAGE`), minus the images held out of it.

    `features` are the columns as `load_image_dataset` gives them (images decoded, class names);
    `dataset` carries plain integer labels, because `datasets` deep-copies the features with every
    shard it opens and ImageNet's 1,000 class names made that ~30 ms a shard. `held_out` maps a
    shard index to the number of its leading images held out, or to None when the whole shard is.
    """

    dataset: IterableDataset
    features: Features
    held_out: Mapping[int, int | None] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, dataset: IterableDataset) -> "ShardedStream":
        """The shards of a stream with columns `image` and `label` (`load_image_dataset(..., streaming=True)`)."""
        raw = dataset.cast_column("image", RAW_IMAGE)
        if isinstance(raw.features.get("label"), ClassLabel):
            raw = raw.cast_column("label", Value("int64"))
        return cls(raw, _decoded_features(dataset.features))

    @property
    def num_shards(self) -> int:
        return self.dataset.n_shards

    def training_shards(self) -> list[int]:
        """Indices of the shards that still hold training images, in order."""
        return [index for index in range(self.num_shards) if self.held_out.get(index, 0) is not None]

    def shard(self, index: int) -> IterableDataset:
        """Shard `index` alone, its held-out images skipped (read past, not decoded)."""
        shard = self.dataset.shard(num_shards=self.num_shards, index=index)
        skipped = self.held_out.get(index, 0)
        return shard.skip(skipped) if skipped else shard

    def hold_out(self, size: int, seed: int = 0) -> tuple["ShardedStream", Dataset]:
        """(this stream without them, the held-out images in memory): the first `size` images read with
        the shards in the order `numpy.random.default_rng(seed)` permutes them (module docstring)."""
        if self.held_out:
            raise ValueError("Images are already held out of this stream.")
        if size < 1:
            raise ValueError(f"validation_split_size must be positive, got {size}.")
        rows: list[dict] = []
        held: dict[int, int | None] = {}
        for index in np.random.default_rng(seed).permutation(self.num_shards).tolist():
            taken = 0
            for row in self.shard(index):
                if len(rows) == size:
                    break
                rows.append(row)
                taken += 1
            else:  # read whole
                held[index] = None
                continue
            held[index] = taken
            break
        rest = ShardedStream(self.dataset, self.features, held)
        if len(rows) < size or not rest.training_shards():
            raise ValueError(
                f"validation_split_size={size} leaves no training images: the stream holds {len(rows)} images "
                f"in {self.num_shards} shard(s). Hold out fewer images."
            )
        return rest, Dataset.from_list(rows, features=self.features)
