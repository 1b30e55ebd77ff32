"""Trainer hooks for a streamed training set: its own loader, its position saved with every checkpoint
and resumed from there.

Handed an IterableDataset, the stock Trainer gives it to accelerate, which by default reads it on
the main process and sends each other process its slice of every batch (`dispatch_batches`), or
otherwise makes every process read all of it and keep its share: the whole stream is read once on
one process or N times over. An `ImageStream` (`mimir_hf.data.streaming`) deals its shards out to
the processes and DataLoader workers itself, so its `StreamLoader` is used as it is; the training
step moves each batch to the device.

On resume the Trainer fast-forwards the loader past the batches already trained
(`get_resumed_dataloader`, by default accelerate's `skip_first_batches`, which reads them all
again). Here every process instead writes its loader's position into each checkpoint
(`stream_state_<process>.json`, by `StreamStateCallback`) and `get_resumed_dataloader` loads it: the
stream goes on where it was, with nothing read twice or left out. `get_resumed_dataloader` is a
recent Trainer hook (tests/test_transformers_canaries.py checks it); with a transformers whose
Trainer lacks it, resuming a streamed run is refused with that explanation.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import logging

__all__ = ["StreamStateCallback", "StreamingMixin", "read_stream_state", "write_stream_state"]

logger = logging.get_logger(__name__)

STREAM_STATE_FILE = "stream_state_{}.json"


def write_stream_state(checkpoint_dir: str | os.PathLike, process_index: int, state: dict[str, Any]) -> Path:
    """Write one process's stream position into a checkpoint (atomically: a killed save leaves no half file)."""
    path = Path(checkpoint_dir) / STREAM_STATE_FILE.format(process_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state), encoding="utf-8")
    os.replace(partial, path)
    return path


def read_stream_state(checkpoint_dir: str | os.PathLike, process_index: int) -> dict[str, Any] | None:
    """The position `write_stream_state` saved for `process_index`, or None when the checkpoint has none."""
    path = Path(checkpoint_dir) / STREAM_STATE_FILE.format(process_index)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _streaming_module():
    # Loaded only when a stream exists: importing it would pull in `datasets`, which the trainers
    # (and the GPU machine) otherwise do without.
    return sys.modules.get("mimir_hf.data.streaming")


class StreamStateCallback(TrainerCallback):
    """Saves each process's `StreamLoader` position into the checkpoint the Trainer just wrote."""

    def on_save(self, args, state, control, train_dataloader=None, **kwargs):
        streaming = _streaming_module()
        if streaming is not None and isinstance(train_dataloader, streaming.StreamLoader):
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            write_stream_state(folder, args.process_index, train_dataloader.state_dict())


class StreamingMixin:
    """Put before `Trainer` in the bases; only an `ImageStream` training set changes anything."""

    _stream_checkpoint: str | None = None

    def _is_streamed(self) -> bool:
        streaming = _streaming_module()
        return streaming is not None and isinstance(self.train_dataset, streaming.ImageStream)

    def get_train_dataloader(self):
        if not self._is_streamed():
            return super().get_train_dataloader()
        args = self.args  # (the Trainer refuses an unsized training set without max_steps when it is built)
        if args.accelerator_config.dispatch_batches or args.accelerator_config.split_batches:
            raise ValueError(
                "A streamed training set is split over the processes by its shards; leave accelerator_config's "
                "dispatch_batches and split_batches unset."
            )
        per_epoch = [name for name in ("eval_strategy", "save_strategy") if getattr(args, name) == "epoch"]
        if per_epoch:
            logger.warning(
                "With a streamed training set the Trainer's one epoch is the whole run: %s 'epoch' acts once, at the end. "
                "Use 'steps' (with eval_steps / save_steps).", " and ".join(per_epoch),
            )
        if not any(isinstance(callback, StreamStateCallback) for callback in self.callback_handler.callbacks):
            self.add_callback(StreamStateCallback())
        workers = args.dataloader_num_workers
        return self.train_dataset.loader(
            self._train_batch_size,
            self.data_collator,
            num_processes=args.world_size,
            process_index=args.process_index,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers else None,
        )

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """The stock `train`, remembering which checkpoint a streamed run resumes from."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:  # as the Trainer resolves it
            checkpoint = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        self._stream_checkpoint = os.fspath(checkpoint) if checkpoint not in (None, False) else None
        if self._stream_checkpoint and self._is_streamed() and not hasattr(Trainer, "get_resumed_dataloader"):
            raise ValueError(
                "Resuming a streamed run needs Trainer.get_resumed_dataloader, which this transformers lacks (it would "
                "re-read every batch already trained); upgrade transformers."
            )
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        streaming = _streaming_module()
        if streaming is None or not isinstance(dataloader, streaming.StreamLoader):
            return super().get_resumed_dataloader(dataloader, num_batches)
        state = read_stream_state(self._stream_checkpoint, self.args.process_index) if self._stream_checkpoint else None
        if state is None:
            logger.warning(
                "Resuming at step %d from %s, which holds no stream position: the stream starts again from its "
                "beginning.", self.state.global_step, self._stream_checkpoint,
            )
            return dataloader
        dataloader.load_state_dict(state)
        logger.info("Resumed the training stream where %s left it (%d batches read).", self._stream_checkpoint, state["batches"])
        return dataloader
