"""Per-batch evaluation state on disk: what makes an interrupted evaluation resumable.

A full AutoAttack run takes GPU-hours; a preempted job or an out-of-memory kill must not throw them
away. The evaluation runs batch by batch (every attack on one batch, then the next batch), and each
finished batch is written here as one small JSON file, atomically (written aside, then renamed), so
that a kill at any instant leaves either the whole batch or nothing. Rerunning the same command reads
the finished batches back and attacks only the rest; every batch has its own seed, so the resumed
report equals an uninterrupted one.

A manifest holds the fingerprint of the evaluation (model, data, indices, attacks, seeds, batch size):
state written by a different evaluation is refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .attack_specs import AttackSpec
    from .streaming import EvaluationData

__all__ = [
    "STATE_DIRNAME",
    "BatchRecord",
    "EvaluationState",
    "StateMismatchError",
    "batch_seed",
    "fingerprint",
    "state_description",
]

STATE_DIRNAME = "eval_state"
_MANIFEST = "manifest.json"


class StateMismatchError(ValueError):
    """The state directory belongs to a different evaluation."""


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch's random starts: independent of which process runs the batch, or when."""
    return int(np.random.SeedSequence((int(seed), int(batch_index))).generate_state(1, dtype=np.uint64)[0] >> 1)


def fingerprint(description: dict[str, Any]) -> str:
    """A stable hash of everything that decides the per-batch results."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class BatchRecord:
    """Everything one batch contributes to the report: per attack, per-sample outcomes and costs."""

    index: int
    attacks: dict[str, dict[str, Any]]  # name -> {correct, predictions, max_perturbation, seconds, details}
    zero_gradient: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "attacks": self.attacks, "zero_gradient": self.zero_gradient}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        return cls(index=int(data["index"]), attacks=data["attacks"], zero_gradient=list(data["zero_gradient"]))


class EvaluationState:
    """The batch files of one evaluation under `<output_dir>/eval_state/`."""

    def __init__(
        self, directory: str | Path, description: dict[str, Any], *, resume: bool = True, owned: Sequence[int] | None = None
    ) -> None:
        """`owned`: the batches this process evaluates; `resume=False` discards only those (under sharding the
        other processes' files are theirs to discard), or every batch file when None."""
        self.directory = Path(directory)
        self.key = fingerprint(description)
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / _MANIFEST
        if manifest.exists() and resume:
            try:
                stored = json.loads(manifest.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                stored = {}
            if stored.get("fingerprint") != self.key:
                differing = sorted(
                    k for k in set(description) | set(stored.get("description", {}))
                    if json.dumps(description.get(k), sort_keys=True, default=str)
                    != json.dumps(stored.get("description", {}).get(k), sort_keys=True, default=str)
                )
                raise StateMismatchError(
                    f"{str(self.directory)!r} holds the state of a different evaluation (it differs in: "
                    f"{', '.join(differing) or 'unknown fields'}). Use another --output_dir, or pass --resume false "
                    "to discard that state and start over."
                )
        elif not resume:
            paths = self.directory.glob("batch_*.json") if owned is None else (self.path(i) for i in owned)
            for path in paths:
                path.unlink(missing_ok=True)
        _atomic_write(manifest, {"fingerprint": self.key, "description": description})

    def path(self, index: int) -> Path:
        return self.directory / f"batch_{index:07d}.json"

    def load(self, index: int) -> BatchRecord | None:
        """The finished batch `index`, or None (never written, or written by a process killed mid-write)."""
        path = self.path(index)
        if not path.exists():
            return None
        try:
            return BatchRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError):
            return None

    def save(self, record: BatchRecord) -> None:
        _atomic_write(self.path(record.index), record.to_dict())

    def finished(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.directory.glob("batch_*.json"))


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def state_description(
    model_name: str, weights: str, data: EvaluationData, split: str, specs: list[AttackSpec], batch_size: int, seed: int
) -> dict[str, Any]:
    """What decides every batch's result: a resumed run must match it exactly."""
    return {
        "model": model_name,
        "weights": weights,
        "dataset": data.source_name,
        "split": split,
        "num_samples": len(data),
        "indices": fingerprint({"indices": data.indices.tolist(), "labels": data.labels.tolist()}),
        "batch_size": batch_size,
        "seed": seed,
        "attacks": [
            {
                "name": s.name, "kind": s.kind, "epsilon": s.epsilon, "steps": s.steps, "step_size": s.step_size,
                "restarts": s.restarts, "seed": s.seed, "library": s.library, "norm": s.norm,
                "options": dict(s.options),
            }
            for s in specs
        ],
    }
