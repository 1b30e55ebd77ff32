"""Generated training images mixed into every batch (the EDM sets of the reference's best CIFAR-10 runs).

The reference (`util/data/semisup.py`, after Rebuffi et al. and Wang et al. 2023) builds each
batch of `B` images from `B − ⌊f·B⌋` real images and `⌊f·B⌋` generated ones, `f` = `unsup_fraction`
(0.7 in its scripts):

- real images are drawn without replacement from a fresh permutation of the real set, pass after
  pass; the last batch of a pass holds the leftover real images and is filled up with generated ones;
- generated images are drawn uniformly *with* replacement from the whole generated set;
- each batch is shuffled, and an epoch is ⌈real / B⌉ batches: as many images as the *real* set
  holds (the reference sizes its sampler with the real set's length, taken before the generated
  images are appended), so one epoch sees ~(1 − f) of the real images, each pass starting from a
  fresh permutation; over all processes, since batches are dealt out to the ranks whole.

The generated arrays are memory-mapped, never loaded: 5M CIFAR-sized images are 15 GB. `np.load`
cannot memory-map a member of an `.npz` (a zip), so `open_generated_arrays` finds where each
member's `.npy` payload starts inside the zip and maps that byte range. That only works for members
stored *uncompressed* (`np.savez`, which is how the EDM sets are distributed); a
`np.savez_compressed` file is refused with the remedy. A folder holding `image.npy`/`images.npy`
and `label.npy`/`labels.npy` works as well.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .npz import _IMAGE_KEYS, _LABEL_KEYS, _pick_key, _to_labels

__all__ = [
    "DEFAULT_UNSUP_FRACTION",
    "mix_generated_data",
    "GeneratedImages",
    "MixedBatchSampler",
    "MixedDataset",
    "npz_member_memmap",
    "open_generated_arrays",
]

DEFAULT_UNSUP_FRACTION = 0.7
"""The reference scripts' share of generated images per batch."""

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"


def npz_member_memmap(path: str | os.PathLike, member: zipfile.ZipInfo, archive: zipfile.ZipFile) -> np.memmap:
    """A read-only memory map of one stored (uncompressed) `.npy` member of an `.npz` file."""
    path = os.fspath(path)
    if member.compress_type != zipfile.ZIP_STORED:
        raise ValueError(
            f"{member.filename!r} in {path!r} is compressed, so it cannot be memory-mapped (loading it would need the "
            "whole array in memory). Re-save the arrays uncompressed (`np.savez(out, image=..., label=...)`, not "
            "`np.savez_compressed`) or unpack them into a folder of `image.npy` and `label.npy`."
        )
    if member.flag_bits & 0x1:
        raise ValueError(f"{member.filename!r} in {path!r} is encrypted.")
    with open(path, "rb") as handle:
        handle.seek(member.header_offset)
        fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_SIGNATURE:
            raise ValueError(f"{path!r} is not a valid zip archive at {member.filename!r}.")
        name_length, extra_length = fields[-2], fields[-1]
        handle.seek(member.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if dtype.hasobject:
            raise ValueError(f"{member.filename!r} in {path!r} holds Python objects; only plain numeric arrays are read.")
        offset = handle.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _open_npz(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename[: -len(".npy")]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        return {name: npz_member_memmap(path, info, archive) for name, info in members.items()}


def _open_folder(path: str) -> dict[str, np.ndarray]:
    arrays = {}
    for name in os.listdir(path):
        if name.endswith(".npy"):
            arrays[name[: -len(".npy")]] = np.load(os.path.join(path, name), mmap_mode="r")
    return arrays


def open_generated_arrays(
    source: str | os.PathLike, image_key: str | None = None, label_key: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images N×H×W×C uint8, labels N int64), the images memory-mapped, from an uncompressed `.npz` or a `.npy` folder."""
    source = os.fspath(source)
    if os.path.isdir(source):
        arrays = _open_folder(source)
    elif os.path.isfile(source):
        if not zipfile.is_zipfile(source):
            raise ValueError(f"{source!r} is not an `.npz` (zip) file; pass an `.npz` from np.savez or a folder of `.npy` files.")
        arrays = _open_npz(source)
    else:
        raise FileNotFoundError(f"No generated-data file or folder at {source!r}.")
    keys = sorted(arrays)
    image = _pick_key(keys, _IMAGE_KEYS, image_key, source, "image")
    label = _pick_key(keys, _LABEL_KEYS, label_key, source, "label")
    if image is None or label is None:
        raise ValueError(
            f"{source!r} holds arrays {keys}; generated training data needs images (`image`/`images`) and labels "
            "(`label`/`labels`), as the EDM sets have."
        )
    images = arrays[image]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Generated images in {source!r} have dtype {images.dtype} and shape {images.shape}; expected uint8 "
            "N x H x W x 3 (channels last)."
        )
    labels = _to_labels(np.asarray(arrays[label]), len(images), source)  # N int64s: small enough to load
    return images, labels


class GeneratedImages(Dataset):
    """Rows `{"pixel_values", "labels"}` from memory-mapped generated arrays through `transform`."""

    def __init__(self, source: str | os.PathLike, transform: Callable[[Any], torch.Tensor]):
        self.source = os.fspath(source)
        self.images, self.labels = open_generated_arrays(source)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = np.array(self.images[index])  # copies one image out of the map
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return {"pixel_values": self.transform(image), "labels": int(self.labels[index])}


class MixedDataset(Dataset):
    """Real rows at indices [0, n_real), generated rows after them; `MixedBatchSampler` composes the batches."""

    def __init__(self, real: Dataset, generated: GeneratedImages, unsup_fraction: float = DEFAULT_UNSUP_FRACTION):
        if not 0 <= unsup_fraction < 1:
            raise ValueError(f"unsup_fraction must lie in [0, 1), got {unsup_fraction}: each batch needs real images.")
        if len(real) == 0 or len(generated) == 0:
            raise ValueError("Mixing needs at least one real and one generated image.")
        self.real, self.generated, self.unsup_fraction = real, generated, float(unsup_fraction)
        self.num_real, self.num_generated = len(real), len(generated)

    def __len__(self) -> int:
        return self.num_real + self.num_generated

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        if index < self.num_real:
            return self.real[index]
        return self.generated[index - self.num_real]


class MixedBatchSampler(Sampler[int]):
    """Indices of a `MixedDataset` in blocks of `batch_size` with the reference's composition (module docstring).

    It yields flat indices, so the DataLoader (and accelerate's batch sharding) group each block into
    one batch: the DataLoader's batch size must equal `batch_size`. Deterministic given `seed` and the
    epoch (`set_epoch`), so a resumed run sees the same batches.
    """

    def __init__(
        self,
        num_real: int,
        num_generated: int,
        batch_size: int,
        unsup_fraction: float = DEFAULT_UNSUP_FRACTION,
        *,
        num_batches: int | None = None,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= unsup_fraction < 1:
            raise ValueError(f"unsup_fraction must lie in [0, 1), got {unsup_fraction}.")
        self.num_real, self.num_generated, self.batch_size = num_real, num_generated, batch_size
        self.generated_per_batch = int(batch_size * unsup_fraction)
        self.real_per_batch = batch_size - self.generated_per_batch
        if num_generated < 1 or num_real < 1:
            raise ValueError(f"Mixing needs real and generated images, got {num_real} real and {num_generated} generated.")
        self.num_batches = math.ceil(num_real / batch_size) if num_batches is None else int(num_batches)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def batches(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        made = 0
        while made < self.num_batches:
            order = (torch.randperm(self.num_real, generator=generator)).tolist()
            for start in range(0, self.num_real, self.real_per_batch):
                if made == self.num_batches:
                    break
                batch = order[start : start + self.real_per_batch]
                missing = self.batch_size - len(batch)
                if missing:
                    draws = torch.randint(self.num_generated, (missing,), generator=generator)
                    batch += (self.num_real + draws).tolist()
                yield [batch[i] for i in torch.randperm(len(batch), generator=generator).tolist()]
                made += 1

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch
        self.epoch += 1  # set_epoch, when the loop calls it, overrides this


def mix_generated_data(
    real: Dataset, generated_data: str | os.PathLike | None, transform: Callable[[Any], torch.Tensor], unsup_fraction: float
) -> Dataset:
    """`real` unchanged without `generated_data`, else a `MixedDataset` whose generated rows go through `transform`."""
    if not generated_data:
        return real
    return MixedDataset(real, GeneratedImages(generated_data, transform), unsup_fraction)
