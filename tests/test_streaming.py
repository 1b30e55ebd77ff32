"""Streamed training data: sources, disjoint substreams, passes, the held-out prefix, exact resumption."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset
from PIL import Image
from transformers import HfArgumentParser

from mimir_hf.data import DataArguments, ImageStream, ShardedStream, collate_images, eval_transform, hold_out_validation, load_image_dataset
from stream_shards import image_ids, write_level_shards


@pytest.fixture(autouse=True)
def _isolated_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def _stream(folder: Path, buffer_size: int = 1000, transform=None) -> ImageStream:
    shards = ShardedStream.from_dataset(load_image_dataset(str(folder), "train", streaming=True))
    return ImageStream(shards, transform or eval_transform(16), buffer_size)


def _read(loader, batches: int) -> list[torch.Tensor]:
    out = []
    for batch in loader:
        out.append(batch["pixel_values"])
        if len(out) == batches:
            return out
    raise AssertionError("the stream ended")


def _ids(batches: list[torch.Tensor]) -> list[int]:
    return [i for batch in batches for i in image_ids(batch)]


# ------------------------------------------------------------------------------------------ sources
def test_a_parquet_folder_streams_by_shard_and_loads_map_style(tmp_path):
    folder = write_level_shards(tmp_path / "pq", 24, 3)
    write_level_shards(folder, 4, 1, split="test", first=200)
    stream = load_image_dataset(str(folder), "train", streaming=True)
    assert isinstance(stream, IterableDataset) and stream.n_shards == 3
    assert stream.features["label"].names == ["class0", "class1", "class2", "class3"]
    whole = load_image_dataset(str(folder), "train")
    assert isinstance(whole, Dataset) and len(whole) == 24
    test = load_image_dataset(str(folder), "test", streaming=True, max_samples=2)  # a streamed prefix, map-style
    assert isinstance(test, Dataset) and len(test) == 2
    assert [int(np.asarray(image).max()) for image in test["image"]] == [200, 201]


def test_webdataset_tars_and_image_folders_stream(tmp_path):
    tars = tmp_path / "wds"
    tars.mkdir()
    for shard in range(2):
        with tarfile.open(tars / f"train-{shard}.tar", "w") as tar:
            for i in range(3):
                buffer = io.BytesIO()
                Image.fromarray(np.full((8, 8, 3), 10 * shard + i, np.uint8)).save(buffer, format="PNG")
                for name, data in ((f"{shard}{i:03d}.png", buffer.getvalue()), (f"{shard}{i:03d}.cls", str(i).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    stream = load_image_dataset(str(tars), "train", streaming=True)
    assert stream.n_shards == 2 and set(stream.column_names) == {"image", "label"}
    assert sorted(int(np.asarray(row["image"]).max()) for row in stream) == [0, 1, 2, 10, 11, 12]

    folder = tmp_path / "images"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / name / f"{i}.png")
    stream = load_image_dataset(str(folder), "train", streaming=True)
    assert stream.n_shards == 6  # one image per shard: each pass draws the shards in a new order
    assert sorted(row["label"] for row in stream) == [0, 0, 0, 1, 1, 1]


def test_streaming_needs_max_steps_and_a_whole_training_set(tmp_path):
    data_args = DataArguments(dataset=str(write_level_shards(tmp_path / "pq", 4, 1)), streaming=True)
    with pytest.raises(ValueError, match="needs `max_steps`: an unsized stream has no epochs to count"):
        data_args.training_stream(max_steps=-1)
    with pytest.raises(ValueError, match="max_train_samples"):
        DataArguments(streaming=True, max_train_samples=10)
    with pytest.raises(ValueError, match="generated_data"):
        DataArguments(streaming=True, generated_data="edm.npz")
    (args,) = HfArgumentParser(DataArguments).parse_args_into_dataclasses(["--streaming", "true", "--shuffle_buffer_size", "64"])
    assert args.streaming and args.shuffle_buffer_size == 64


# ------------------------------------------------------------------------------------- dealing out
@pytest.mark.parametrize("num_shards", [8, 1], ids=["whole shards", "one image in four"])
def test_substreams_read_disjoint_parts_that_cover_each_pass(tmp_path, num_shards):
    stream = _stream(write_level_shards(tmp_path / "pq", 64, num_shards), buffer_size=6)
    passes = []
    for pass_index in range(2):
        seen = []
        for process in range(4):  # 4 processes, main-process loading: 4 substreams of 16 images a pass
            loader = stream.loader(4, collate_images, num_processes=4, process_index=process, seed=3)
            seen.append(_ids(_read(loader, 8))[16 * pass_index : 16 * (pass_index + 1)])
        assert sorted(i for part in seen for i in part) == list(range(1, 65))  # disjoint, and all of them
        passes.append(seen)
    assert passes[0] != passes[1]  # a new order (and shard deal) each pass


def test_the_order_is_shuffled_and_set_by_the_seed(tmp_path):
    stream = _stream(write_level_shards(tmp_path / "pq", 32, 4), buffer_size=16)
    first = _ids(_read(stream.loader(8, collate_images, seed=0), 4))
    assert sorted(first) == list(range(1, 33)) and first != sorted(first)
    assert _ids(_read(stream.loader(8, collate_images, seed=0), 4)) == first
    assert _ids(_read(stream.loader(8, collate_images, seed=1), 4)) != first


def test_a_reader_without_images_is_a_clear_error(tmp_path):
    stream = _stream(write_level_shards(tmp_path / "pq", 2, 1))
    loader = stream.loader(1, collate_images, num_processes=4, process_index=3)
    with pytest.raises(ValueError, match="found no training images"):
        _read(loader, 1)


# ---------------------------------------------------------------------------------------- held out
def test_validation_is_the_streams_seeded_prefix_and_never_trained_on(tmp_path):
    shards = ShardedStream.from_dataset(load_image_dataset(str(write_level_shards(tmp_path / "pq", 40, 4)), "train", streaming=True))
    rest, validation = hold_out_validation(shards, 13, seed=5)
    held = sorted(int(np.asarray(image).max()) for image in validation["image"])
    assert len(held) == 13 and validation.features["label"].names[0] == "class0"
    assert sum(v is None for v in rest.held_out.values()) == 1 and 3 in rest.held_out.values()  # 10 whole + 3 of the next
    training = _ids(_read(ImageStream(rest, eval_transform(16)).loader(9, collate_images), 3))
    assert sorted(training + held) == list(range(1, 41))
    _, again = hold_out_validation(shards, 13, seed=5)
    _, other = hold_out_validation(shards, 13, seed=6)
    assert again["image"] == validation["image"] and other["image"] != validation["image"]
    with pytest.raises(ValueError, match="leaves no training images"):
        hold_out_validation(shards, 40, seed=0)


# -------------------------------------------------------------------------------------- resumption
@pytest.mark.parametrize("workers", [0, 2], ids=["main process", "two workers"])
def test_a_loader_resumes_exactly_where_it_stood(tmp_path, workers):
    """Pixel for pixel, augmentation included, across window and pass boundaries (buffer 5, 20 images, 2 shards)."""
    folder = write_level_shards(tmp_path / "pq", 20, 2)
    data_args = DataArguments(dataset=str(folder), streaming=True, shuffle_buffer_size=5)
    stream = data_args.training_dataset(data_args.training_stream(max_steps=10), 16)
    options = dict(num_processes=2, process_index=1, seed=7, num_workers=workers)
    uninterrupted = _read(stream.loader(3, collate_images, **options), 9)
    first = stream.loader(3, collate_images, **options)
    before = _read(first, 3)  # odd: with two workers, the second one's turn comes next
    state = first.state_dict()
    assert len(state["substreams"]) == max(1, workers)
    resumed = stream.loader(3, collate_images, **options)
    resumed.load_state_dict(state)
    after = _read(resumed, 6)
    for got, expected in zip(before + after, uninterrupted):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="dataloader_num_workers"):
        stream.loader(3, collate_images, **dict(options, num_workers=workers + 1)).load_state_dict(state)


# ------------------------------------------------------------------------------------------ trainers
def test_a_trainer_saves_the_stream_position_and_resumes_from_it(tmp_path):
    """In one process: a run resumed from its step-2 checkpoint trains on the batches an uninterrupted run did."""
    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.pretraining import MimirTrainer, MimirTrainingArguments
    from tiny_runs import TINY_MAE

    data_args = DataArguments(dataset=str(write_level_shards(tmp_path / "pq", 32, 4)), streaming=True, shuffle_buffer_size=8)
    stream = data_args.training_dataset(data_args.training_stream(max_steps=4), 16)

    def run(output_dir: Path, resume: str | None = None, **overrides) -> list[int]:
        seen: list[int] = []

        def recording(rows):
            batch = collate_images(rows)
            seen.extend(image_ids(batch["pixel_values"]))
            return batch

        torch.manual_seed(0)
        model = MimirForPreTraining(mimir_config("vit-t", 16, **TINY_MAE))
        options = dict(max_steps=4, save_strategy="steps", save_steps=2, report_to="none", disable_tqdm=True, use_cpu=True)
        args = MimirTrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=4, seed=0, **{**options, **overrides})
        MimirTrainer(model=model, args=args, train_dataset=stream, data_collator=recording).train(resume_from_checkpoint=resume)
        return seen

    uninterrupted = run(tmp_path / "a")
    assert (tmp_path / "a" / "checkpoint-2" / "stream_state_0.json").is_file()
    assert run(tmp_path / "a", resume=str(tmp_path / "a" / "checkpoint-2")) == uninterrupted[8:]


# ------------------------------------------------------------------------------------------ configs
IMAGENET_TRAINING_IMAGES = 1_281_167 - 5_000  # ImageNet-1K's training split less the held-out validation images


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "recipes" / "configs").glob("*_imagenet_vit_*.yaml")))
def test_the_imagenet_configs_stream_the_papers_schedule_in_steps(name):
    """The paper's epochs as steps at the GPU count each config names; both stages hold out the same images."""
    from mimir_hf.cli import parse_recipe_args
    from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments
    from mimir_hf.pretraining import MimirTrainingArguments
    from mimir_hf.pretraining.run import PretrainModelArguments

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / name
    types = (PretrainModelArguments, DataArguments, MimirTrainingArguments) if name.startswith("pretrain") else (
        ModelArguments, DataArguments, AdversarialTrainingArguments)
    _, data_args, args = parse_recipe_args(types, argv=["--config", str(config), "--bf16", "false"])
    assert data_args.streaming and data_args.dataset == "ILSVRC/imagenet-1k"
    assert (data_args.validation_split_size, data_args.validation_split_seed) == (5000, 0)
    epochs, warmup, gpus = {"pretrain": (800, None, 4), "apgd": (300, 20, 8)}.get(
        "pretrain" if name.startswith("pretrain") else "apgd" if "apgd" in name else "", (100, 10, 4))
    per_step = gpus * args.per_device_train_batch_size
    assert args.max_steps == round(epochs * IMAGENET_TRAINING_IMAGES / per_step)
    assert args.warmup_steps == (0.05 if warmup is None else round(warmup * IMAGENET_TRAINING_IMAGES / per_step))
    assert args.save_strategy == "steps" and args.save_steps == round(IMAGENET_TRAINING_IMAGES / per_step)
    assert args.eval_strategy in ("no", "steps") and getattr(args, "warmup_epochs", None) is None


def test_the_evaluation_streams_the_first_images_of_its_split(tmp_path):
    from test_evaluation_recipe import digits_checkpoint, load_recipe

    folder = write_level_shards(tmp_path / "pq", 8, 1, split="test", num_labels=10, class_names=False)
    digits_checkpoint(tmp_path / "ckpt")
    load_recipe().main([
        "--model_name_or_path", str(tmp_path / "ckpt"), "--output_dir", str(tmp_path / "eval"), "--dataset", str(folder),
        "--streaming", "true", "--max_eval_samples", "5", "--attacks", "clean", "--epsilon_sweep", "8/255", "--no_progress", "true",
    ])
    report = json.loads((tmp_path / "eval" / "robustness.json").read_text())
    assert (report["dataset"], report["split"], report["num_samples"]) == (str(folder), "test", 5)
