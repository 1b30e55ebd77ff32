"""RobustnessReport: what `save` writes `load` reads back, field for field; a file that lacks a field or
contradicts itself is an error naming the file; reports of the first schema still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mimir_hf.evaluation import InvalidReportError, PerSampleResults, RobustnessReport, evaluate_robustness
from mimir_hf.evaluation.loading import load_classifier, weights_fingerprint


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, RobustnessReport, nn.Module]:
    """A real evaluation folder: a linear classifier on random images, clean + PGD + a sweep point + Square."""
    folder = tmp_path_factory.mktemp("eval")
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    x = torch.rand(24, 3, 4, 4, generator=generator)
    y = model(x).argmax(1)
    report = evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-3", "square"], square_queries=10,
                                 epsilon_sweep=["64/255"], output_dir=folder, progress=False, plot=False)
    return folder, report, model


def _content(folder: Path) -> dict:
    return json.loads((folder / "robustness.json").read_text())


def test_load_reads_back_what_save_wrote(evaluated) -> None:
    folder, report, model = evaluated
    loaded = RobustnessReport.load(folder, per_sample=True)
    assert loaded.to_dict() == _content(folder) == json.loads(json.dumps(report.to_dict()))
    assert loaded.format_table() + "\n" == (folder / "robustness_table.txt").read_text()
    for name, record in loaded.attacks.items():
        assert record == report.attacks[name]
        np.testing.assert_array_equal(loaded.per_sample.correct[name], report.per_sample.correct[name])
        assert record.accuracy == pytest.approx(loaded.per_sample.correct[name].mean())
    assert [(r.kind, r.norm) for r in loaded.attacks.values()] == [
        ("clean", "Linf"), ("pgd", "Linf"), ("square", "Linf"), ("pgd", "Linf")]
    assert loaded.attacks["pgd-20@eps=64/255"].is_sweep and not loaded.attacks["pgd-3"].is_sweep
    # the weights that were measured, as anyone can recompute them from the model
    assert loaded.weights_fingerprint == weights_fingerprint(load_classifier(model, device="cpu")[0])
    assert RobustnessReport.load(folder / "robustness.json").per_sample is None  # arrays only when asked for
    assert PerSampleResults.load(folder / "per_sample.npz").worst_case_attacks == loaded.worst_case.attacks


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["threat_model"].pop("epsilon"), "the field 'threat_model.epsilon' is missing"),
        (lambda d: d["attacks"]["pgd-3"].pop("num_correct"), "the field 'attacks.pgd-3.num_correct' is missing"),
        (lambda d: d["attacks"]["pgd-3"].pop("kind"), "the field 'attacks.pgd-3.kind' is missing"),
        (lambda d: d.pop("weights_fingerprint"), "the field 'weights_fingerprint' is missing"),
        (lambda d: d["attacks"]["clean"].update(accuracy=1.5), "must be a fraction in [0, 1]"),
        (lambda d: d.update(num_samples="24"), "'num_samples' must be an integer"),
        (lambda d: d["checks"][0].pop("within_tolerance"), "'checks[0].within_tolerance' is missing"),
        (lambda d: d["attacks"]["square"].update(standard_autoattack=True), "contradicts its version"),
    ],
)
def test_a_missing_or_wrong_field_is_an_error_naming_the_file(evaluated, tmp_path, edit, message) -> None:
    data = _content(evaluated[0])
    edit(data)
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidReportError) as error:
        RobustnessReport.load(path)
    text = str(error.value)
    assert str(path) in text and message in text and "recipes/evaluate.py" in text and "\n" not in text


def test_other_files_are_refused_with_a_way_out(tmp_path) -> None:
    path = tmp_path / "robustness.json"
    path.write_text("{ not json")
    with pytest.raises(InvalidReportError, match="is not valid JSON.*regenerate"):
        RobustnessReport.load(path)
    path.write_text(json.dumps({"schema_version": 3}))
    with pytest.raises(InvalidReportError, match="schema_version 3; this mimir_hf reads \\[1, 2\\]. Update mimir_hf"):
        RobustnessReport.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="No evaluation report"):
        RobustnessReport.load(tmp_path / "nowhere")
    np.savez(tmp_path / "per_sample.npz", labels=np.zeros(3))
    with pytest.raises(ValueError, match="lacks attacks, correct"):
        PerSampleResults.load(tmp_path / "per_sample.npz")


def test_a_first_schema_report_loads_with_what_it_recorded(evaluated, tmp_path) -> None:
    """Version 1 had no fingerprint, no attack kinds or norms and no tolerance flag: they are worked out (kinds,
    norms, the AutoAttack suite) or left None (what was never recorded), never invented."""
    data = _content(evaluated[0])
    data["schema_version"] = 1
    for key in ("weights_fingerprint", "preprocessing", "evaluation"):
        del data[key]
    for entry in data["attacks"].values():
        for key in ("kind", "norm", "standard_autoattack"):
            del entry[key]
    for check in data["checks"]:
        del check["within_tolerance"]
    report = RobustnessReport.from_dict(data, source="old.json")
    assert report.weights_fingerprint is None and report.preprocessing is None and report.batch_size is None
    assert {n: r.kind for n, r in report.attacks.items()} == {
        "clean": "clean", "pgd-3": "pgd", "square": "square", "pgd-20@eps=64/255": "pgd"}
    assert all(c.within_tolerance is None for c in report.checks)
    assert report.accuracy("pgd-3") == evaluated[1].accuracy("pgd-3")
