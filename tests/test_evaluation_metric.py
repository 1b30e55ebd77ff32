"""The robust-accuracy `evaluate` module loads offline from its path and computes."""

from __future__ import annotations

import evaluate
import pytest

from mimir_hf.evaluation import robust_accuracy_metric_path


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(robust_accuracy_metric_path())  # HF_*_OFFLINE=1 in conftest: no network


def test_metric_loads_offline_and_takes_the_per_sample_worst_case(metric) -> None:
    result = metric.compute(
        predictions=[[3, 3, 3], [1, 2, 1], [0, 0, 5], [4, 4, 4]],
        references=[3, 1, 0, 2],
        attack_names=["clean", "pgd-20", "autoattack"],
    )
    assert result["robust_accuracy"] == 0.25
    assert result["num_samples"] == 4
    assert result["accuracy/clean"] == 0.75 and result["accuracy/pgd-20"] == 0.5 and result["accuracy/autoattack"] == 0.5


def test_metric_accepts_one_prediction_per_sample_and_batches(metric) -> None:
    assert metric.compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 1])["robust_accuracy"] == 0.75
    metric.add_batch(predictions=[[1, 1]], references=[1])
    metric.add_batch(predictions=[[0, 0], [2, 1]], references=[0, 2])
    assert metric.compute()["robust_accuracy"] == pytest.approx(2 / 3)


def test_metric_rejects_ragged_predictions(metric) -> None:
    with pytest.raises(ValueError, match="same number"):
        metric.compute(predictions=[[1, 1], [1]], references=[1, 1])
