"""Generated-data mixing: memory-mapped arrays, the reference's batch composition, both trainers, the card flag."""

from __future__ import annotations

import inspect
import json
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest
import torch
import yaml
from transformers import Trainer

from mimir_hf.data import collate_images, to_tensor
from mimir_hf.data.mixing import GeneratedImages, MixedBatchSampler, MixedDataset, mix_generated_data, open_generated_arrays
from mimir_hf.finetuning import AdversarialTrainer
from test_finetuning import tensor_dataset, tiny_classifier, training_args


def _generated(tmp_path, n=200, size=16, label=None, name="gen.npz", compressed=False):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.full(n, label) if label is not None else rng.integers(0, 3, n)
    path = tmp_path / name
    (np.savez_compressed if compressed else np.savez)(path, image=images, label=labels)
    return path, images, labels


def test_npz_members_are_memory_mapped(tmp_path):
    path, images, labels = _generated(tmp_path)
    mapped, read_labels = open_generated_arrays(path)
    assert isinstance(mapped, np.memmap) and mapped.filename == str(path.resolve())
    assert np.array_equal(mapped, images) and np.array_equal(read_labels, labels)
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", labels)
    mapped, _ = open_generated_arrays(folder)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, images)


def test_compressed_and_malformed_arrays_are_refused(tmp_path):
    path, _, _ = _generated(tmp_path, compressed=True, name="small.npz")
    with pytest.raises(ValueError, match="np.savez_compressed"):
        open_generated_arrays(path)
    np.savez(tmp_path / "floats.npz", image=np.zeros((2, 4, 4, 3), np.float32), label=np.zeros(2))
    with pytest.raises(ValueError, match="uint8"):
        open_generated_arrays(tmp_path / "floats.npz")
    np.savez(tmp_path / "nolabels.npz", image=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        open_generated_arrays(tmp_path / "nolabels.npz")


def test_sampler_composition_follows_the_reference():
    n_real, n_generated, batch, fraction = 50, 200, 10, 0.7
    epoch = MixedBatchSampler(n_real, n_generated, batch, fraction, seed=3)
    first_epoch = list(epoch.batches())
    assert epoch.num_batches == 5 and len(list(iter(epoch))) == len(epoch) == 50  # an epoch: as many images as the real set
    sampler = MixedBatchSampler(n_real, n_generated, batch, fraction, seed=3, num_batches=25)
    batches = list(sampler.batches())
    assert batches[:5] == first_epoch
    real_counts = [sum(i < n_real for i in b) for b in batches]
    assert all(len(b) == batch for b in batches)
    # 3 real + 7 generated per batch; a pass over the 50 real images ends with a batch of the 2 left
    # over, filled up with generated ones (16 full batches + 1, then the next pass)
    assert real_counts[:17] == [3] * 16 + [2] and real_counts[17:] == [3] * 8
    first_pass = [i for b in batches[:17] for i in b if i < n_real]
    assert sorted(first_pass) == list(range(n_real))  # without replacement within a pass
    assert all(n_real <= i < n_real + n_generated for b in batches for i in b if i >= n_real)


def test_sampler_is_seeded_per_epoch_and_draws_generated_uniformly():
    sampler = MixedBatchSampler(30, 100, 8, 0.5, seed=0)
    first = list(sampler.batches())
    assert first == list(sampler.batches())
    sampler.set_epoch(1)
    assert list(sampler.batches()) != first
    draws = Counter()
    for epoch in range(300):
        sampler.set_epoch(epoch)
        draws.update(i - 30 for b in sampler.batches() for i in b if i >= 30)
    counts = np.array([draws[i] for i in range(100)])
    # with replacement from the whole generated set: every image drawn, counts ~ Poisson(mean)
    assert counts.min() > 0 and abs(counts.mean() - counts.sum() / 100) < 1e-9
    assert counts.std() < 3 * np.sqrt(counts.mean())


def test_mixed_batches_through_the_trainer(tmp_path):
    """The Trainer's own dataloader keeps the composition: real rows are labelled 0, generated ones 1."""
    path, _, _ = _generated(tmp_path, n=64, label=1)
    real = datasets.Dataset.from_dict(
        {"pixel_values": np.random.rand(20, 3, 16, 16).astype(np.float32), "labels": np.zeros(20, np.int64)}
    ).with_format("torch")
    mixed = mix_generated_data(real, path, to_tensor, unsup_fraction=0.7)
    assert isinstance(mixed, MixedDataset) and len(mixed) == 84
    args = training_args(tmp_path, per_device_train_batch_size=4, num_train_epochs=1)
    trainer = AdversarialTrainer(model=tiny_classifier(num_labels=2), args=args, train_dataset=mixed, data_collator=collate_images)
    loader = trainer.get_train_dataloader()
    generated_per_batch = [int(batch["labels"].sum()) for batch in loader]
    assert len(generated_per_batch) == 5  # ceil(20 real / 4)
    assert generated_per_batch == [2] * 5  # 4 - int(4 * 0.7) = 2 real + 2 generated
    trainer.train()  # and it trains on them
    assert mix_generated_data(real, None, to_tensor, 0.7) is real


def test_get_train_sampler_hook_canary():
    """MixedSamplingMixin overrides this private Trainer hook; fail loudly if transformers changes it."""
    assert "train_dataset" in inspect.signature(Trainer._get_train_sampler).parameters
    assert "_get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)


def test_generated_rows_go_through_the_transform(tmp_path):
    path, images, labels = _generated(tmp_path, n=5)
    rows = GeneratedImages(path, to_tensor)
    row = rows[3]
    assert torch.allclose(row["pixel_values"], to_tensor(images[3])) and row["labels"] == labels[3]


def test_card_says_additional_data(tmp_path):
    from hub_server import build_tiny_checkpoints

    from mimir_hf.evaluation import RobustnessReport
    from mimir_hf.hub import render_model_card, validate_model_card

    checkpoints = build_tiny_checkpoints(tmp_path / "tiny")
    folder = tmp_path / "classifier"
    shutil.copytree(checkpoints["classifier"], folder)
    report = json.loads((folder / "robustness.json").read_text())
    report["model"] = str(folder)
    (folder / "robustness.json").write_text(json.dumps(report))
    card = validate_model_card(render_model_card(folder, repo_id="org/x"), report=RobustnessReport.from_dict(report))
    assert getattr(card.data, "additional_data", None) is None
    # finetuned from a pretraining run that mixed in generated data
    pretrain = tmp_path / "pretrain"
    pretrain.mkdir()
    (pretrain / "recipe_config.yaml").write_text(yaml.safe_dump({"generated_data": "edm/5m.npz", "unsup_fraction": 0.7}))
    recipe = yaml.safe_load((folder / "recipe_config.yaml").read_text()) if (folder / "recipe_config.yaml").is_file() else {}
    recipe["model_name_or_path"] = str(pretrain)
    (folder / "recipe_config.yaml").write_text(yaml.safe_dump(recipe))
    card = validate_model_card(render_model_card(folder, repo_id="org/x"), report=RobustnessReport.from_dict(report))
    assert card.data.additional_data is True and "additional_data: true" in str(card)


def test_pretraining_trainer_mixes_too(tmp_path):
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments

    path, _, _ = _generated(tmp_path, n=64, label=1)
    real = datasets.Dataset.from_dict(
        {"pixel_values": np.random.rand(30, 3, 16, 16).astype(np.float32), "labels": np.zeros(30, np.int64)}
    ).with_format("torch")
    model = MimirForPreTraining(mimir_config("vit-t", 16, 4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    args = MimirTrainingArguments(output_dir=str(tmp_path / "pre"), per_device_train_batch_size=8, use_cpu=True, report_to="none")
    trainer = MimirTrainer(model=model, args=args, train_dataset=mix_generated_data(real, path, to_tensor, 0.5), data_collator=collate_images)
    assert [int(batch["labels"].sum()) for batch in trainer.get_train_dataloader()] == [4] * 4  # ceil(30 / 8) batches
