"""No work is lost: a finished run is never trained over, an unfinished one continues from its last
checkpoint (bit for bit, even in the middle of an epoch), and Ctrl-C says how to go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mimir_hf.cli import INTERRUPTED_EXIT_CODE
from mimir_hf.pretraining import MimirTrainingArguments
from mimir_hf.training import last_complete_checkpoint
from mimir_hf.training.output_dir import prepare_output_dir

REPO = Path(__file__).resolve().parents[1]
# The quickstart recipe at a tiny size: 64 digits in batches of 8 (8 steps per epoch), a checkpoint every
# 3 steps, so that every checkpoint but the last lies in the middle of an epoch.
TINY_PRETRAIN = [
    "--max_train_samples", "64", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
    "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2",
    "--save_strategy", "steps", "--save_steps", "3", "--save_total_limit", "2", "--logging_steps", "1",
    "--num_preview_images", "0", "--report_to", "none", "--disable_tqdm", "true",
]
# The same recipe, with every training step slowed down so that a kill lands between two checkpoints.
SLOW_RECIPE = """
import runpy, sys, time
from transformers import TrainerCallback
import mimir_hf.pretraining.run as run

class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.4)

class SlowTrainer(run.MimirTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(Slow())

run.MimirTrainer = SlowTrainer
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MIMIR_DEBUG", "ACCELERATE_DEBUG_MODE", "RANK")}
    return dict(env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _pretrain(output_dir: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "recipes" / "pretrain.py"), "--output_dir", str(output_dir), *TINY_PRETRAIN, *extra]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600, cwd=cwd)


def _start_slow_pretraining(output_dir: Path, tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "slow_recipe.py"
    script.write_text(SLOW_RECIPE)
    command = [sys.executable, str(script), str(REPO / "recipes" / "pretrain.py"), "--output_dir", str(output_dir), *TINY_PRETRAIN]
    return subprocess.Popen(command, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_deliverable_ctrl_c)


def _deliverable_ctrl_c() -> None:
    """In the child: SIGINT handled and unblocked, as in a terminal. A disposition or a blocked mask is
    inherited across exec, and the test process's may have been changed by what ran in it before
    (in the full suite a child once ignored the signal and trained to the end)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before {path.name} was written: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def _args(output_dir: Path, **overrides) -> MimirTrainingArguments:
    return MimirTrainingArguments(output_dir=str(output_dir), use_cpu=True, report_to="none", **overrides)


def _checkpoint(output_dir: Path, step: int, complete: bool = True) -> Path:
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
    return folder


def test_a_finished_run_or_a_foreign_folder_is_refused_unless_overwritten(tmp_path):
    finished = tmp_path / "finished"
    _checkpoint(finished, 10)
    (finished / "model.safetensors").write_bytes(b"weights")
    (finished / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a finished run.*--overwrite_output_dir"):
        prepare_output_dir(_args(finished))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty.*--overwrite_output_dir"):
        prepare_output_dir(_args(foreign))

    args = _args(finished)
    prepare_output_dir(args, overwrite_output_dir=True)
    assert args.resume_from_checkpoint is None and not (finished / "checkpoint-10").exists()  # no stale checkpoint left


def test_an_unfinished_run_continues_from_its_last_complete_checkpoint(tmp_path, caplog):
    output_dir = tmp_path / "run"
    _checkpoint(output_dir, 3)
    _checkpoint(output_dir, 6, complete=False)  # cut short by a kill: passed over
    (output_dir / "runs").mkdir()
    args = _args(output_dir)
    with caplog.at_level("INFO", logger="mimir_hf"):
        prepare_output_dir(args)
    assert args.resume_from_checkpoint == "last"
    assert last_complete_checkpoint(output_dir) == str(output_dir / "checkpoint-3")
    assert "continuing from" in caplog.text and "checkpoint-3" in caplog.text and "step 3 of 10" in caplog.text

    explicit = _args(output_dir, resume_from_checkpoint=str(output_dir / "checkpoint-3"))
    prepare_output_dir(explicit)  # an explicit choice is the user's
    assert explicit.resume_from_checkpoint == str(output_dir / "checkpoint-3")
    logs_only = tmp_path / "logs-only"
    (logs_only / "runs").mkdir(parents=True)  # what a run interrupted before its first checkpoint leaves
    args = _args(logs_only)
    prepare_output_dir(args)
    assert args.resume_from_checkpoint is None


@pytest.mark.slow
def test_ctrl_c_names_the_last_checkpoint_and_the_same_command_continues(tmp_path):
    output_dir = tmp_path / "run"
    process = _start_slow_pretraining(output_dir, tmp_path)
    _wait_for(output_dir / "checkpoint-3" / "trainer_state.json", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == INTERRUPTED_EXIT_CODE, stderr[-2000:]
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("Interrupted. Last checkpoint: ") and "checkpoint-" in line and "the same command continues" in line

    again = _pretrain(output_dir, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "holds an unfinished run: continuing from" in again.stderr
    refused = _pretrain(output_dir, cwd=tmp_path)  # now finished: the same command must not train over it
    assert refused.returncode == 2 and "already holds a finished run" in refused.stderr


@pytest.mark.slow
def test_a_kill_in_the_middle_of_an_epoch_then_resume_is_bit_identical(tmp_path):
    """The quickstart pretraining (random crops and flips, a random mask, a random attack start) killed
    after a mid-epoch checkpoint and continued by the same command ends with the uninterrupted weights."""
    reference = tmp_path / "reference"
    done = _pretrain(reference, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    process = _start_slow_pretraining(killed, tmp_path)
    _wait_for(killed / "checkpoint-3" / "trainer_state.json", process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    last = last_complete_checkpoint(killed)
    state = json.loads((Path(last) / "trainer_state.json").read_text())
    assert state["global_step"] % 8 != 0, "the kill must land in the middle of an epoch"

    resumed = _pretrain(killed, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs by {(expected[name] - got[name]).abs().max():.3g}"


def test_an_interrupt_leaves_the_signal_handlers_as_it_found_them(tmp_path):
    """In a process that goes on (a notebook, a test run), an interrupted run must not leave Ctrl-C
    ignored: the processes it starts later would inherit the ignored signal."""
    from mimir_hf.training.output_dir import RunInterrupted, stop_on_interrupt

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="Interrupted before the first checkpoint"):
        with stop_on_interrupt(tmp_path):
            raise KeyboardInterrupt
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
