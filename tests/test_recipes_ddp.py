"""The shipped recipes under the shipped 2-process CPU Accelerate config really train data-parallel.

Each recipe runs unchanged under `accelerate launch --config_file recipes/accelerate_configs/cpu_ddp_2proc.yaml`;
a small probe in front of it only records what each rank saw (every training image is one flat grey
level, its index, so a batch tells which images a rank read) and the parameters it ended with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DDP_CONFIG = REPO / "recipes" / "accelerate_configs" / "cpu_ddp_2proc.yaml"
NUM_TRAIN = 32

PROBE = textwrap.dedent(
    """
    import os, runpy, sys
    import torch
    import mimir_hf.finetuning.run as finetune_run
    import mimir_hf.pretraining.run as pretrain_run

    recipe, out = sys.argv[1], sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    seen = []

    def recording(collate):
        def collate_and_record(rows):
            seen.extend(int(round(float(row["pixel_values"].max()) * 255)) for row in rows)
            return collate(rows)
        return collate_and_record

    def probed(trainer_class):
        class Probed(trainer_class):
            def train(self, *args, **kwargs):
                result = super().train(*args, **kwargs)
                params = torch.cat([p.detach().flatten() for p in self.accelerator.unwrap_model(self.model).parameters()])
                torch.save({"params": params, "world_size": self.args.world_size, "seen": list(seen)},
                           os.path.join(out, f"probe-{rank}.pt"))
                return result
        return Probed

    for module, name in ((pretrain_run, "MimirTrainer"), (finetune_run, "AdversarialTrainer")):
        module.collate_images = recording(module.collate_images)
        setattr(module, name, probed(getattr(module, name)))
    sys.argv = [recipe, *sys.argv[3:]]
    runpy.run_path(recipe, run_name="__main__")
    """
)


def _write_data(folder: Path) -> Path:
    """Train image i is a flat grey level i + 1 (1..32); test images are level 200 (never in training)."""
    folder.mkdir()
    levels = np.arange(1, NUM_TRAIN + 1, dtype=np.uint8)
    train = np.broadcast_to(levels[:, None, None, None], (NUM_TRAIN, 16, 16, 3)).copy()
    np.savez(folder / "train.npz", images=train, labels=np.arange(NUM_TRAIN) % 4)
    test = np.full((8, 16, 16, 3), 200, dtype=np.uint8)
    np.savez(folder / "test.npz", images=test, labels=np.arange(8) % 4)
    return folder


def _launch(recipe: str, out: Path, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
               str(probe), str(REPO / "recipes" / recipe), str(out), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _check_data_parallel(result: subprocess.CompletedProcess, out: Path, epochs: int) -> None:
    probes = [torch.load(out / f"probe-{rank}.pt") for rank in (0, 1)]
    assert [p["world_size"] for p in probes] == [2, 2]
    seen = [[level for level in p["seen"] if level <= NUM_TRAIN] for p in probes]
    per_epoch = NUM_TRAIN // 2
    for epoch in range(epochs):
        shards = [set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in seen]
        assert len(shards[0]) == len(shards[1]) == per_epoch  # each rank reads half of the data ...
        assert not shards[0] & shards[1]  # ... not the other's half
        assert shards[0] | shards[1] == set(range(1, NUM_TRAIN + 1))
    torch.testing.assert_close(probes[0]["params"], probes[1]["params"], rtol=0, atol=0)
    # one writer: the main process alone reports metrics and writes TensorBoard events
    assert result.stdout.count("***** train metrics *****") == 1
    writers = {path.name.split(".")[-2] for path in out.rglob("events.out.tfevents.*")}  # ...<host>.<pid>.<n>
    assert len(writers) == 1
    assert "NOT_PARALLEL" not in result.stderr and "parallel_mode != ParallelMode.DISTRIBUTED" not in result.stderr


@pytest.mark.slow
def test_pretrain_and_finetune_recipes_run_ddp_under_the_cpu_config(tmp_path):
    data = _write_data(tmp_path / "data")
    pretrain_out = tmp_path / "pretrain"
    result = _launch("pretrain.py", pretrain_out, [
        "--dataset", str(data), "--output_dir", str(pretrain_out), "--image_size", "16", "--patch_size", "4",
        "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2",
        "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--num_preview_images", "2",
        "--logging_steps", "1", "--report_to", "tensorboard",
        "--seed", "0",
    ], tmp_path)
    _check_data_parallel(result, pretrain_out, epochs=1)
    assert (pretrain_out / "model.safetensors").is_file() and (pretrain_out / "reconstructions.png").is_file()
    assert "DDP on CPU" in result.stderr

    finetune_out = tmp_path / "finetune"
    result = _launch("finetune.py", finetune_out, [
        "--model_name_or_path", str(pretrain_out), "--dataset", str(data), "--output_dir", str(finetune_out),
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--num_train_epochs", "2",
        "--attack_steps", "1", "--eval_attack_steps", "1", "--eval_strategy", "epoch", "--save_strategy", "epoch",
        "--save_total_limit", "1", "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_robust_accuracy",
        "--warmup_epochs", "0", "--logging_steps", "1", "--report_to", "tensorboard", "--validation_split_size", "none",
        "--seed", "0",
    ], tmp_path)
    _check_data_parallel(result, finetune_out, epochs=2)
    assert (finetune_out / "model.safetensors").is_file() and (finetune_out / "preprocessor_config.json").is_file()
    # the decoder of the pretraining checkpoint is dropped with one line, not a LOAD REPORT per rank
    assert "LOAD REPORT" not in result.stderr and "decoder is not part of a classifier" in result.stderr
