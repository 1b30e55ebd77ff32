"""`per_sample.npz`: every image's outcome under every attack of one evaluation, and its typed reader.

The accuracies in `robustness.json` are means of these arrays. They are what paired statistics need
(two models on the same images disagree on a few of them; the tests count those) and what lets anyone
re-check a published number image by image. No pixels are stored, only indices into the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PerSampleResults"]

_ARRAYS = ("attacks", "correct", "predictions", "labels", "indices", "worst_case", "worst_case_attacks")


@dataclass(frozen=True)
class PerSampleResults:
    """Per image (in evaluation order): its position in the split, its label, and per attack whether it was
    still classified correctly and what was predicted (-1 where the attack did not run: clean-misclassified
    points). `worst_case[i]`: correct under every one of `worst_case_attacks`."""

    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray  # int64 (N,): positions in the evaluated split
    correct: dict[str, np.ndarray]  # attack -> bool (N,)
    predictions: dict[str, np.ndarray]  # attack -> int64 (N,)
    worst_case: np.ndarray  # bool (N,)
    worst_case_attacks: list[str]

    @property
    def num_samples(self) -> int:
        return int(self.labels.size)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        names = list(self.correct)
        n = self.num_samples
        np.savez_compressed(
            path,
            attacks=np.array(names, dtype=str),
            correct=np.stack([self.correct[a] for a in names]) if names else np.zeros((0, n), bool),
            predictions=np.stack([self.predictions[a] for a in names]) if names else np.zeros((0, n), np.int64),
            labels=self.labels,
            indices=self.indices,
            worst_case=self.worst_case,
            worst_case_attacks=np.array(self.worst_case_attacks, dtype=str),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PerSampleResults:
        """Read `per_sample.npz` back; a file that is not one is an error naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No per-sample results at {str(path)!r}: the evaluation that wrote the report "
                                    "also writes them; rerun it (recipes/evaluate.py) to regenerate both.")
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise ValueError(f"{str(path)!r} is not a per-sample results file: it lacks {', '.join(missing)}. "
                                 "Rerun the evaluation (recipes/evaluate.py) to regenerate it.")
            names = [str(n) for n in data["attacks"]]
            return cls(
                labels=data["labels"],
                indices=data["indices"],
                correct={n: data["correct"][i].astype(bool) for i, n in enumerate(names)},
                predictions={n: data["predictions"][i] for i, n in enumerate(names)},
                worst_case=data["worst_case"].astype(bool),
                worst_case_attacks=[str(n) for n in data["worst_case_attacks"]],
            )
