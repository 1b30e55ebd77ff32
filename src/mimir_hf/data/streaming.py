"""Training images streamed from shards: split over processes and workers, shuffled, resumable exactly.

`ImageStream` reads a `ShardedStream` as it goes and yields the rows the trainers take
(`{"pixel_values", "labels"}`, decoded and augmented on the fly by the run's training transform).
`StreamLoader` is the DataLoader over it that the trainers use; its `state_dict()` says where each
reader stands after the batches it has handed out, and a loader given that state goes on from
there, so a resumed run reads what an uninterrupted one would have read, in the same order.

How the images are dealt out. Every (process, DataLoader worker) pair is one reader of its own, a
*substream*; there are `num_processes x max(1, num_workers)` of them. When the stream has at least
that many shards, each substream reads whole shards (in each pass the shards are permuted with
`numpy.random.default_rng([seed, pass])` and substream s takes every S-th of them); with fewer
shards, every substream reads every shard and keeps one image in S (`datasets.distributed.
split_dataset_by_node`). Either way the substreams read disjoint images within a pass. A substream
that reaches the end of its shards starts its next pass (new shard order, new shuffle) by itself,
so a stream never runs dry and processes never wait for each other's data: training length is
`max_steps`, there are no epochs to count.

Why not `IterableDataset.shuffle(buffer_size)`: `datasets` does not save its buffer, so a resumed
stream refills it from the shards and the images that were in it at the checkpoint are never seen.
Here a substream reads `buffer_size` images into a window, permutes the window with a generator
seeded by (seed, pass, substream, window) and yields it before reading the next. Its state is where
the window began (the shard and `datasets`' own `state_dict()` inside that shard) and how many of its
images were yielded; a resumed substream re-reads that one window without decoding it and yields the
rest. Each image's augmentation draws come from a seed of its own (same key plus its place in the
window), so a resumed run also augments exactly as the uninterrupted one would have.

Shuffling is therefore as good as the shards are fine: images move within a window of
`buffer_size`, windows come from shards in a new random order each pass. Parquet is resharded to
row groups (100 images each when `datasets` wrote it), an image folder's index into up to 1024
slices of its (seeded) shuffled file list.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Image, IterableDataset
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader, get_worker_info

from .shards import ShardedStream
from .transforms import ImageInput

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "ImageStream", "StreamLoader", "check_max_steps"]

DEFAULT_SHUFFLE_BUFFER = 1000
_STATE = "_stream_state"  # the key a row carries its substream's position under, from the worker to StreamLoader
_FRESH = {"pass": 0, "window": 0, "shard": 0, "shard_state": None, "taken": 0}


def check_max_steps(max_steps: int) -> None:
    """A stream has no length, so the run's length must be given in steps."""
    if max_steps is None or max_steps <= 0:
        raise ValueError("Streaming (`streaming: true`) needs `max_steps`: an unsized stream has no epochs to count.")


class _ShardReader:
    """Raw rows of a list of shards, one at a time, from a position: (shard k, `datasets` state in it)."""

    def __init__(self, open_shard: Callable[[int], IterableDataset], count: int, shard: int, shard_state: dict | None):
        self.open_shard, self.count, self.shard, self.pending = open_shard, count, shard, shard_state
        self.current: IterableDataset | None = None
        self.rows: Iterator[dict] | None = None

    def position(self) -> tuple[int, dict | None]:
        """Where the next row comes from, as `read` would resume it."""
        if self.current is None:
            return self.shard, self.pending
        return self.shard, self.current.state_dict()

    def read(self, count: int) -> list[dict]:
        rows: list[dict] = []
        while len(rows) < count and self.shard < self.count:
            if self.rows is None:
                self.current = self.open_shard(self.shard)
                if self.pending is not None:
                    self.current.load_state_dict(self.pending)
                    self.pending = None
                # `iter(batch_size=1)`, not `for row in shard`: inside a DataLoader worker the latter splits the
                # shard again among the workers, and the substreams are already split.
                self.rows = self.current.iter(batch_size=1)
            try:
                batch = next(self.rows)
            except StopIteration:
                self.shard, self.current, self.rows = self.shard + 1, None, None
                continue
            rows.append({name: values[0] for name, values in batch.items()})
        return rows


class ImageStream(torch.utils.data.IterableDataset):
    """Training rows `{"pixel_values", "labels"}` from `shards`, read as they go (module docstring).

    `transform` maps a PIL image to a float CHW tensor in [0, 1] (the run's training augmentation);
    `buffer_size` is the shuffle window of each substream (so each DataLoader worker holds up to that
    many undecoded images). Iterate it through `loader(...)`: a plain iteration reads substream 0 of 1.
    """

    def __init__(self, shards: ShardedStream, transform: Callable[[ImageInput], torch.Tensor], buffer_size: int = DEFAULT_SHUFFLE_BUFFER):
        if buffer_size < 1:
            raise ValueError(f"The shuffle buffer must hold at least one image; got {buffer_size}.")
        self.shards, self.transform, self.buffer_size = shards, transform, int(buffer_size)
        self.seed, self.process_index, self.num_processes = 0, 0, 1
        self.start_states: Mapping[int, dict] = {}  # substream -> where it resumes (StreamLoader sets these)
        self.worker_offset = 0  # worker w reads substream (w + offset) mod workers of this process

    def loader(self, batch_size: int, collate_fn: Callable, *, num_processes: int = 1, process_index: int = 0,
               seed: int = 0, num_workers: int = 0, **dataloader_options: Any) -> "StreamLoader":
        """The DataLoader for process `process_index` of `num_processes` (see `StreamLoader`)."""
        return StreamLoader(self, batch_size, collate_fn, num_processes=num_processes, process_index=process_index,
                            seed=seed, num_workers=num_workers, **dataloader_options)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        substream = self.process_index * workers + (worker + self.worker_offset) % workers
        yield from self._rows(substream, self.num_processes * workers, self.start_states.get(substream))

    def _pass_shards(self, pass_index: int, substream: int, total: int) -> tuple[list[int], bool]:
        """(shards this substream reads in this pass, whether it keeps only one image in `total` of each)."""
        shards = self.shards.training_shards()
        order = [shards[i] for i in np.random.default_rng([self.seed, pass_index]).permutation(len(shards))]
        if len(order) >= total:
            return order[substream::total], False
        return order, True

    def _rows(self, substream: int, total: int, state: dict | None) -> Iterator[dict[str, Any]]:
        state = dict(state or _FRESH)
        while True:
            pass_index, window, taken = state["pass"], state["window"], state["taken"]
            from_start = state["shard"] == 0 and state["shard_state"] is None and window == 0
            shards, split = self._pass_shards(pass_index, substream, total)

            def open_shard(k: int, shards=shards, split=split) -> IterableDataset:
                shard = self.shards.shard(shards[k])
                return split_dataset_by_node(shard, rank=substream, world_size=total) if split else shard

            reader = _ShardReader(open_shard, len(shards), state["shard"], state["shard_state"])
            yielded = False
            while True:
                start_shard, start_state = reader.position()
                rows = reader.read(self.buffer_size)
                if not rows:
                    break
                key = [self.seed, pass_index, substream, window]
                order = np.random.default_rng(key).permutation(len(rows))
                seeds = np.random.SeedSequence(key).generate_state(len(rows))
                for place in range(taken, len(rows)):
                    row = self._row(rows[order[place]], int(seeds[order[place]]))
                    row[_STATE] = {"substream": substream, "pass": pass_index, "window": window,
                                   "shard": start_shard, "shard_state": start_state, "taken": place + 1}
                    yielded = True
                    yield row
                window, taken = window + 1, 0
            if from_start and not yielded:
                raise ValueError(
                    f"Reader {substream} of {total} (processes x DataLoader workers) found no training images: the "
                    "stream holds fewer images than readers. Use fewer processes or workers, or more data."
                )
            state = dict(_FRESH, **{"pass": pass_index + 1})

    def _row(self, raw: dict[str, Any], seed: int) -> dict[str, Any]:
        image = Image(mode="RGB").decode_example(raw["image"])
        # The augmentation draws from torch's CPU generator; seeding it per image (and putting the run's
        # state back after) makes the pixels a function of the image's place in the stream.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            row = {"pixel_values": self.transform(image)}
        if raw.get("label") is not None:
            row["labels"] = int(raw["label"])
        return row


class _CollateWithState:
    """Collate a batch of one substream's rows and pass on that substream's position after its last row."""

    def __init__(self, collate_fn: Callable):
        self.collate_fn = collate_fn

    def __call__(self, rows: list[dict[str, Any]]) -> tuple[Any, dict]:
        state = rows[-1][_STATE]
        return self.collate_fn([{k: v for k, v in row.items() if k != _STATE} for row in rows]), state


class StreamLoader:
    """Batches of an `ImageStream` for one process, and where its substreams stand after them.

    A torch DataLoader over the stream, rebuilt at each `iter()` from the loaded state (workers are
    never persistent: each must start from its substream's position). Batches come from the workers
    in turn, so the state also records how many were handed out: a resumed loader gives its first
    batch to the worker whose turn it was. `state_dict()` is plain JSON-able data.
    """

    def __init__(self, stream: ImageStream, batch_size: int, collate_fn: Callable, *, num_processes: int = 1,
                 process_index: int = 0, seed: int = 0, num_workers: int = 0, **dataloader_options: Any):
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index must lie in [0, {num_processes}), got {process_index}.")
        self.stream, self.batch_size, self.collate_fn = stream, int(batch_size), collate_fn
        self.num_processes, self.process_index, self.seed = int(num_processes), int(process_index), int(seed)
        self.num_workers = int(num_workers)
        self.dataloader_options = {k: v for k, v in dataloader_options.items() if v is not None}
        self.substreams: dict[int, dict] = {}
        self.batches = 0

    def __iter__(self) -> Iterator[Any]:
        stream = copy.copy(self.stream)
        stream.seed, stream.process_index, stream.num_processes = self.seed, self.process_index, self.num_processes
        stream.start_states = dict(self.substreams)
        stream.worker_offset = self.batches % max(1, self.num_workers)
        loader = DataLoader(stream, batch_size=self.batch_size, collate_fn=_CollateWithState(self.collate_fn),
                            num_workers=self.num_workers, persistent_workers=False, **self.dataloader_options)
        for batch, state in loader:
            self.substreams[state["substream"]] = state
            self.batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_processes": self.num_processes, "process_index": self.process_index, "num_workers": self.num_workers,
            "seed": self.seed, "batches": self.batches,
            "substreams": {str(index): state for index, state in sorted(self.substreams.items())},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from `state` (a `state_dict()` of a loader of the same process, processes and workers)."""
        for name in ("num_processes", "process_index", "num_workers"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"The saved stream position was taken with {name}={state[name]}, this run has {getattr(self, name)}: "
                    "resume with the same number of processes and dataloader_num_workers (or start the data afresh "
                    "with ignore_data_skip)."
                )
        if state["seed"] != self.seed:
            raise ValueError(f"The saved stream position was taken with seed {state['seed']}, this run has {self.seed}.")
        self.substreams = {int(index): dict(value) for index, value in state["substreams"].items()}
        self.batches = int(state["batches"])
