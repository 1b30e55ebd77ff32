"""benchmarks/compare_trainer_logs.py: a rerun's log history against a committed one, value by value."""

import json


def _state(path, history):
    path.write_text(json.dumps({"log_history": history}))
    return path


def test_identical_steps_different_values_and_unshared_steps_are_told_apart(load_benchmark, tmp_path):
    compare = load_benchmark("compare_trainer_logs")
    committed = [{"step": 50, "loss": 1.25, "grad_norm": 0.4}, {"step": 100, "loss": 0.85, "grad_norm": 0.45},
                 {"step": 150, "loss": 0.79}, {"step": 150, "train_runtime": 9.0}]
    rerun = [{"step": 50, "loss": 1.25, "grad_norm": 0.4}, {"step": 100, "loss": 0.85, "grad_norm": 0.45000001}]
    result = compare.compare_log_histories(_state(tmp_path / "a.json", committed), _state(tmp_path / "b.json", rerun))
    assert result["shared_entries"] == 2 and result["identical_entries"] == 1
    assert [row["identical"] for row in result["entries"]] == [True, False]
    assert 0 < result["entries"][1]["max_relative_difference"] < 1e-7
    assert (result["only_in_first"], result["only_in_second"]) == (2, 0)  # the loss and the summary entry at step 150


def test_wall_clock_values_are_not_compared(load_benchmark, tmp_path):
    compare = load_benchmark("compare_trainer_logs")
    first = [{"step": 10, "train_loss": 0.5, "train_runtime": 9.0, "train_samples_per_second": 3.0}]
    second = [{"step": 10, "train_loss": 0.5, "train_runtime": 9.5, "train_samples_per_second": 2.9}]
    result = compare.compare_log_histories(_state(tmp_path / "a.json", first), _state(tmp_path / "b.json", second))
    assert result["identical_entries"] == 1 and result["entries"][0]["values_compared"] == 2  # step and train_loss
    second[0]["train_loss"] = 0.51
    result = compare.compare_log_histories(_state(tmp_path / "a.json", first), _state(tmp_path / "b.json", second))
    assert result["identical_entries"] == 0
