"""`.eval_results/*.yaml` generated from robustness.json (offline; the round trip through the local Hub
server is in test_hub_publish.py)."""

from __future__ import annotations

import yaml
from huggingface_hub import parse_eval_result_entries

from hub_server import tiny_report
from mimir_hf.hub.eval_results import eval_result_files, eval_results_dataset_id


def test_no_files_without_a_hub_dataset(tmp_path) -> None:
    report = tiny_report(tmp_path)  # builtin:digits
    assert eval_results_dataset_id(report) is None
    assert eval_result_files(report) == {}


def test_files_hold_the_report_values_verbatim(tmp_path) -> None:
    report = tiny_report(tmp_path)
    report["attacks"]["autoattack"].update(version="standard", components=[
        {"name": "apgd-ce", "attacked": 51, "broken": 25, "robust_accuracy_after": 0.40625, "wall_time_seconds": 3.0},
        {"name": "apgd-t", "attacked": 26, "broken": 1, "robust_accuracy_after": 0.390625, "wall_time_seconds": 9.0},
    ])
    files = eval_result_files(report, dataset_id="uoft-cs/cifar10", source_url="https://hub.example/x")
    assert sorted(files) == [
        ".eval_results/autoattack-linf-eps8_255.yaml", ".eval_results/clean.yaml",
        ".eval_results/pgd-100-linf-eps8_255.yaml", ".eval_results/pgd-20-linf-eps8_255.yaml",
        ".eval_results/worst-case-linf-eps8_255.yaml",
    ]  # sweep entries at other budgets are not scores of this threat model
    entries = {}
    for path, content in files.items():
        (entry,) = parse_eval_result_entries(yaml.safe_load(content))
        entries[entry.task_id] = entry
        assert entry.dataset_id == "uoft-cs/cifar10" and entry.source_url == "https://hub.example/x"
    assert entries["clean"].value == report["attacks"]["clean"]["accuracy"]
    assert entries["pgd-20-linf-eps8_255"].value == report["attacks"]["pgd-20"]["accuracy"]
    assert entries["worst-case-linf-eps8_255"].value == report["worst_case"]["accuracy"]
    notes = entries["autoattack-linf-eps8_255"].notes
    assert "L∞ ε = 8/255" in notes and "64 test images" in notes and "apgd-ce broke 25, apgd-t broke 1" in notes


def test_a_report_on_a_hub_dataset_names_it(tmp_path) -> None:
    report = dict(tiny_report(tmp_path), dataset="uoft-cs/cifar10")
    assert eval_results_dataset_id(report) == "uoft-cs/cifar10"
    assert eval_results_dataset_id(report, "me/other") == "me/other"
