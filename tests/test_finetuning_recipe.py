"""recipes/finetune.py: configs, clear errors, and a saved classifier that stock transformers can use."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from mimir_hf.cli import load_yaml_config, parse_recipe_args
from mimir_hf.data import DataArguments
from mimir_hf.finetuning import AdversarialTrainingArguments, ModelArguments, reset_mae_embeddings

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "configs").glob("finetune_*.yaml"))


def load_recipe():
    spec = importlib.util.spec_from_file_location("finetune_recipe", ROOT / "recipes" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_finetune_configs_parse(config):
    model_args, data_args, args = parse_recipe_args(
        (ModelArguments, DataArguments, AdversarialTrainingArguments), argv=["--config", str(config), "--bf16", "false"]
    )
    # no shipped config picks a checkpoint, and none validates on test images: the reference keeps
    # the last epoch, and validation runs on images held out of the training split
    assert not args.load_best_model_at_end
    assert data_args.validation_split_size is not None and data_args.validation_split_size > 0
    assert model_args.pooling == "mean"
    if "cifar10" in config.stem:
        assert (args.attack_steps, args.num_train_epochs, args.warmup_epochs) == (10, 50, 5)
        assert abs(args.attack_epsilon * 255 - 8) < 1e-9 and abs(args.attack_step_size * 255 - 2) < 1e-9
    # the ImageNet configs stream, their schedules in steps: tests/test_streaming.py checks them against the epochs
    if "imagenet" in config.stem and "apgd" in config.stem:  # Singh et al.'s recipe (docs/finetuning.md)
        assert (args.adversarial_method, args.attack_steps, args.attack_random_start) == ("apgd", 2, False)
        assert (args.learning_rate, args.ema_decay) == (1e-3, 0.9999)
        assert abs(args.attack_epsilon * 255 - 4) < 1e-9 and (args.adam_beta2, args.layer_decay) == (0.95, 1.0)
        assert (data_args.rand_augment, data_args.random_erasing, data_args.train_crop_min_scale) == ("rand-m9-mstd0.5-inc1", 0.25, 0.08)
        assert (args.mixup_alpha, args.cutmix_alpha, args.mixup_prob, args.mixup_switch_prob) == (0.8, 1.0, 1.0, 0.5)
        assert args.label_smoothing_factor == 0.1
    elif "imagenet" in config.stem:
        assert args.attack_steps == 1
        assert abs(args.attack_epsilon * 255 - 4) < 1e-9 and abs(args.attack_step_size * 255 - 5) < 1e-9


def test_comparison_configs_differ_only_in_starting_weights():
    configs = {name: load_yaml_config(ROOT / "recipes" / "configs" / f"finetune_cifar10_vit_t{name}.yaml") for name in ("", "_mae", "_scratch")}
    ignored = {"model_name_or_path", "output_dir", "model_size", "layer_decay"}
    reference = {k: v for k, v in configs[""].items() if k not in ignored}
    for name, values in configs.items():
        assert {k: v for k, v in values.items() if k not in ignored} == reference, name
    # layer-wise lr decay is a prior for pretrained encoders: the scratch arm trains without it
    assert configs["_scratch"]["layer_decay"] == 1.0 and configs[""]["layer_decay"] == configs["_mae"]["layer_decay"] < 1.0
    assert len({values["model_name_or_path"] for values in configs.values()}) == 3
    assert configs["_scratch"]["model_name_or_path"] == "scratch"


def test_missing_pretraining_output_is_a_clear_error(tmp_path):
    recipe = load_recipe()
    with pytest.raises(FileNotFoundError, match="single_process.yaml recipes/pretrain.py"):
        recipe.main(["--model_name_or_path", str(tmp_path / "outputs" / "quickstart-pretrain"), "--output_dir", str(tmp_path / "out")])


PIPELINE_SCRIPT = """
import json, sys
from pathlib import Path
from PIL import Image
from transformers import pipeline
assert "mimir_hf" not in sys.modules
classifier = pipeline("image-classification", model=sys.argv[1], device=-1)
images = [Image.open(path) for path in sorted(Path(sys.argv[2]).glob("*.png"))]
results = classifier(images, top_k=1)
assert "mimir_hf" not in sys.modules
print(json.dumps([[r["label"], r["score"]] for [r] in results]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("pooling", "model_type", "class_name"), [("mean", "beit", "BeitForImageClassification"), ("cls", "vit", "ViTForImageClassification")])
def test_recipe_end_to_end_and_stock_pipeline(tmp_path, pooling, model_type, class_name):
    """Finetune a tiny 16-px MAE at 32 px on the digits, then check the output with plain transformers."""
    from mimir_hf.data import eval_transform, load_image_dataset

    mae = ViTMAEForPreTraining(
        ViTMAEConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4,
            layer_norm_eps=1e-6, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
            decoder_intermediate_size=32,
        )
    )
    reset_mae_embeddings(mae.vit)
    mae.save_pretrained(tmp_path / "pretrained")
    output = tmp_path / "finetuned"
    metrics = load_recipe().main(
        [
            "--model_name_or_path", str(tmp_path / "pretrained"), "--output_dir", str(output),
            "--image_size", "32", "--max_train_samples", "96", "--validation_split_size", "32",
            "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--num_train_epochs", "1",
            "--attack_steps", "1", "--eval_attack_steps", "2", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--pooling", pooling,
        ]
    )
    assert {"eval_accuracy", "eval_robust_accuracy", "train_loss"} <= set(metrics)
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == model_type and config["architectures"] == [class_name]
    assert config["image_size"] == 32 and len(config["id2label"]) == 10
    assert (output / "preprocessor_config.json").is_file()
    recorded = yaml.safe_load((output / "recipe_config.yaml").read_text())
    assert recorded["model_name_or_path"] == str(tmp_path / "pretrained") and recorded["adversarial_method"] == "pgd"

    # the training-time evaluation preprocessing, applied in this process
    from transformers import AutoModelForImageClassification

    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images = list(load_image_dataset("builtin:digits", "test", max_samples=12)["image"])
    for index, image in enumerate(images):
        image.save(images_dir / f"{index:02d}.png")
    classifier = AutoModelForImageClassification.from_pretrained(output).eval()
    assert type(classifier).__name__ == class_name
    transform = eval_transform(32)
    with torch.no_grad():
        probs = classifier(torch.stack([transform(image) for image in images])).logits.softmax(-1)
    expected = [(classifier.config.id2label[int(i)], float(p)) for p, i in zip(*probs.max(-1))]

    result = subprocess.run(
        [sys.executable, "-c", PIPELINE_SCRIPT, str(output), str(images_dir)],
        capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (_, score), (_, want) in zip(got, expected):
        assert abs(score - want) < 1e-4


def test_recipe_trains_with_singh_et_al_heavy_augmentation(tmp_path):
    """RandAugment + random erasing in the data pipeline, Mixup/CutMix + APGD-AT in the step, recorded in the config."""
    output = tmp_path / "heavy"
    metrics = load_recipe().main(
        [
            "--model_name_or_path", "scratch", "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2",
            "--patch_size", "8", "--image_size", "32", "--output_dir", str(output), "--max_train_samples", "32", "--validation_split_size", "none",
            "--per_device_train_batch_size", "16", "--num_train_epochs", "1", "--eval_strategy", "no", "--do_eval", "false",
            "--adversarial_method", "apgd", "--attack_steps", "2", "--attack_random_start", "false",
            "--rand_augment", "rand-m9-mstd0.5-inc1", "--random_erasing", "0.25",
            "--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--label_smoothing_factor", "0.1",
            "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
        ]
    )
    assert math.isfinite(metrics["train_loss"])
    recorded = yaml.safe_load((output / "recipe_config.yaml").read_text())
    assert recorded["rand_augment"] == "rand-m9-mstd0.5-inc1" and recorded["random_erasing"] == 0.25
    assert (recorded["mixup_alpha"], recorded["cutmix_alpha"]) == (0.8, 1.0)
