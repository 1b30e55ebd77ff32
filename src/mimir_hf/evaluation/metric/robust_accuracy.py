"""Robust accuracy as a local `evaluate` module (loads offline: `evaluate.load(<path to this file>)`).

Each sample contributes its true label and the labels the model predicted for it — one prediction
(an accuracy under one attack) or one per attack (clean, PGD, AutoAttack, ...). A sample counts as
robust only if *every* prediction is correct: the worst case over the attacks, per sample.

This file is loaded by `evaluate` on its own (copied into the modules cache), so it imports
nothing from mimir_hf.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Robust accuracy: the fraction of samples that stay correctly classified under every attack given
(per-sample worst case). With one prediction per sample it is plain accuracy under that attack.
Pass `attack_names` to also get the accuracy under each attack separately.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]` or `list[list[int]]`): per sample, the predicted label, or the predicted
        labels under each attack (the same number and order of attacks for every sample).
    references (`list[int]`): the true labels.
    attack_names (`list[str]`, optional): names of the attacks, in the order of the inner lists.
Returns:
    robust_accuracy (`float`): fraction of samples correct under every attack.
    num_samples (`int`): how many samples were scored.
    accuracy/<attack> (`float`): per-attack accuracy, when `attack_names` is given.
Examples:
    >>> metric = evaluate.load("path/to/robust_accuracy.py")
    >>> metric.compute(predictions=[[3, 3], [1, 2]], references=[3, 1], attack_names=["clean", "pgd-20"])
    {'robust_accuracy': 0.5, 'num_samples': 2, 'accuracy/clean': 1.0, 'accuracy/pgd-20': 0.5}
"""

_CITATION = """
@inproceedings{croce2020reliable,
  title={Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks},
  author={Croce, Francesco and Hein, Matthias},
  booktitle={ICML},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RobustAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
                ),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, attack_names=None):
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("No samples to score.")
        rows = [np.atleast_1d(np.asarray(p, dtype=np.int64)) for p in predictions]
        widths = {row.size for row in rows}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(
                f"Every sample needs the same number (>= 1) of predictions, one per attack; got {sorted(widths)}."
            )
        table = np.stack(rows)  # (samples, attacks)
        correct = table == references[:, None]
        result = {"robust_accuracy": float(correct.all(axis=1).mean()), "num_samples": int(references.size)}
        if attack_names is not None:
            attack_names = list(attack_names)
            if len(attack_names) != table.shape[1]:
                raise ValueError(f"{len(attack_names)} attack names for {table.shape[1]} predictions per sample.")
            for index, name in enumerate(attack_names):
                result[f"accuracy/{name}"] = float(correct[:, index].mean())
        return result
