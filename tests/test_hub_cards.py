"""Model cards and publishing checks that need no server (card generation works offline)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from evaluation_folders import measured_report
from hub_server import build_tiny_checkpoints

from mimir_hf.evaluation import AttackSettings, RobustnessReport
from mimir_hf.hub import (
    REQUIRED_TAGS,
    MissingEvaluationError,
    PublishError,
    build_model_card,
    files_to_publish,
    publish_checkpoint,
    render_model_card,
    template_path,
    validate_model_card,
)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "publish.py"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def classifier(checkpoints, tmp_path):
    """A private copy of the classifier checkpoint that a test may break."""
    target = tmp_path / "classifier"
    shutil.copytree(checkpoints["classifier"], target)
    report = json.loads((target / "robustness.json").read_text())
    report["model"] = str(target)
    (target / "robustness.json").write_text(json.dumps(report))
    return target


def _report(folder: Path) -> dict:
    """robustness.json's content, for a test to edit and write back."""
    return json.loads((folder / "robustness.json").read_text())


def _loaded(folder: Path) -> RobustnessReport:
    return RobustnessReport.load(folder)


def test_templates_ship_with_the_package():
    for kind in ("classifier", "pretraining"):
        assert template_path(kind).is_file()
        assert template_path(kind).parent.name == "templates"


def test_classifier_card_round_trip(classifier):
    report = _report(classifier)
    text = render_model_card(classifier, repo_id="org/mimir-tiny", base_model="org/mimir-tiny-pretrain")
    card = validate_model_card(text, report=_loaded(classifier), base_model="org/mimir-tiny-pretrain")

    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    assert set(REQUIRED_TAGS) <= set(data.tags)
    assert data.base_model == "org/mimir-tiny-pretrain"
    assert data.model_name == "mimir-tiny"
    results = {r.metric_config: r for r in data.eval_results}
    # every non-sweep entry of the report, with its value copied verbatim
    assert set(results) == {"clean", "pgd-20", "pgd-100", "autoattack"}
    for name, result in results.items():
        assert result.metric_value == report["attacks"][name]["accuracy"]
        assert result.dataset_split == "test"
    assert results["clean"].metric_type == "accuracy"
    assert results["autoattack"].metric_args["epsilon"] == report["threat_model"]["epsilon"]
    assert results["autoattack"].metric_args["library"] == "autoattack"
    assert results["autoattack"].metric_args["library_version"] == "0.2.0"
    assert results["pgd-20"].metric_args["steps"] == 20

    body = card.text
    assert "8/255" in body and "[0, 1]" in body and "never mean/std-normalised" in body
    assert "42.19" in body and "39.06" in body  # the report's numbers, as percentages
    assert "| PGD-20 | 16/255 | 12.50 |" in body  # the sweep, in the body only
    assert 'pipeline("image-classification", model="org/mimir-tiny")' in body
    assert 'AutoModelForImageClassification.from_pretrained("org/mimir-tiny")' in body
    assert "arXiv:2312.04960" in body and "Xu, Yu, Wu, Picek" in body
    assert "author  = {Xu, Xiaoyun and Yu, Shujian and Wu, Jingzheng and Picek, Stjepan}" in body
    assert "None" not in body  # e.g. AutoAttack has no step count: a dash, not "None"
    assert "![Accuracy versus ε for every attack](accuracy_vs_epsilon.png)" in body
    assert "learning_rate: 0.001" in body  # the recipe config, embedded
    assert "hf_this_must_not_leak" not in text and "hub_token: <redacted>" in body


def test_card_follows_the_report_not_hand_typed_numbers(classifier):
    report = _report(classifier)
    report["attacks"]["autoattack"]["accuracy"] = 0.123456
    (classifier / "robustness.json").write_text(json.dumps(report))
    card = build_model_card(classifier, repo_id="org/x")
    assert {r.metric_config: r.metric_value for r in card.data.eval_results}["autoattack"] == 0.123456
    with pytest.raises(ValueError, match="autoattack: card says 0.123456"):
        report["attacks"]["autoattack"]["accuracy"] = 0.5
        validate_model_card(str(card), report=RobustnessReport.from_dict(report))


def test_failed_sanity_checks_are_flagged(classifier):
    report = _report(classifier)
    report["checks"].append({"name": "black_box_weaker_than_white_box", "passed": False, "detail": "square beat PGD",
                             "within_tolerance": False})
    (classifier / "robustness.json").write_text(json.dumps(report))
    text = render_model_card(classifier, repo_id="org/x")
    assert "sanity checks did not all pass" in text
    assert "Sanity check `black_box_weaker_than_white_box` failed" in text


def test_pretraining_card(checkpoints):
    text = render_model_card(checkpoints["pretraining"], kind="pretraining", repo_id="org/mimir-tiny-pretrain")
    card = validate_model_card(text, kind="pretraining")
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert not card.data.eval_results and card.data.base_model is None
    assert 'AutoModel.from_pretrained("org/mimir-tiny-pretrain", mask_ratio=0.0)' in card.text
    assert "attack_epsilon" in card.text and "mi_weight" in card.text and "ε = 8/255" in card.text  # MIMIR settings from config.json
    assert "no robustness claim" in card.text.replace("\n", " ")
    assert "`ViTMAEForPreTraining` checkpoint" in card.text and "MimirForPreTraining" not in card.text


def test_malformed_model_index_is_rejected(classifier):
    text = render_model_card(classifier, repo_id="org/x")
    broken = text.replace("  results:\n", "  resultz:\n", 1)
    with pytest.raises(ValueError, match="model.index"):
        validate_model_card(broken)
    with pytest.raises(ValueError, match="library_name"):
        validate_model_card(text.replace("library_name: transformers", "library_name: timm"))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no report", "No evaluation report"),
        ("no autoattack", "lacks 'autoattack'"),
        ("no pgd", "lacks a PGD entry"),
        ("no clean", "lacks 'clean'"),
        ("other epsilon", "ran at epsilon"),
    ],
)
def test_refuses_a_classifier_without_evaluation_results(classifier, breakage, message):
    report = _report(classifier)
    if breakage == "no report":
        (classifier / "robustness.json").unlink()
    else:
        if breakage == "no autoattack":
            del report["attacks"]["autoattack"]
        elif breakage == "no pgd":
            del report["attacks"]["pgd-20"], report["attacks"]["pgd-100"]
        elif breakage == "no clean":
            del report["attacks"]["clean"]
        elif breakage == "other epsilon":
            report["attacks"]["pgd-20"]["epsilon"] = 4 / 255
        (classifier / "robustness.json").write_text(json.dumps(report))
    with pytest.raises(MissingEvaluationError, match=message):
        publish_checkpoint(classifier, "org/x", token="hf_fake_token_123", dry_run=True)
    with pytest.raises(MissingEvaluationError):
        render_model_card(classifier)


def test_refuses_unloadable_or_normalising_checkpoints(classifier):
    processor = json.loads((classifier / "preprocessor_config.json").read_text())
    normalising = {**processor, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (classifier / "preprocessor_config.json").write_text(json.dumps(normalising))
    with pytest.raises(PublishError, match="normalises"):
        files_to_publish(classifier)
    (classifier / "preprocessor_config.json").write_text(json.dumps(processor))

    config = json.loads((classifier / "config.json").read_text())
    (classifier / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(PublishError, match="trust_remote_code"):
        files_to_publish(classifier)
    (classifier / "config.json").write_text(json.dumps(config))

    (classifier / "model.safetensors").rename(classifier / "pytorch_model.bin")
    with pytest.raises(PublishError, match="No safetensors weights"):
        files_to_publish(classifier)


def test_refuses_a_report_of_other_weights(classifier):
    """Retrained (here: changed) in place, the checkpoint keeps its path; the old report must not publish with it."""
    import torch
    from transformers import AutoModelForImageClassification

    files_to_publish(classifier)  # the report measured these weights
    model = AutoModelForImageClassification.from_pretrained(classifier)
    with torch.no_grad():
        model.classifier.weight.add_(0.01)
    model.save_pretrained(classifier)
    with pytest.raises(PublishError, match="measured other weights than those in") as refused:
        publish_checkpoint(classifier, "org/x", dry_run=True)
    assert "\n" not in str(refused.value) and "recipes/evaluate.py --model_name_or_path" in str(refused.value)


def test_refuses_a_report_without_a_weights_fingerprint(classifier):
    report = _report(classifier)
    report["weights_fingerprint"] = None  # as no report of an older mimir_hf can say which weights it measured
    (classifier / "robustness.json").write_text(json.dumps(report))
    with pytest.raises(PublishError, match="records no fingerprint of the weights it measured"):
        files_to_publish(classifier)


def test_uploaded_config_names_a_stock_class(checkpoints, classifier):
    from mimir_hf.hub.publish import stock_config_json

    assert stock_config_json(classifier, "classifier") is None  # already a stock class (BeitForImageClassification)
    rewritten = json.loads(stock_config_json(checkpoints["pretraining"], "pretraining"))
    assert rewritten["architectures"] == ["ViTMAEForPreTraining"]
    assert rewritten["attack_epsilon"] == pytest.approx(8 / 255)


def test_files_to_publish(classifier):
    files = files_to_publish(classifier)
    assert set(files) == {"model.safetensors", "config.json", "preprocessor_config.json", "robustness.json", "autoattack.log",
                          "accuracy_vs_epsilon.png", "per_sample.npz", "robustness_table.txt"}


def test_autoattack_is_labelled_by_what_ran(classifier):
    report = _report(classifier)
    report["attacks"]["autoattack"].update(version="custom", attacks=["apgd-ce"], attacks_run=["apgd-ce"],
                                           standard_autoattack=False)
    (classifier / "robustness.json").write_text(json.dumps(report))
    text = render_model_card(classifier, repo_id="org/x")
    assert "standard" not in text.lower()  # neither in the table nor in the model-index
    assert "| AutoAttack (custom: APGD-CE) |" in text and "AutoAttack (custom: APGD-CE) accuracy (L∞, ε=8/255)" in text

    # standard, but a component dropped (fewer than 4 classes): named by what ran, not "standard"
    report["attacks"]["autoattack"] = {**report["attacks"]["autoattack"], "version": "standard",
                                       "attacks_run": ["apgd-ce", "fab-t", "square"]}
    report["attacks"]["autoattack"].pop("attacks")
    (classifier / "robustness.json").write_text(json.dumps(report))
    text = render_model_card(classifier, repo_id="org/x")
    assert "standard" not in text.lower() and "AutoAttack (custom: APGD-CE, FAB-T, Square)" in text

    report["attacks"]["autoattack"] = {**report["attacks"]["autoattack"], "version": "standard",
                                       "standard_autoattack": True}
    report["attacks"]["autoattack"].pop("attacks_run")
    (classifier / "robustness.json").write_text(json.dumps(report))
    assert "| AutoAttack (standard) |" in render_model_card(classifier, repo_id="org/x")


def test_the_sweep_is_sorted_by_budget_and_holds_the_headline(classifier):
    report = _report(classifier)
    report["attacks"]["pgd-20@eps=2/255"] = {**report["attacks"]["pgd-20@eps=16/255"], "epsilon": 2 / 255, "accuracy": 0.6}
    (classifier / "robustness.json").write_text(json.dumps(report))
    text = render_model_card(classifier, repo_id="org/x")
    sweep = text.split("Accuracy as the budget grows", 1)[1]
    rows = [line for line in sweep.splitlines() if line.startswith("| PGD-20 | ")]
    assert [row.split(" | ")[1] for row in rows] == ["2/255", "8/255 (the threat model's)", "16/255", "255/255"]
    assert rows[1].endswith("| 42.19 |")  # the headline value is the pgd-20 entry itself


def test_cards_show_stage_one_settings_and_only_chosen_options(classifier, checkpoints):
    (classifier / "recipe_config.yaml").write_text(
        f"model_name_or_path: {checkpoints['pretraining']}\ndataset: builtin:digits\nadam_beta1: 0.9\nadam_beta2: 0.95\n"
        "_record:\n  argument_classes: [mimir_hf.finetuning.arguments.ModelArguments, mimir_hf.data.arguments.DataArguments, "
        "mimir_hf.finetuning.arguments.AdversarialTrainingArguments]\n"
    )
    text = render_model_card(classifier, repo_id="org/x")
    stage_one = text.split("Stage-1 settings", 1)[1].split("```", 2)[1]
    for key in ("mi_weight: 1.0e-05", "attack_epsilon: 0.03137", "attack_steps: 1", "mask_ratio: 0.75"):
        assert key in stage_one
    assert "use_cache" not in text
    trained = text.split("The finetuning recipe ran with", 1)[1].split("```", 2)[1]
    assert "adam_beta2: 0.95" in trained and "dataset: builtin:digits" in trained
    assert "adam_beta1" not in trained  # a default value is not dumped on the card

    (classifier / "recipe_config.yaml").write_text("model_name_or_path: scratch\ndataset: builtin:digits\n")
    text = render_model_card(classifier, repo_id="org/x")
    assert "from a random initialisation" in text and "Adversarial masked-autoencoder pretraining" not in text


def test_a_quickstart_evaluation_card_lists_only_what_the_user_set(classifier, tmp_path):
    """The evaluation's recipe_config.yaml names the argument classes that wrote it, RobustBenchArguments among
    them: none of its fields, all unset, is listed as a choice."""
    import dataclasses

    from mimir_hf.cli import parse_recipe_args, save_recipe_config
    from mimir_hf.data import DataArguments
    from mimir_hf.evaluation import EvaluationArguments, RobustBenchArguments

    quickstart = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "evaluate_quickstart.yaml"
    arguments = parse_recipe_args((EvaluationArguments, DataArguments, RobustBenchArguments), [], default_config=quickstart)
    evaluation = tmp_path / "evaluation"
    save_recipe_config(evaluation, *arguments)
    shutil.copy(classifier / "robustness.json", evaluation / "robustness.json")
    text = render_model_card(classifier, repo_id="org/x", report=evaluation / "robustness.json")
    shown = text.split("The evaluation ran with", 1)[1].split("```", 2)[1]
    listed = {line.split(":")[0] for line in shown.splitlines() if line and not line.startswith(("-", " "))}
    assert not listed & {f.name for f in dataclasses.fields(RobustBenchArguments)}, listed
    assert {"max_eval_samples", "attacks", "epsilon", "sweep_attack", "cw_steps"} <= listed  # what the config set


def test_a_pretraining_checkpoint_published_as_a_classifier_names_the_flag(checkpoints):
    with pytest.raises(PublishError, match="--kind pretraining"):
        files_to_publish(checkpoints["pretraining"])


def test_token_is_never_in_an_error(classifier, monkeypatch):
    secret = "hf_SECRETtoken0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    (classifier / "robustness.json").unlink()
    with pytest.raises(MissingEvaluationError) as refused:
        publish_checkpoint(classifier, "org/x")
    assert secret not in str(refused.value)
    with pytest.raises(PublishError) as invalid:
        publish_checkpoint(classifier, "not a/valid/repo id", kind="pretraining")
    assert secret not in str(invalid.value)


def test_no_token_is_a_clear_error(checkpoints, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(PublishError, match="HF_TOKEN"):
        publish_checkpoint(checkpoints["pretraining"], "org/x", kind="pretraining")


def test_publish_recipe_dry_run_writes_the_card(classifier, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    spec = importlib.util.spec_from_file_location("publish_recipe", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "publish_recipe", recipe)  # dataclasses look their module up
    spec.loader.exec_module(recipe)
    card_path = tmp_path / "card" / "README.md"
    result = recipe.main(
        ["--checkpoint", str(classifier), "--repo_id", "org/mimir-tiny", "--dry_run", "--card_path", str(card_path),
         "--base_model", "org/mimir-tiny-pretrain"]
    )
    assert result.dry_run and result.commit_oid is None
    # the dry run names every file a push would send, the evaluation's picture, per-image results and table included
    assert set(result.files) == {"README.md", "model.safetensors", "config.json", "preprocessor_config.json", "robustness.json",
                                 "autoattack.log", "recipe_config.yaml", "accuracy_vs_epsilon.png", "per_sample.npz",
                                 "robustness_table.txt"}
    card = validate_model_card(card_path.read_text(), report=_loaded(classifier), base_model="org/mimir-tiny-pretrain")
    assert card.data.model_name == "mimir-tiny"
    with pytest.raises(ValueError, match="Unknown option"):
        config = tmp_path / "bad.yaml"
        config.write_text("repo_idd: org/x\n")
        recipe.main(["--config", str(config)])


def test_an_l2_card_labels_its_threat_model(classifier):
    """An L2 report's card says L2 and states the radius as a radius, never as k/255."""
    l2 = AttackSettings(norm="L2", epsilon=0.5)
    measured_report({"clean": 0.75, "pgd-20": 0.5, "pgd-100": 0.5, "cw": 0.5, "autoattack": 0.25}, settings=l2).save(classifier)
    card = build_model_card(classifier, repo_id="org/x")
    text = str(card)
    assert "| Norm | L2 |" in text and "| Budget ε | 0.5 (= 0.5) |" in text
    assert "bounds the Euclidean norm" in text and "L2 perturbations of at most" in text
    assert "127.5/255" not in text and "L∞" not in text.split("## Limitations")[1].split("\n")[2]
    names = {r.metric_config: r.metric_name for r in card.data.eval_results}
    assert names["autoattack"].endswith("(L2, ε=0.5)")
    assert {r.metric_config: r.metric_args["norm"] for r in card.data.eval_results if r.metric_config != "clean"} == {
        "pgd-20": "L2", "pgd-100": "L2", "cw": "L2", "autoattack": "L2"}
    assert "| CW-L2 (PGD on the CW margin) |" in text and names["cw"] == "CW-L2 (PGD on the CW margin) accuracy (L2, ε=0.5)"
    assert "CW-L∞" not in text


def test_the_report_the_evaluation_writes_is_the_one_the_publisher_publishes(tmp_path):
    """End to end without a hand-written report: evaluate_robustness writes robustness.json into the
    checkpoint, and the card's model-index carries exactly its numbers."""
    import torch
    from huggingface_hub import ModelCard

    from mimir_hf.evaluation import evaluate_robustness

    folder = build_tiny_checkpoints(tmp_path)["classifier"]
    (folder / "robustness.json").unlink()  # the hand-written one the fixture ships
    generator = torch.Generator().manual_seed(0)
    report = evaluate_robustness(
        str(folder), torch.rand(8, 3, 16, 16, generator=generator), labels=torch.arange(8) % 3,
        attacks=["clean", "pgd-3", "autoattack"], autoattack_version="custom", autoattack_attacks=["apgd-ce"],
        epsilon_sweep=(), batch_size=8, output_dir=folder, device="cpu", progress=False, plot=False,
    )
    result = publish_checkpoint(folder, "org/mimir-tiny", dry_run=True)
    assert result.dry_run and "robustness.json" in result.files
    values = {r.metric_config: r.metric_value for r in ModelCard(result.card).data.eval_results}
    assert values == {name: report.accuracy(name) for name in ("clean", "pgd-3", "autoattack")}
    assert "AutoAttack (custom: APGD-CE)" in result.card  # the suite that ran, from the report


def test_the_clean_row_has_no_step_size(classifier):
    text = render_model_card(classifier, repo_id="org/x")
    (clean,) = [line for line in text.splitlines() if line.startswith("| Clean |")]
    cells = [cell.strip() for cell in clean.strip("|").split("|")]
    assert cells[0] == "Clean" and cells[3:7] == ["—", "—", "—", "—"]  # ε, steps, step size, restarts
    assert "0/255" not in clean


def test_a_model_of_no_preset_size_is_not_named_by_the_preset(classifier):
    """The recipe records the preset it started from; a model of other dimensions is shown as what it is."""
    (classifier / "recipe_config.yaml").write_text("dataset: builtin:digits\nmodel_size: vit-t\nhidden_size: 32\n")
    text = render_model_card(classifier, repo_id="org/x")
    trained = text.split("The finetuning recipe ran with", 1)[1].split("```", 2)[1]
    assert "model_size: vit-t\n" not in trained
    assert "model_size: custom (hidden size 32, 2 layers, 2 heads; not the vit-t preset)" in trained


def test_a_check_passed_within_tolerance_is_not_shown_as_a_plain_pass(classifier):
    report = _report(classifier)
    report["checks"].append({"name": "autoattack_at_most_pgd", "passed": True, "within_tolerance": True,
                             "detail": "a reduced AutoAttack (APGD-CE) is weaker than pgd-20 on this model"})
    (classifier / "robustness.json").write_text(json.dumps(report))
    text = render_model_card(classifier, repo_id="org/x")
    assert "- ⚠️ `autoattack_at_most_pgd` — a reduced AutoAttack (APGD-CE) is weaker than pgd-20" in text
