"""One entry point, `load_image_dataset`, for every place images come from.

Whatever the source, the result has the same two columns — `image` (decoded as RGB PIL, so
grayscale and RGBA inputs are converted instead of breaking a 3-channel model) and `label` (an
int, with its `ClassLabel` feature kept so that class names reach the checkpoint's `id2label`) —
so nothing downstream needs to know where the data came from.

Hub and image-folder images are converted by `datasets`' decoder (`Image(mode="RGB")`, i.e. PIL's
`convert("RGB")`, which drops an alpha channel), lazily at access time so loading stays cheap; `.npz`
arrays with alpha and images handed to the transforms directly are composited onto white, as
transformers' processors do. The two agree for opaque images, which is nearly every data set.

With `streaming=True` the result is a `datasets.IterableDataset` with the same columns, read as it
goes: Hub data sets and local data-file folders (parquet, webdataset `.tar`, arrow) through
`load_dataset(..., streaming=True)`, split into the finest shards the format allows (`reshard()`:
parquet row groups), and the sources that are indexed without a download (built-in, `.npz`, an image
folder, whose index holds file paths, not pixels) through `Dataset.to_iterable_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, Value

from .builtin import BUILTIN_DATASETS, load_builtin_dataset
from .npz import is_npz_source, load_npz_dataset

__all__ = ["load_image_dataset", "class_names", "detect_columns"]

_IMAGE_NAMES = ("img", "image", "images", "pixel_values", "png", "jpg")
_LABEL_NAMES = ("label", "labels", "fine_label", "class", "target", "cls")
# Folders of these files are read by `datasets`' packaged builders (by extension), not as image folders.
_DATA_FILE_FORMATS = {".parquet": "parquet", ".tar": "webdataset", ".arrow": "arrow"}
_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Shards of a stream made from an indexed (map-style) source: enough for many processes x workers.
_MAX_INDEXED_SHARDS = 1024


def _find_column(
    features: Features, wanted: str | None, feature_type: type, names: tuple[str, ...], what: str
) -> str | None:
    columns = list(features)
    if wanted is not None:
        if wanted not in features:
            raise ValueError(
                f"The data set has no {what} column {wanted!r}; its columns are {columns}. "
                f"Pass one of those as `{what}_column`."
            )
        return wanted
    typed = [name for name, feature in features.items() if isinstance(feature, feature_type)]
    if typed:
        return typed[0]
    return next((name for name in names if name in features), None)


def detect_columns(
    features: Features, image_column: str | None = None, label_column: str | None = None
) -> tuple[str, str | None]:
    """(image column, label column or None): named ones are checked, otherwise found by feature type then name."""
    image = _find_column(features, image_column, Image, _IMAGE_NAMES, "image")
    if image is None:
        raise ValueError(
            f"Could not find an image column among {list(features)}: none has the `Image` feature or a "
            f"usual name ({', '.join(_IMAGE_NAMES)}). Pass `image_column=<name>` (`--image_column`)."
        )
    label = _find_column(features, label_column, ClassLabel, _LABEL_NAMES, "label")
    if label == image:
        label = None
    return image, label


def _normalise_columns(
    dataset: Dataset | IterableDataset,
    image_column: str | None,
    label_column: str | None,
    source: str,
    keep_columns: Sequence[str] = (),
) -> Dataset | IterableDataset:
    if dataset.features is None:
        raise ValueError(f"{source!r} does not declare its columns' types, so its images cannot be found; add them to its metadata.")
    image, label = detect_columns(dataset.features, image_column, label_column)
    image_feature = dataset.features[image]
    if not isinstance(image_feature, Image):
        raise ValueError(
            f"Column {image!r} of {source!r} holds {image_feature}, not images. Pass the image column with "
            f"`image_column`; the columns are {list(dataset.features)}."
        )
    missing = [c for c in keep_columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{source!r} has no column {', '.join(map(repr, missing))}; its columns are {list(dataset.features)}.")
    keep = [image] + ([label] if label is not None else []) + [c for c in keep_columns if c not in (image, label)]
    dataset = dataset.select_columns(keep)
    renames = {old: new for old, new in ((image, "image"), (label, "label")) if old is not None and old != new}
    if renames:
        dataset = dataset.rename_columns(renames)
    # Decode-time conversion: RGBA/grayscale/palette images become RGB lazily, at no load-time cost.
    if dataset.features["image"] != Image(mode="RGB"):
        dataset = dataset.cast_column("image", Image(mode="RGB"))
    if label is not None:
        label_feature = dataset.features["label"]
        if isinstance(label_feature, Value) and label_feature.dtype == "string":
            if isinstance(dataset, IterableDataset):
                raise ValueError(
                    f"Label column {label!r} of {source!r} holds class names as strings; a stream cannot list them "
                    "before reading it all. Store integer ids with a ClassLabel feature, or leave `streaming` off."
                )
            dataset = dataset.class_encode_column("label")
        elif not isinstance(label_feature, ClassLabel) and not (
            isinstance(label_feature, Value) and label_feature.dtype.startswith(("int", "uint"))
        ):
            raise ValueError(
                f"Label column {label!r} of {source!r} holds {label_feature}; expected integer class ids or a "
                "ClassLabel. Pass the right column with `label_column`."
            )
    return dataset


def _data_files_format(folder: str) -> str | None:
    """`datasets`' builder for a folder of data files (parquet, webdataset, arrow), None for anything else
    (decided at the first data or image file met, so a large image folder is not walked whole)."""
    for _, _, files in os.walk(folder):
        for name in sorted(files):
            extension = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                continue
            if extension in _DATA_FILE_FORMATS:
                return _DATA_FILE_FORMATS[extension]
            if extension in _IMAGE_EXTENSIONS:
                return None
    return None


def _is_image_folder(source: str) -> bool:
    return os.path.isdir(source) and not is_npz_source(source) and _data_files_format(source) is None


@contextmanager
def _clear_split_error(source: str, split: str) -> Iterator[None]:
    try:
        yield
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        raise ValueError(
            f"{source!r} has no split {split!r} ({error}). Set `train_split`/`eval_split` to an existing split; "
            "an image folder without train/test subfolders has only 'train'."
        ) from error


def _load_image_folder(source: str, split: str) -> Dataset:
    from datasets import load_dataset

    with _clear_split_error(source, split):
        dataset = load_dataset("imagefolder", data_dir=source, split=split)
    # The builder lists files class by class; shuffle once (fixed seed) so `max_samples` keeps every class.
    return dataset.shuffle(seed=0)


def _load_data_files(source: str, split: str, streaming: bool) -> Dataset | IterableDataset:
    from datasets import load_dataset

    with _clear_split_error(source, split):  # splits come from file names (train-*.parquet, ...), else all is "train"
        return load_dataset(source, split=split, streaming=streaming)


def _load_hub(source: str, split: str, config_name: str | None, streaming: bool = False) -> Dataset | IterableDataset:
    from datasets import load_dataset

    hint = (
        "Use a Hub name such as `uoft-cs/cifar10`, a folder of class subfolders, `.npz` files, or "
        "`builtin:digits` (no download)."
    )
    try:
        with _clear_split_error(source, split):
            dataset = load_dataset(source, config_name, split=split, streaming=streaming)
    except FileNotFoundError as error:  # includes datasets' DatasetNotFoundError
        raise FileNotFoundError(
            f"Cannot load {source!r}: it is neither a local path nor a data set on the Hugging Face Hub. {hint} "
            f"({error})"
        ) from error
    except ConnectionError as error:
        raise ConnectionError(
            f"Cannot reach the Hub for {source!r} (offline, or HF_DATASETS_OFFLINE=1 without a cached copy). "
            f"Download it once with network access, or use local data. {hint} ({error})"
        ) from error
    assert isinstance(dataset, (Dataset, IterableDataset))
    return dataset


def load_image_dataset(
    source: str,
    split: str,
    *,
    config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = False,
    max_samples: int | None = None,
    keep_columns: Sequence[str] = (),
    streaming: bool = False,
) -> Dataset | IterableDataset:
    """Load `split` of `source` as a Dataset with columns `image` (RGB PIL) and, when known, `label` (int).

    `source` is `builtin:<name>`, a `.npz` file / glob / directory, a local image folder (one
    subfolder per class), a folder of data files (parquet, webdataset `.tar` or arrow shards, split by
    their names: `train-*.parquet`, ...), or a Hub data set name. `max_samples` keeps the first rows, so
    the same subset is used every time (image folders are shuffled once with a fixed seed beforehand).
    `keep_columns` keeps more columns of a Hub data set or image folder (e.g. `corruption`, `severity`)
    next to `image`, `label`. `streaming=True` returns an `IterableDataset` (module docstring), or with
    `max_samples` a Dataset of the stream's first `max_samples` images, read without the rest.
    """
    if max_samples is not None and max_samples <= 0:
        raise ValueError(f"`max_samples` must be positive; got {max_samples}.")
    if source.startswith("builtin:"):
        if source not in BUILTIN_DATASETS:
            raise ValueError(f"Unknown built-in data set {source!r}; available: {list(BUILTIN_DATASETS)}.")
        dataset = load_builtin_dataset(source, split)
    elif is_npz_source(source):
        dataset = load_npz_dataset(source, split, image_column=image_column, label_column=label_column)
    elif _is_image_folder(source):
        dataset = _normalise_columns(_load_image_folder(source, split), image_column, label_column, source, keep_columns)
    elif os.path.isdir(source):
        dataset = _normalise_columns(_load_data_files(source, split, streaming), image_column, label_column, source, keep_columns)
    elif os.path.exists(source) or source.startswith((".", "/", "~")) or source.endswith(".npz"):
        raise FileNotFoundError(
            f"Cannot read {source!r}: expected a folder of class subfolders with images, a folder of parquet / "
            "webdataset `.tar` files, or `.npz` files (a file, a glob such as `data/train_*.npz`, or a directory holding them)."
        )
    else:
        hub = _load_hub(source, split, config_name, streaming)
        dataset = _normalise_columns(hub, image_column, label_column, source, keep_columns)

    if require_labels and "label" not in (dataset.column_names or ()):
        raise ValueError(
            f"Split {split!r} of {source!r} has no labels, but this step needs them (classification "
            "finetuning or evaluation). Name the label column with `label_column`, put the images in one "
            "subfolder per class, or add a `labels` array to the `.npz` file."
        )
    if isinstance(dataset, Dataset):
        if len(dataset) == 0:
            raise ValueError(f"Split {split!r} of {source!r} is empty: there are no images to train or evaluate on.")
        if max_samples is not None:  # the stream's first images too
            return dataset.select(range(max_samples)) if max_samples < len(dataset) else dataset
        if streaming:  # an index without pixels: the images are still read as the stream goes
            dataset = dataset.to_iterable_dataset(num_shards=min(len(dataset), _MAX_INDEXED_SHARDS))
    if isinstance(dataset, IterableDataset):
        dataset = dataset.reshard()
        if max_samples is not None:
            from .shards import stream_prefix

            return stream_prefix(dataset, max_samples)
    return dataset


def class_names(dataset: Dataset | IterableDataset) -> list[str] | None:
    """Label names for `id2label`, or None when the labels carry no names (plain integers or no labels)."""
    feature = (dataset.features or {}).get("label")
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return None
