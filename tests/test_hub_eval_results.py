"""`.eval_results/*.yaml` generated from robustness.json (offline; the round trip through the local Hub
server is in test_hub_publish.py)."""

from __future__ import annotations

import dataclasses

import yaml
from huggingface_hub import parse_eval_result_entries

from hub_server import tiny_report
from mimir_hf.evaluation import AutoAttackComponent
from mimir_hf.hub.eval_results import eval_result_files, eval_results_dataset_id


def test_no_files_without_a_hub_dataset(tmp_path) -> None:
    report = tiny_report(tmp_path)  # builtin:digits
    assert eval_results_dataset_id(report) is None
    assert eval_result_files(report) == {}


def test_files_hold_the_report_values_verbatim(tmp_path) -> None:
    report = tiny_report(tmp_path)
    report.attacks["autoattack"] = dataclasses.replace(report.attacks["autoattack"], components=(
        AutoAttackComponent("apgd-ce", attacked=51, broken=25, robust_accuracy_after=0.40625, wall_time_seconds=3.0),
        AutoAttackComponent("apgd-t", attacked=26, broken=1, robust_accuracy_after=0.390625, wall_time_seconds=9.0),
    ))
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
    assert entries["clean"].value == report.accuracy("clean")
    assert entries["pgd-20-linf-eps8_255"].value == report.accuracy("pgd-20")
    assert entries["worst-case-linf-eps8_255"].value == report.worst_case.accuracy
    notes = entries["autoattack-linf-eps8_255"].notes
    assert "L∞ ε = 8/255" in notes and "64 test images" in notes and "apgd-ce broke 25, apgd-t broke 1" in notes


def test_a_report_on_a_hub_dataset_names_it(tmp_path) -> None:
    report = dataclasses.replace(tiny_report(tmp_path), dataset="uoft-cs/cifar10")
    assert eval_results_dataset_id(report) == "uoft-cs/cifar10"
    assert eval_results_dataset_id(report, "me/other") == "me/other"


def test_an_l2_report_gives_l2_tasks_and_notes(tmp_path) -> None:
    from evaluation_folders import measured_report

    from mimir_hf.evaluation import AttackSettings

    report = measured_report({"clean": 0.75, "pgd-20": 0.5, "cw": 0.5, "autoattack": 0.25},
                             settings=AttackSettings(norm="L2", epsilon=0.5), dataset="uoft-cs/cifar10")
    files = eval_result_files(report)
    assert ".eval_results/cw-l2-eps0.5.yaml" in files and ".eval_results/worst-case-l2-eps0.5.yaml" in files
    (entry,) = parse_eval_result_entries(yaml.safe_load(files[".eval_results/cw-l2-eps0.5.yaml"]))
    assert entry.notes.startswith("CW-L2 (PGD on the CW margin) robust accuracy") and "L2 ε = 0.5" in entry.notes
    assert "L∞" not in entry.notes and "/255" not in entry.notes
