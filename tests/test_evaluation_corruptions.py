"""Common-corruption evaluation on a small synthetic corruption set built in memory (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage
from transformers import ViTConfig, ViTForImageClassification

from mimir_hf.evaluation.corruptions import CIFAR10C_CORRUPTIONS, evaluate_corruptions


def tiny_vit() -> ViTForImageClassification:
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)
    return ViTForImageClassification(config).eval()


RIGHT = {("gaussian_noise", 1): 6, ("gaussian_noise", 3): 3, ("brightness", 1): 5, ("brightness", 3): 2}


def corruption_set(model, n: int = 6):
    """n images under two corruptions at severities 1 and 3. In group (c, s) the first RIGHT[c, s] images are
    labelled with the model's prediction on the corrupted image and the rest with another class, so the
    accuracy of each group is known in advance and differs between groups."""
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(n, 16, 16, 3)).astype(np.float64)
    rows = {"img": [], "label": [], "corruption": [], "severity": []}
    for corruption in ("gaussian_noise", "brightness"):
        for severity in (1, 3):
            for i in range(n):
                if corruption == "gaussian_noise":
                    image = clean[i] + rng.normal(0, 30.0 * severity, clean[i].shape)
                else:
                    image = clean[i] + 40 * severity
                image = np.clip(image, 0, 255).astype(np.uint8)
                with torch.no_grad():
                    x = torch.from_numpy(image / 255).permute(2, 0, 1)[None].float()
                    predicted = int(model(pixel_values=x).logits.argmax(1))
                k = RIGHT.get((corruption, severity), n)
                rows["img"].append(PILImage.fromarray(image))
                rows["label"].append(predicted if i < k else (predicted + 1) % 3)
                rows["corruption"].append(corruption)
                rows["severity"].append(severity)
    features = Features({"img": Image(), "label": ClassLabel(num_classes=3), "corruption": Value("string"),
                         "severity": Value("int64")})
    return Dataset.from_dict(rows, features=features)


def test_accuracy_per_corruption_and_severity_matches_a_direct_count(tmp_path) -> None:
    model = tiny_vit()
    dataset = corruption_set(model).rename_column("img", "image")
    report = evaluate_corruptions(model, dataset, batch_size=5, output_dir=tmp_path, progress=False)
    # the same images through the model directly, grouped by hand
    pixels = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1) for im in dataset["image"]])
    with torch.no_grad():
        predicted = model(pixel_values=pixels).logits.argmax(1).numpy()
    right = predicted == np.asarray(dataset["label"])
    corruption, severity = np.asarray(dataset["corruption"]), np.asarray(dataset["severity"])
    expected = {(c, s): right[(corruption == c) & (severity == s)].mean() for c in ("gaussian_noise", "brightness")
                for s in (1, 3)}
    for (c, s), value in expected.items():
        assert report.accuracy(c, s) == pytest.approx(value)
    assert report.mean_accuracy == pytest.approx(np.mean(list(expected.values())))
    assert expected == {key: right_count / 6 for key, right_count in RIGHT.items()}  # groups differ: grouping is tested

    data = json.loads((tmp_path / "corruptions.json").read_text())
    assert data["accuracy"]["gaussian_noise"]["3"] == pytest.approx(expected[("gaussian_noise", 3)])
    assert data["num_images"]["brightness"] == {"1": 6, "3": 6}
    assert data["mean_accuracy"] == pytest.approx(report.mean_accuracy)
    assert len(data["missing_cifar10c_corruptions"]) == len(CIFAR10C_CORRUPTIONS) - 2
    assert "mean over corruption × severity" in (tmp_path / "corruptions_table.txt").read_text()


def test_missing_columns_are_named() -> None:
    model = tiny_vit()
    dataset = corruption_set(model, 2).rename_column("img", "image").remove_columns("severity")
    with pytest.raises(ValueError, match="'severity' \\(1-5\\).*missing \\['severity'\\]"):
        evaluate_corruptions(model, dataset, progress=False)


def test_a_corruption_set_from_disk_keeps_its_columns(tmp_path) -> None:
    """Through `mimir_hf.data` (as a Hub data set is read): the corruption columns survive the column normalising."""
    model = tiny_vit()
    folder = tmp_path / "c10c"
    corruption_set(model, 3).save_to_disk(str(folder))
    from datasets import load_from_disk

    from mimir_hf.data import sources

    loaded = load_from_disk(str(folder))
    normalised = sources._normalise_columns(loaded, "img", None, "c10c", ("corruption", "severity"))
    assert normalised.column_names == ["image", "label", "corruption", "severity"]
    report = evaluate_corruptions(model, normalised, progress=False)
    assert report.num_samples == 12
    assert report.accuracy("brightness", 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="has no column 'level'"):
        sources._normalise_columns(loaded, "img", None, "c10c", ("corruption", "level"))


def test_recipe_flag_reads_a_hub_style_corruption_set(tmp_path, monkeypatch) -> None:
    """`recipes/evaluate.py --corruptions_dataset <id>`: the Hub loader is replaced by the in-memory set (no
    network in tests); the rest (column checks, keep_columns, the files) is the real path."""
    import datasets

    from test_evaluation_recipe import load_recipe

    model = tiny_vit()
    model.save_pretrained(tmp_path / "ckpt")
    hub_copy = corruption_set(model)
    requested = []

    def fake_load_dataset(name, config=None, split=None, **kwargs):
        requested.append((name, config, split))
        return hub_copy

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    x = torch.rand(4, 3, 16, 16)
    out = tmp_path / "eval"
    np.savez(tmp_path / "test.npz", images=(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), labels=np.zeros(4))
    code = load_recipe().main([
        "--model_name_or_path", str(tmp_path / "ckpt"), "--dataset", str(tmp_path / "test.npz"), "--output_dir", str(out),
        "--attacks", "clean", "--epsilon_sweep", "2/255", "--sweep_attack", "pgd-1", "--no_progress", "true",
        "--corruptions_dataset", "someone/cifar10-c", "--corruptions_split", "test",
    ])
    assert code in (0, 3)
    assert requested == [("someone/cifar10-c", None, "test")]
    data = json.loads((out / "corruptions.json").read_text())
    assert data["dataset"] == "someone/cifar10-c" and data["num_samples"] == 24
    assert data["accuracy"]["gaussian_noise"]["3"] == pytest.approx(RIGHT[("gaussian_noise", 3)] / 6)
