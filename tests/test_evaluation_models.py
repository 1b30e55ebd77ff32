"""mimir_hf.evaluation on a tiny ViTForImageClassification: AutoAttack from the authors' package end
to end, the MIMIR-aware adaptive attacks, and the logits-only wrapper."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from mimir_hf.evaluation import LogitsModel, evaluate_robustness, load_classifier
from mimir_hf.evaluation.attack_specs import AttackSettings, parse_attack_name
from mimir_hf.evaluation.autoattack import _autoattack_plan, _build_autoattack




def tiny_vit(num_labels: int = 10, image_size: int = 16) -> ViTForImageClassification:
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=image_size, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=num_labels,
    )
    return ViTForImageClassification(config).eval()


def own_labels(model: ViTForImageClassification, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images labelled with the model's own predictions, so that clean accuracy is 100%."""
    x = torch.rand(n, 3, model.config.image_size, model.config.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(pixel_values=x).logits.argmax(dim=1)
    return x, y


def test_autoattack_runs_end_to_end_on_a_tiny_vit(tmp_path) -> None:
    model = tiny_vit()
    x, y = own_labels(model)
    report = evaluate_robustness(
        model, x, labels=y, attacks=["clean", "pgd-10", "autoattack"], autoattack_version="custom",
        autoattack_attacks=["apgd-ce"], epsilon_sweep=(), output_dir=tmp_path, progress=False, plot=False,
    )
    assert report.accuracy("clean") == 1.0
    assert report.accuracy("autoattack") < 1.0
    assert report.attacks["autoattack"].max_perturbation <= 8 / 255 + 1e-5
    data = json.loads((tmp_path / "robustness.json").read_text())
    entry = data["attacks"]["autoattack"]
    assert entry["library"] == "autoattack" and entry["library_version"] == importlib.metadata.version("pyautoattack") and entry["version"] == "custom"
    log = (tmp_path / "autoattack.log").read_text()
    assert "apgd-ce" in log and "robust accuracy" in log
    assert data["autoattack_log"] == "autoattack.log"


@pytest.mark.slow
def test_autoattack_standard_on_a_tiny_vit(tmp_path) -> None:
    model = tiny_vit()
    x, y = own_labels(model, 8)
    report = evaluate_robustness(
        model, x, labels=y, attacks=["clean", "pgd-20", "autoattack"], epsilon_sweep=(), output_dir=tmp_path,
        progress=False, plot=False,
    )
    log = (tmp_path / "autoattack.log").read_text()
    # the cascade runs one component at a time (so that each one's breaks and time are measured)
    for component in ("apgd-ce", "apgd-t", "fab-t", "square"):
        assert f"using standard version including {component}." in log
    assert "robust accuracy after APGD-CE" in log
    components = report.attacks["autoattack"].components
    assert [c.name for c in components] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert components[-1].robust_accuracy_after == pytest.approx(report.accuracy("autoattack"))
    assert report.attacks["autoattack"].standard_autoattack  # the four standard components ran on every image
    assert report.accuracy("autoattack") <= report.accuracy("pgd-20")
    assert {c.name: c.passed for c in report.checks}["autoattack_at_most_pgd"]


def test_adaptive_attacks_run_on_a_tiny_vit() -> None:
    model = tiny_vit()
    x, y = own_labels(model)
    report = evaluate_robustness(
        model, x, labels=y, attacks=["clean", "pgd-mi-5", "pgd-feature-5", "cw-5"], epsilon_sweep=(),
        progress=False, plot=False,
    )
    for name in ("pgd-mi-5", "pgd-feature-5", "cw-5"):
        assert report.attacks[name].max_perturbation <= 8 / 255 + 1e-6
        assert report.attacks[name].max_perturbation > 4 / 255  # each attack moved the inputs by more than half its budget
    assert report.accuracy("clean") == 1.0  # labels are the model's own predictions
    assert report.accuracy("pgd-mi-5") < 1.0  # CE + nHSIC still attacks the classifier
    assert report.accuracy("cw-5") < 1.0  # the margin attack breaks points of an untrained model


def test_pgd_feature_moves_the_encoder_features() -> None:
    from mimir_hf.evaluation.attacks import Attack

    model = tiny_vit()
    x, y = own_labels(model, 4)
    wrapper = LogitsModel(model)
    spec = parse_attack_name("pgd-feature-10", AttackSettings())
    adversarial = Attack(spec).run(wrapper, x, y, generator=torch.Generator().manual_seed(0))
    random = (x + (8 / 255) * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) - 1)).clamp(0, 1)
    with torch.no_grad():
        clean_f = wrapper.logits_and_features(x)[1].flatten(1)
        adv_f = wrapper.logits_and_features(adversarial)[1].flatten(1)
        rand_f = wrapper.logits_and_features(random)[1].flatten(1)
    assert ((adv_f - clean_f).norm(dim=1) > (rand_f - clean_f).norm(dim=1)).all()


def test_pgd_mi_ascends_the_mi_term() -> None:
    """The MI term steers the attack: from the same start, a weight on it crafts another x′, one whose
    nHSIC(features, x′) is higher than pure CE (weight 0) reaches. An MI term that did nothing fails both."""
    from mimir_hf.evaluation.attacks import Attack
    from mimir_hf.mutual_information import hsic_normalized_cca

    model = tiny_vit()
    x, y = own_labels(model, 8)
    wrapper = LogitsModel(model)

    def craft(weight: float) -> torch.Tensor:
        spec = parse_attack_name("pgd-mi-10", AttackSettings(mi_weight=weight))
        return Attack(spec).run(wrapper, x, y, generator=torch.Generator().manual_seed(0))

    def nhsic(images: torch.Tensor) -> float:
        with torch.no_grad():
            features = wrapper.logits_and_features(images)[1]
        return float(hsic_normalized_cca(features.flatten(1), images.flatten(1)))

    ce_only, with_mi = craft(0.0), craft(10.0)
    assert (with_mi - ce_only).abs().max() > 4 / 255
    assert nhsic(with_mi) > nhsic(ce_only) + 1e-3


def test_pgd_mi_estimates_with_the_training_penalty_at_the_chosen_precision(monkeypatch) -> None:
    from mimir_hf.evaluation.attacks import Attack
    from mimir_hf.mutual_information import ESTIMATORS, hsic_normalized_cca

    seen = []

    def recording(x, y, sigma, epsilon, compute_dtype=None):
        seen.append(compute_dtype)
        return hsic_normalized_cca(x, y, sigma, epsilon, compute_dtype=compute_dtype)

    monkeypatch.setitem(ESTIMATORS, "hsic_cca", recording)
    model = tiny_vit()
    x, y = own_labels(model, 4)
    spec = parse_attack_name("pgd-mi-2", AttackSettings(mi_compute_dtype="float32"))
    Attack(spec).run(LogitsModel(model), x, y, generator=torch.Generator().manual_seed(0))
    assert seen and set(seen) == {"float32"}
    assert spec.options["mi_compute_dtype"] == "float32"  # recorded in the report's pgd-mi entry
    with pytest.raises(ValueError, match="mi_compute_dtype"):
        AttackSettings(mi_compute_dtype="float16")


def test_wrapper_returns_logits_and_applies_the_processor_normalisation() -> None:
    model = tiny_vit()
    x = torch.rand(2, 3, 16, 16)
    processor = ViTImageProcessor(do_normalize=True, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    wrapper, _, _ = load_classifier(model, device="cpu", image_processor=processor)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = wrapper(x)
        expected = model(pixel_values=(x - mean) / std).logits
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    torch.testing.assert_close(out, expected)
    assert "mean=" in wrapper.normalization
    plain, _, _ = load_classifier(model, device="cpu", image_processor=ViTImageProcessor(do_normalize=False))
    assert plain.normalization == "none"


def test_checkpoint_directory_and_processor_are_loaded(tmp_path) -> None:
    model = tiny_vit()
    model.save_pretrained(tmp_path / "ckpt")
    ViTImageProcessor(do_normalize=False, size={"height": 16, "width": 16}).save_pretrained(tmp_path / "ckpt")
    x, y = own_labels(model, 4)
    report = evaluate_robustness(str(tmp_path / "ckpt"), x, labels=y, attacks=["clean"], epsilon_sweep=(),
                                 progress=False, plot=False)
    assert report.model == str(tmp_path / "ckpt") and report.accuracy("clean") == 1.0


def test_autoattack_plan_drops_dlr_attacks_for_few_classes() -> None:
    spec = parse_attack_name("autoattack", AttackSettings())
    version, attacks, note = _autoattack_plan(spec, 2)
    assert version == "custom" and attacks == ["apgd-ce", "fab-t", "square"] and "apgd-t" in note
    assert _autoattack_plan(spec, 10) == ("standard", None, "")


def test_custom_autoattack_runs_components_as_standard_does() -> None:
    """A bounded (custom) suite must not silently run 5 APGD-CE restarts where standard runs 1."""
    model = tiny_vit()
    wrapper, _, _ = load_classifier(model, device="cpu")
    settings = AttackSettings(autoattack_version="custom", autoattack_attacks=("apgd-ce", "apgd-t"))
    spec = parse_attack_name("autoattack", settings)
    custom = _build_autoattack(spec, wrapper, "custom", ["apgd-ce", "apgd-t"], 10, torch.device("cpu"))
    standard = _build_autoattack(parse_attack_name("autoattack", AttackSettings()), wrapper, "standard", None, 10,
                                 torch.device("cpu"))
    assert custom.attacks_to_run == ["apgd-ce", "apgd-t"]
    for component in ("apgd", "apgd_targeted", "fab"):
        assert getattr(custom, component).n_restarts == getattr(standard, component).n_restarts == 1
    assert custom.apgd_targeted.n_target_classes == standard.apgd_targeted.n_target_classes == 9
    assert custom.square.n_queries == standard.square.n_queries == 5000


def test_progress_bars_are_shown(capsys, monkeypatch) -> None:
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # every update drawn, however fast the tiny model is
    model = tiny_vit()
    x, y = own_labels(model, 4)
    evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-2"], epsilon_sweep=(), plot=False, progress=True)
    err = capsys.readouterr().err
    # the bar names the attack running and moves once per attack, even through one batch
    assert "attack=pgd-2" in err and "1/2" in err and "2/2" in err
    evaluate_robustness(model, x, labels=y, attacks=["clean", "pgd-2"], epsilon_sweep=(), plot=False, progress=False)
    assert "evaluating" not in capsys.readouterr().err  # and is off when asked
