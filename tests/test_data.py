"""mimir_hf.data: every source, the clear errors, transforms and the processor/eval equivalence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value
from PIL import Image
from transformers import AutoImageProcessor, HfArgumentParser

from mimir_hf.data import (
    DataArguments,
    class_names,
    collate_images,
    eval_transform,
    load_image_dataset,
    make_image_processor,
    train_transform,
    with_transform,
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _images(n: int, size: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (n, size, size, channels) if channels else (n, size, size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(autouse=True)
def _isolated_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


# --------------------------------------------------------------------------------------------- sources


def test_data_arguments_parse_with_help() -> None:
    (args,) = HfArgumentParser(DataArguments).parse_args_into_dataclasses(["--image_size", "32"])
    assert args.dataset == "builtin:digits" and args.train_split == "train" and args.eval_split == "test"
    assert args.image_size == 32
    for field in DataArguments.__dataclass_fields__.values():
        assert field.metadata.get("help"), field.name
    with pytest.raises(ValueError, match="max_train_samples"):
        DataArguments(max_train_samples=0)


def test_image_size_is_the_explicit_one_then_the_checkpoints_then_32() -> None:
    explicit = DataArguments(image_size=48)
    assert explicit.resolve_image_size(224) == 48  # a classifier interpolates its positions to the data's size
    assert explicit.resolve_image_size(None) == 48
    assert DataArguments().resolve_image_size([64, 64]) == 64
    assert DataArguments().resolve_image_size(None) == 32  # a preset model is built at CIFAR-10's size
    assert DataArguments().resolve_image_size(224, resizable=False) == 224
    assert DataArguments(image_size=224).resolve_image_size(224, resizable=False) == 224
    with pytest.raises(ValueError, match="image_size=48 but the checkpoint was built for 224"):
        explicit.resolve_image_size(224, resizable=False)  # a pretraining checkpoint cannot change resolution
    with pytest.raises(ValueError, match="square"):
        DataArguments().resolve_image_size([64, 32])


def test_builtin_digits_deterministic_split() -> None:
    train = load_image_dataset("builtin:digits", "train")
    test = load_image_dataset("builtin:digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert class_names(train) == [str(i) for i in range(10)]
    image = train[0]["image"]
    assert image.mode == "RGB" and image.size == (32, 32)
    array = np.asarray(image)
    assert array[:4].max() == 0 and array[:, :4].max() == 0  # black margin
    assert array.max() > 200  # real ink, not an empty frame
    assert sorted(set(test["label"])) == list(range(10))
    again = load_image_dataset("builtin:digits", "test", max_samples=5)
    assert again["label"] == test["label"][:5]
    assert np.array_equal(np.asarray(again[3]["image"]), np.asarray(test[3]["image"]))


def test_npz_directory_split_mapping(tmp_path: Path) -> None:
    names = np.array(["cat", "dog", "emu"])
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (not 1, 10, 2)
        np.savez(tmp_path / f"train_batch_{i}.npz", images=_images(2, seed=i), labels=np.full(2, i % 3),
                 class_names=names)
    np.savez(tmp_path / "test.npz", images=_images(3, seed=99), labels=np.array([0, 1, 2]), class_names=names)
    train = load_image_dataset(str(tmp_path), "train")
    assert train["label"] == [1, 1, 2, 2, 1, 1]
    assert np.array_equal(np.asarray(train[2]["image"]), _images(2, seed=2)[0])
    assert class_names(train) == ["cat", "dog", "emu"]
    test = load_image_dataset(str(tmp_path), "test", max_samples=2)
    assert len(test) == 2 and np.array_equal(np.asarray(test[1]["image"]), _images(3, seed=99)[1])
    single = load_image_dataset(str(tmp_path / "test.npz"), "whatever")
    assert len(single) == 3
    pattern = load_image_dataset(str(tmp_path / "train_batch_*.npz"), "train")
    assert pattern["label"] == train["label"]
    with pytest.raises(FileNotFoundError, match="validation"):
        load_image_dataset(str(tmp_path), "validation")


def test_npz_edm_layout_grayscale_rgba_and_one_hot(tmp_path: Path) -> None:
    np.savez(tmp_path / "edm.npz", image=_images(4, channels=4), label=np.eye(5)[[0, 4, 2, 1]])
    ds = load_image_dataset(str(tmp_path / "edm.npz"), "train")
    assert ds["label"] == [0, 4, 2, 1] and class_names(ds) == ["0", "1", "2", "3", "4"]
    rgba = _images(4, channels=4)[0].astype(np.float64)
    on_white = rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)
    assert np.abs(np.asarray(ds[0]["image"]).astype(np.float64) - on_white).max() <= 0.5
    np.savez(tmp_path / "gray.npz", images=_images(2, channels=0))
    gray = load_image_dataset(str(tmp_path / "gray.npz"), "train")
    assert gray.column_names == ["image"]
    pixels = np.asarray(gray[1]["image"])
    assert gray[1]["image"].mode == "RGB" and pixels.shape == (8, 8, 3)
    assert np.array_equal(pixels[..., 0], _images(2, channels=0)[1]) and np.array_equal(pixels[..., 0], pixels[..., 2])


def test_npz_refuses_pickles_and_bad_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "objects.npz", images=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_image_dataset(str(tmp_path / "objects.npz"), "train")
    np.savez(tmp_path / "odd.npz", pixels=_images(2), targets=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"expected key `images` or `image`.*pixels"):
        load_image_dataset(str(tmp_path / "odd.npz"), "train")
    named = load_image_dataset(str(tmp_path / "odd.npz"), "train", image_column="pixels", label_column="targets")
    assert named["label"] == [0, 1]
    with pytest.raises(ValueError, match=r"'nope'.*\['pixels', 'targets'\]"):
        load_image_dataset(str(tmp_path / "odd.npz"), "train", image_column="nope")


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    modes = {"L": (10, 12), "RGBA": (10, 12, 4), "RGB": (10, 12, 3)}
    for cls in ("ant", "bee"):
        (root / cls).mkdir(parents=True)
        for i, (mode, shape) in enumerate(modes.items()):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / cls / f"{i}.png")


def test_image_folder_converts_modes_and_keeps_class_names(tmp_path: Path) -> None:
    _write_folder(tmp_path / "folder")
    ds = load_image_dataset(str(tmp_path / "folder"), "train", require_labels=True)
    assert len(ds) == 6 and ds.column_names == ["image", "label"]
    assert class_names(ds) == ["ant", "bee"]
    assert {ds[i]["image"].mode for i in range(6)} == {"RGB"}
    assert sorted(ds["label"]) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="no split 'test'"):
        load_image_dataset(str(tmp_path / "folder"), "test")


def _hub_like() -> Dataset:
    features = Features(
        {
            "img": ImageFeature(),
            "fine_label": ClassLabel(names=["a", "b"]),
            "coarse_label": Value("int64"),
        }
    )
    images = [Image.fromarray(_images(1, channels=0 if i % 2 else 4, seed=i)[0]) for i in range(4)]
    return Dataset.from_dict(
        {"img": images, "fine_label": [0, 1, 1, 0], "coarse_label": [5, 5, 6, 6]}, features=features
    )


def test_hub_source_detects_and_names_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(name: str, config: str | None = None, *, split: str, streaming: bool = False) -> Dataset:
        calls.append((name, config, split))
        return _hub_like()

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    ds = load_image_dataset("someone/cifar100-like", "test", config_name="cfg", max_samples=3)
    assert calls == [("someone/cifar100-like", "cfg", "test")]
    assert ds.column_names == ["image", "label"] and len(ds) == 3
    assert ds["label"] == [0, 1, 1] and class_names(ds) == ["a", "b"]
    assert ds[0]["image"].mode == "RGB" and ds[1]["image"].mode == "RGB"  # RGBA and L converted
    named = load_image_dataset("someone/cifar100-like", "test", label_column="coarse_label")
    assert named["label"] == [5, 5, 6, 6] and class_names(named) is None
    with pytest.raises(ValueError, match=r"no image column 'picture'.*\['img', 'fine_label', 'coarse_label'\]"):
        load_image_dataset("someone/cifar100-like", "test", image_column="picture")
    with pytest.raises(ValueError, match="not images"):
        load_image_dataset("someone/cifar100-like", "test", image_column="coarse_label")


def test_hub_source_without_image_column(monkeypatch: pytest.MonkeyPatch) -> None:
    table = Dataset.from_dict({"text": ["x"], "label": [0]})
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: table)
    with pytest.raises(ValueError, match=r"Could not find an image column among \['text', 'label'\].*image_column"):
        load_image_dataset("someone/text", "train")


def test_clear_errors_for_empty_unlabelled_and_unknown(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="empty"):
        load_image_dataset(str(tmp_path / "empty.npz"), "train")
    np.savez(tmp_path / "unlabelled.npz", images=_images(2))
    assert len(load_image_dataset(str(tmp_path / "unlabelled.npz"), "train")) == 2
    with pytest.raises(ValueError, match="no labels"):
        load_image_dataset(str(tmp_path / "unlabelled.npz"), "train", require_labels=True)
    with pytest.raises(ValueError, match="builtin:digits"):
        load_image_dataset("builtin:mnist", "train")
    with pytest.raises(FileNotFoundError, match="class subfolders"):
        load_image_dataset(str(tmp_path / "missing_dir"), "train")
    with pytest.raises(FileNotFoundError, match="No such"):
        load_image_dataset(str(tmp_path / "missing.npz"), "train")


@pytest.fixture
def cifar10_layout(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A CIFAR-10 folder in the layout the experiments read (`train_batch_1..5.npz` + `test.npz`: uint8
    N x 32 x 32 x 3 `images`, int64 `labels`, the ten `class_names`), filled with synthetic images."""
    rng = np.random.default_rng(10)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    written = {}
    for name, count in [(f"train_batch_{i}", 3) for i in range(1, 6)] + [("test", 4)]:
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.int64)
        np.savez(folder / f"{name}.npz", images=images, labels=labels, class_names=np.array(CIFAR10_CLASSES))
        written[name] = (images, labels)
    return folder, written


def test_cifar10_layout_splits_classes_and_pixels(cifar10_layout) -> None:
    folder, written = cifar10_layout
    test = load_image_dataset(str(folder), "test")
    assert len(test) == 4 and class_names(test) == list(CIFAR10_CLASSES)
    assert test["label"] == written["test"][1].tolist()
    for i in range(4):
        assert np.array_equal(np.asarray(test[i]["image"]), written["test"][0][i])
    train = load_image_dataset(str(folder), "train")  # the five batches, in order
    batches = [written[f"train_batch_{i}"] for i in range(1, 6)]
    assert train["label"] == np.concatenate([labels for _, labels in batches]).tolist()
    assert np.array_equal(np.asarray(train[14]["image"]), batches[4][0][2])
    first = DataArguments(dataset=str(folder)).load("test", require_labels=True, max_samples=2)
    assert first["label"] == written["test"][1][:2].tolist()
    pixels = collate_images(list(with_transform(first, eval_transform(32))))["pixel_values"]
    assert torch.equal(pixels, torch.from_numpy(written["test"][0][:2]).permute(0, 3, 1, 2).float() / 255)


# ------------------------------------------------------------------------------------------ transforms


def test_train_transform_pad_crop_shapes_range_and_padding() -> None:
    image = Image.fromarray(np.full((32, 32, 3), 255, np.uint8))
    transform = train_transform(32)
    assert transform.kind == "pad_crop"
    outputs = torch.stack([transform(image) for _ in range(200)])
    assert outputs.shape == (200, 3, 32, 32) and outputs.dtype == torch.float32
    assert outputs.min() == 0.0 and outputs.max() == 1.0
    # Zero padding is at most 4 px on each side: the central 24x24 is always image.
    assert bool((outputs[:, :, 4:28, 4:28] == 1.0).all())
    border_zero = (outputs == 0).all(dim=1)
    assert border_zero.any(dim=(1, 2)).float().mean() > 0.5  # most crops include some padding
    assert border_zero.sum(dim=(1, 2)).max() <= 32 * 32 - 24 * 24


def test_train_transform_flip_and_determinism() -> None:
    array = np.zeros((32, 32, 3), np.uint8)
    array[:, :16] = 255
    transform = train_transform(32, padding=0)
    outs = [transform(array) for _ in range(40)]
    left_bright = [bool(o[:, :, :16].mean() > o[:, :, 16:].mean()) for o in outs]
    assert 0 < sum(left_bright) < 40
    torch.manual_seed(123)
    first = torch.stack([transform(array) for _ in range(8)])
    torch.manual_seed(123)
    second = torch.stack([transform(array) for _ in range(8)])
    assert torch.equal(first, second)


def test_train_transform_resized_crop_for_large_images() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    transform = train_transform(224)
    assert transform.kind == "resized_crop"
    torch.manual_seed(0)
    outs = torch.stack([transform(image) for _ in range(6)])
    assert outs.shape == (6, 3, 224, 224) and 0 <= outs.min() and outs.max() <= 1
    torch.manual_seed(0)
    assert torch.equal(outs, torch.stack([transform(image) for _ in range(6)]))
    box_areas = [transform._crop_box(90, 120) for _ in range(50)]
    fractions = [h * w / (90 * 120) for _, _, h, w in box_areas]
    assert min(fractions) >= 0.18 and max(fractions) <= 1.0


def test_transforms_convert_grayscale_and_rgba() -> None:
    gray = Image.fromarray(_images(1, size=32, channels=0)[0])
    rgba = Image.fromarray(_images(1, size=32, channels=4)[0], mode="RGBA")
    for transform in (train_transform(32), eval_transform(32)):
        for image in (gray, rgba, np.asarray(gray), np.asarray(rgba)):
            out = transform(image)
            assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(eval_transform(32)(gray)[0], eval_transform(32)(gray)[2])
    with pytest.raises(TypeError, match="uint8"):
        eval_transform(32)(np.zeros((32, 32, 3), np.float32))


def test_images_smaller_than_the_crop_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"smaller than the 32x32 crop.*image_size"):
        train_transform(32)(Image.new("RGB", (28, 28)))
    larger = train_transform(32)(Image.new("RGB", (64, 48)))  # larger images are brought down to size
    assert larger.shape == (3, 32, 32)


def test_eval_transform_is_identity_at_native_size_and_centre_crops() -> None:
    array = _images(1, size=32)[0]
    out = eval_transform(32)(array)
    assert torch.allclose(out, torch.from_numpy(array).permute(2, 0, 1).float() / 255, atol=1e-7)
    wide = np.zeros((256, 300, 3), np.uint8)
    wide[:, 150] = 255  # a bright column at the centre survives the centre crop at index 112
    cropped = eval_transform(224)(wide)
    assert cropped.shape == (3, 224, 224) and cropped[:, :, 112].min() == 1.0


@pytest.mark.parametrize(
    ("image_size", "shape"),
    [(32, (32, 32, 3)), (32, (40, 50, 3)), (64, (64, 64, 3)), (224, (300, 400, 3)), (224, (333, 250, 4)),
     (224, (120, 90))],
)
def test_image_processor_matches_eval_transform(tmp_path: Path, image_size: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    expected = eval_transform(image_size)(image)
    processor = make_image_processor(image_size)
    direct = torch.as_tensor(processor(image, return_tensors="pt")["pixel_values"][0])
    processor.save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    via_auto = torch.as_tensor(reloaded(image, return_tensors="pt")["pixel_values"][0])
    assert direct.shape == via_auto.shape == (3, image_size, image_size)
    assert torch.allclose(direct, expected, atol=1e-5) and torch.allclose(via_auto, expected, atol=1e-5)
    assert not reloaded.do_normalize and reloaded.rescale_factor == pytest.approx(1 / 255)


# ------------------------------------------------------------------------------------- dataset plumbing


def test_with_transform_and_collate() -> None:
    ds = load_image_dataset("builtin:digits", "test", max_samples=6)
    rows = with_transform(ds, eval_transform(32))
    row = rows[0]
    assert set(row) == {"pixel_values", "labels"} and row["pixel_values"].shape == (3, 32, 32)
    assert isinstance(row["labels"], int)
    batch = collate_images([rows[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == ds["label"][:4]
    assert ds.column_names == ["image", "label"]  # the original is untouched
    loader = torch.utils.data.DataLoader(with_transform(ds, train_transform(32)), batch_size=3,
                                         collate_fn=collate_images)
    shapes = [tuple(b["pixel_values"].shape) for b in loader]
    assert shapes == [(3, 3, 32, 32), (3, 3, 32, 32)]


def test_collate_without_labels_and_mixed_shapes() -> None:
    unlabelled = with_transform(Dataset.from_dict({"image": [Image.new("L", (8, 8))] * 2},
                                                  features=Features({"image": ImageFeature()})),
                                eval_transform(8))
    batch = collate_images([unlabelled[0], unlabelled[1]])
    assert set(batch) == {"pixel_values"} and batch["pixel_values"].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="different shapes"):
        collate_images([{"pixel_values": torch.zeros(3, 8, 8)}, {"pixel_values": torch.zeros(3, 4, 4)}])


@pytest.mark.parametrize("error", [FileNotFoundError("no such repo"), ConnectionError("offline")])
def test_unreachable_hub_source_says_what_to_use(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("datasets.load_dataset", fail)
    with pytest.raises(type(error), match="builtin:digits"):
        load_image_dataset("nobody/nothing-here", "train")


def test_saved_processor_drives_a_pipeline(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, pipeline

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=10, id2label=dict(enumerate(class_names(
                           load_image_dataset("builtin:digits", "test", max_samples=1)))))
    ViTForImageClassification(config).save_pretrained(tmp_path)
    make_image_processor(32).save_pretrained(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path), device="cpu")
    predictions = classify(Image.fromarray(_images(1, size=32, channels=4)[0], mode="RGBA"), top_k=3)
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= {str(i) for i in range(10)}
