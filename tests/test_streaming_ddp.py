"""Both recipes stream local parquet shards on 2 gloo processes, and a run killed mid-stream resumes exactly.

Each stage runs twice under the shipped 2-process CPU config: once until a probe holds it after
step 7 and the test SIGKILLs the launcher and both ranks (the last checkpoint is step 6), then again
with `--resume_from_checkpoint last` to step 8. A probe records each rank's training batches (image
i is one flat grey level i). What an uninterrupted run reads is the stream itself, built here the
way the recipes build it: the killed run must have read exactly that up to its kill, the resumed
run exactly its continuation from the checkpoint, the two ranks disjoint images, and no rank a
held-out image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mimir_hf.data import DataArguments, collate_images, eval_transform, hold_out_validation
from stream_shards import image_ids, write_level_shards

REPO = Path(__file__).resolve().parents[1]
DDP_CONFIG = REPO / "recipes" / "accelerate_configs" / "cpu_ddp_2proc.yaml"
BATCH, STEPS, SAVE_EVERY, KILL_AFTER, HELD_OUT = 4, 8, 3, 7, 8

PROBE = textwrap.dedent(
    """
    import json, os, runpy, sys, time
    from transformers import TrainerCallback
    import mimir_hf.finetuning.run as finetune_run
    import mimir_hf.pretraining.run as pretrain_run

    recipe, record, hold_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rank = int(os.environ.get("RANK", "0"))
    os.makedirs(record, exist_ok=True)
    with open(os.path.join(record, f"pid-{rank}"), "w") as f:
        f.write(str(os.getpid()))
    seen = open(os.path.join(record, f"seen-{rank}.jsonl"), "a")

    class Hold(TrainerCallback):  # wait to be killed once step `hold_after` is trained
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == hold_after:
                open(os.path.join(record, f"held-{rank}"), "w").close()
                time.sleep(600)

    def probed(trainer_class):
        class Probed(trainer_class):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                if hold_after > 0:
                    self.add_callback(Hold())

            def training_step(self, model, inputs, *args, **kwargs):
                levels = inputs["pixel_values"].amax(dim=(1, 2, 3)).mul(255).round().int().tolist()
                seen.write(json.dumps(levels) + "\\n")
                seen.flush()
                return super().training_step(model, inputs, *args, **kwargs)
        return Probed

    for module, name in ((pretrain_run, "MimirTrainer"), (finetune_run, "AdversarialTrainer")):
        setattr(module, name, probed(getattr(module, name)))
    sys.argv = [recipe, *sys.argv[4:]]
    runpy.run_path(recipe, run_name="__main__")
    """
)


def _launch(recipe: str, record: Path, args: list[str], tmp_path: Path, hold_after: int = 0) -> subprocess.Popen:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG), str(probe),
               str(REPO / "recipes" / recipe), str(record), str(hold_after), *args]
    log = open(tmp_path / f"{record.name}.log", "w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)


def _kill_when_held(process: subprocess.Popen, record: Path, tmp_path: Path) -> None:
    """SIGKILL the launcher and both ranks (each rank runs in a session of its own) once both wait after the step."""
    deadline = time.monotonic() + 600
    while not all((record / f"held-{rank}").exists() for rank in (0, 1)):
        assert process.poll() is None, (tmp_path / f"{record.name}.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "the run never reached the kill step"
        time.sleep(0.5)
    for rank in (0, 1):
        os.kill(int((record / f"pid-{rank}").read_text()), signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _finish(process: subprocess.Popen, record: Path, tmp_path: Path) -> str:
    assert process.wait(timeout=600) == 0, (tmp_path / f"{record.name}.log").read_text()[-4000:]
    return (tmp_path / f"{record.name}.log").read_text()


def _seen(record: Path, rank: int) -> list[list[int]]:
    return [json.loads(line) for line in (record / f"seen-{rank}.jsonl").read_text().splitlines()]


def _expected(folder: Path, held_out: int | None) -> tuple[list[list[list[int]]], set[int]]:
    """Each rank's batches in an uninterrupted run (the stream the recipes build), and the held-out images."""
    data_args = DataArguments(dataset=str(folder), streaming=True, shuffle_buffer_size=8)
    train_data, held = data_args.training_stream(max_steps=STEPS), set()
    if held_out:
        train_data, validation = hold_out_validation(train_data, held_out, seed=0)
        held = {int(image.getextrema()[0][1]) for image in validation["image"]}
    stream = data_args.training_dataset(train_data, 16)
    batches = []
    for rank in (0, 1):
        loader = stream.loader(BATCH, collate_images, num_processes=2, process_index=rank, seed=0)
        rank_batches = []
        for batch in loader:
            rank_batches.append(image_ids(batch["pixel_values"]))
            if len(rank_batches) == STEPS:
                break
        batches.append(rank_batches)
    return batches, held


STAGES = {
    "pretrain.py": ["--image_size", "16", "--patch_size", "4", "--hidden_size", "32", "--num_hidden_layers", "2",
                    "--num_attention_heads", "2", "--num_preview_images", "0"],
    "finetune.py": ["--model_name_or_path", "scratch", "--image_size", "16", "--patch_size", "4", "--hidden_size", "32",
                    "--num_hidden_layers", "2", "--num_attention_heads", "2", "--attack_steps", "1", "--eval_attack_steps", "1",
                    "--eval_strategy", "no", "--per_device_eval_batch_size", "8"],
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(STAGES))
def test_a_killed_streamed_ddp_run_resumes_with_the_images_of_an_uninterrupted_one(tmp_path, recipe):
    folder = write_level_shards(tmp_path / "shards", 96, 8)
    out = tmp_path / "out"
    common = ["--dataset", str(folder), "--streaming", "true", "--shuffle_buffer_size", "8", "--output_dir", str(out),
              "--per_device_train_batch_size", str(BATCH), "--max_steps", str(STEPS), "--save_strategy", "steps",
              "--save_steps", str(SAVE_EVERY), "--save_total_limit", "2", "--validation_split_size", str(HELD_OUT),
              "--dataloader_num_workers", "0", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
              "--seed", "0", *STAGES[recipe]]
    _kill_when_held(_launch(recipe, tmp_path / "killed", common, tmp_path, hold_after=KILL_AFTER), tmp_path / "killed", tmp_path)
    checkpoint = (KILL_AFTER // SAVE_EVERY) * SAVE_EVERY
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in range(SAVE_EVERY, checkpoint + 1, SAVE_EVERY)]
    assert not (out / "model.safetensors").exists()
    log = _finish(_launch(recipe, tmp_path / "resumed", [*common, "--resume_from_checkpoint", "last"], tmp_path),
                  tmp_path / "resumed", tmp_path)
    assert (out / "model.safetensors").is_file() and "Resumed the training stream" in log

    expected, held = _expected(folder, HELD_OUT)
    assert len(held) == HELD_OUT
    for rank in (0, 1):
        killed, resumed = _seen(tmp_path / "killed", rank), _seen(tmp_path / "resumed", rank)
        assert killed[:KILL_AFTER] == expected[rank][:KILL_AFTER]  # the recipe reads the stream as built here
        assert resumed == expected[rank][checkpoint:]  # and goes on from the checkpoint, nothing repeated or left out
        trained = [i for batch in killed[:checkpoint] + resumed for i in batch]
        assert sorted(trained) == sorted(i for batch in expected[rank] for i in batch)
    ranks = [{i for batch in expected[rank] for i in batch} for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == STEPS * BATCH and not ranks[0] & ranks[1]  # disjoint images per process
    assert not (ranks[0] | ranks[1]) & held  # held-out validation images are never trained on
