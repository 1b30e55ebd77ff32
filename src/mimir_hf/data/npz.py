"""`.npz` image arrays (the shared CIFAR-10 copy, EDM-generated training sets) as a `datasets.Dataset`.

Why not `Dataset.from_dict` with an `Image` feature: it PNG-encodes every image one by one, which
takes ~20 s for CIFAR-10's 50k training images. Instead each image is given a tiny binary PPM/PGM
header and the whole array is handed to Arrow as one buffer, so building the data set costs
about one memory copy; the `Image` feature decodes PPM natively, so rows still come out as PIL.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetInfo, Features, Image, Value

__all__ = ["resolve_npz_files", "load_npz_dataset", "dataset_from_arrays", "is_npz_source"]

_IMAGE_KEYS = ("images", "image")
_LABEL_KEYS = ("labels", "label")
# Arrow's `binary` type uses 32-bit offsets: keep every chunk below 2 GiB.
_MAX_CHUNK_BYTES = 1 << 30


def is_npz_source(source: str) -> bool:
    """True when `source` names `.npz` files (a file, a glob, or a directory that holds some)."""
    if source.endswith(".npz"):
        return True
    if any(ch in source for ch in "*?[") and glob.glob(source):
        return all(path.endswith(".npz") for path in glob.glob(source))
    return os.path.isdir(source) and bool(glob.glob(os.path.join(source, "*.npz")))


def _natural_key(path: str) -> list[object]:
    # train_batch_10 must come after train_batch_9.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", os.path.basename(path))]


def resolve_npz_files(source: str, split: str) -> list[str]:
    """The files that make up `split`: a directory maps `split` to `<split>.npz` or `<split>_*.npz`."""
    if os.path.isdir(source):
        exact = os.path.join(source, f"{split}.npz")
        if os.path.isfile(exact):
            return [exact]
        files = sorted(glob.glob(os.path.join(glob.escape(source), f"{glob.escape(split)}_*.npz")), key=_natural_key)
        if not files:
            available = sorted(os.path.basename(p) for p in glob.glob(os.path.join(source, "*.npz")))
            raise FileNotFoundError(
                f"No `.npz` file for split {split!r} in {source!r}: expected `{split}.npz` or `{split}_*.npz`. "
                f"Files there: {available}. Pass a split named after one of them, or the file itself."
            )
        return files
    if any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source), key=_natural_key)
        if not files:
            raise FileNotFoundError(f"The pattern {source!r} matches no `.npz` file.")
        return files
    if not os.path.isfile(source):
        raise FileNotFoundError(f"No such `.npz` file: {source!r}.")
    return [source]


def _pick_key(keys: Sequence[str], candidates: Sequence[str], wanted: str | None, path: str, what: str) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise ValueError(
                f"{what.capitalize()} key {wanted!r} is not in {path!r}; the file holds {sorted(keys)}. "
                f"Pass one of those as the {what} column."
            )
        return wanted
    return next((key for key in candidates if key in keys), None)


def _to_rgb_uint8(images: np.ndarray, path: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(
            f"Images in {path!r} have dtype {images.dtype}; expected uint8 in 0..255 (N x H x W x 3). "
            "Convert them with `(x * 255).round().astype(np.uint8)` if they are floats in [0, 1]."
        )
    if images.size and int(images.max()) <= 1:
        raise ValueError(
            f"Images in {path!r} are uint8 but hold only 0 and 1: they look like [0, 1] images cast to uint8, "
            "which would train on black images. Save grey levels 0..255: `(x * 255).round().astype(np.uint8)` "
            "of the float images."
        )
    if images.ndim == 3:  # N x H x W grayscale
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Images in {path!r} have shape {images.shape}; expected N x H x W x 3 (channels last; "
            "1 or 4 channels are converted to RGB)."
        )
    if images.shape[-1] == 4:  # RGBA: composite onto white, as transformers' processors do.
        alpha = images[..., 3:].astype(np.float32) / 255
        images = np.rint(images[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return images


def _to_labels(labels: np.ndarray, num_images: int, path: str) -> np.ndarray:
    if labels.ndim == 2:  # one-hot or soft labels
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or len(labels) != num_images:
        raise ValueError(f"Labels in {path!r} have shape {labels.shape}; expected ({num_images},).")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"Labels in {path!r} have dtype {labels.dtype}; expected integer class ids.")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"Labels in {path!r} contain negative ids ({labels.min()}).")
    return labels.astype(np.int64)


def _image_column(images: np.ndarray) -> pa.Array:
    n, height, width, channels = images.shape
    header = f"{'P5' if channels == 1 else 'P6'}\n{width} {height}\n255\n".encode()
    row_bytes = len(header) + height * width * channels
    rows_per_chunk = max(1, _MAX_CHUNK_BYTES // row_bytes)
    chunks = []
    for start in range(0, n, rows_per_chunk):
        part = images[start : start + rows_per_chunk]
        m = len(part)
        buffer = np.empty((m, row_bytes), dtype=np.uint8)
        buffer[:, : len(header)] = np.frombuffer(header, dtype=np.uint8)
        buffer[:, len(header) :] = part.reshape(m, -1)
        offsets = np.arange(m + 1, dtype=np.int32) * row_bytes
        data = pa.BinaryArray.from_buffers(pa.binary(), m, [None, pa.py_buffer(offsets), pa.py_buffer(buffer)])
        chunks.append(pa.StructArray.from_arrays([data, pa.nulls(m, pa.string())], names=["bytes", "path"]))
    return pa.chunked_array(chunks, type=chunks[0].type) if chunks else pa.chunked_array([], type=_EMPTY_IMAGE)


_EMPTY_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _fingerprint(images: np.ndarray, labels: np.ndarray | None, features: Features) -> str:
    # datasets would otherwise pickle and hash every byte (1.6 s for CIFAR-10); a strided sample of
    # the pixels plus all labels and the shapes tells data sets apart just as well for caching.
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((images.shape, features.to_dict())).encode())
    flat = images.reshape(-1)
    digest.update(np.ascontiguousarray(flat[:: max(1, flat.size // 65536)]).tobytes())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def dataset_from_arrays(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    *,
    name: str = "<arrays>",
) -> Dataset:
    """An `image`/`label` Dataset over uint8 N x H x W x C arrays, built without per-image encoding."""
    images = _to_rgb_uint8(np.asarray(images), name)
    columns: dict[str, pa.ChunkedArray] = {"image": _image_column(images)}
    features: dict[str, object] = {"image": Image(mode="RGB")}
    if labels is not None:
        labels = _to_labels(np.asarray(labels), len(images), name)
        if class_names is None and len(labels):
            class_names = [str(i) for i in range(int(labels.max()) + 1)]
        if class_names is not None:
            if len(labels) and labels.max() >= len(class_names):
                raise ValueError(
                    f"Labels in {name!r} go up to {labels.max()} but only {len(class_names)} class names are given."
                )
            features["label"] = ClassLabel(names=[str(c) for c in class_names])
        else:
            features["label"] = Value("int64")
        columns["label"] = pa.chunked_array([pa.array(labels, type=pa.int64())])
    feats = Features(features)
    table = pa.table(columns).cast(feats.arrow_schema)
    return Dataset(table, info=DatasetInfo(features=feats), fingerprint=_fingerprint(images, labels, feats))


def load_npz_dataset(
    source: str,
    split: str,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Dataset:
    """Read the `.npz` files of `split` (concatenated in natural order) into an `image`/`label` Dataset."""
    files = resolve_npz_files(source, split)
    images, labels, class_names = [], [], None
    for path in files:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            image_key = _pick_key(keys, _IMAGE_KEYS, image_column, path, "image")
            if image_key is None:
                raise ValueError(
                    f"No image array in {path!r}: expected key `images` or `image`, found {sorted(keys)}. "
                    "Pass the right key as the image column."
                )
            label_key = _pick_key(keys, _LABEL_KEYS, label_column, path, "label")
            images.append(archive[image_key])
            labels.append(archive[label_key] if label_key is not None else None)
            if class_names is None and "class_names" in keys:
                class_names = [str(name) for name in archive["class_names"]]
    if any(lab is None for lab in labels) and not all(lab is None for lab in labels):
        raise ValueError(f"Some of {files} have labels and some do not; give them all labels or none.")
    all_images = images[0] if len(images) == 1 else np.concatenate(images)
    all_labels = None if labels[0] is None else (labels[0] if len(labels) == 1 else np.concatenate(labels))
    return dataset_from_arrays(all_images, all_labels, class_names, name=files[0] if len(files) == 1 else source)
