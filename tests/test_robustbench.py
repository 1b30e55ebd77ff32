"""RobustBench export: ModelInfo JSON against its schema, the protocol's refusals, ImageNet's 5,000-image
list, the submission text and the model-zoo entry."""

from __future__ import annotations

import ast
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from evaluation_folders import measured_report

from mimir_hf.evaluation import AttackSettings, Check, RobustnessReport
from mimir_hf.evaluation.robustbench import (
    MODEL_INFO_FIELDS,
    MODEL_INFO_SCHEMA,
    NOT_AN_ENTRY,
    RobustBenchArguments,
    build_model_info,
    check_protocol_arguments,
    imagenet_test_image_ids,
    imagenet_test_indices,
    robustbench_dataset,
    validate_model_info,
    write_robustbench_submission,
)

COMPONENTS = [
    {"name": "apgd-ce", "attacked": 9312, "broken": 3730, "robust_accuracy_after": 0.5582, "wall_time_seconds": 900.0},
    {"name": "apgd-t", "attacked": 5582, "broken": 120, "robust_accuracy_after": 0.5462, "wall_time_seconds": 4000.0},
    {"name": "fab-t", "attacked": 5462, "broken": 0, "robust_accuracy_after": 0.5462, "wall_time_seconds": 3000.0},
    {"name": "square", "attacked": 5462, "broken": 2, "robust_accuracy_after": 0.546, "wall_time_seconds": 6000.0},
]
STANDARD_RUN = {"attacks_run": ["apgd-ce", "apgd-t", "fab-t", "square"], "components": COMPONENTS}


def cifar_report(num_samples: int = 10_000, epsilon: float = 8 / 255, norm: str = "Linf",
                 autoattack: dict | None = None, **fields) -> RobustnessReport:
    """A CIFAR-10 protocol run: all test images, clean 93.12 %, AutoAttack standard 54.60 %."""
    settings = AttackSettings(norm=norm, epsilon=epsilon, **(autoattack or {}).pop("settings", {}))
    fields.setdefault("dataset", "uoft-cs/cifar10")
    fields.setdefault("preprocessing", {"resize_shorter_side": 32, "center_crop": 32})
    return measured_report({"clean": 0.9312, "autoattack": 0.546}, num_samples=num_samples, settings=settings,
                           extras={"autoattack": autoattack or STANDARD_RUN}, model="outputs/cifar10-finetune", **fields)


def test_model_info_of_a_protocol_run_is_schema_valid_and_round_trips(tmp_path) -> None:
    arguments = RobustBenchArguments(robustbench_name="Xu2024MIMIR_ViT-B", paper_title="MIMIR", hub_model_id="me/vit")
    submission = write_robustbench_submission(cifar_report(), tmp_path, arguments, {"model_type": "vit", "hidden_size": 768,
                                                                                     "num_hidden_layers": 12, "patch_size": 16})
    path = tmp_path / "model_info" / "cifar10" / "Linf" / "Xu2024MIMIR_ViT-B.json"
    assert submission.paths["model_info"] == path
    info = json.loads(path.read_text())
    assert list(info) == list(MODEL_INFO_FIELDS)
    assert validate_model_info(info) == []
    assert json.loads(json.dumps(info)) == info
    assert info["clean_acc"] == "93.12" and info["autoattack_acc"] == "54.60" and info["eps"] == "8/255"
    assert info["dataset"] == "cifar10" and info["number_forward_passes"] == 1
    assert info["architecture"] == "ViT (width 768, depth 12, patch 16)"
    assert info["footnote"] is None and submission.ready and submission.problems == []
    # what only the authors know is left null and named
    assert submission.missing == ["link", "authors", "venue", "additional_data", "reported"]
    assert all(info[key] is None for key in submission.missing)


def test_the_validator_rejects_what_robustbench_would_not_read() -> None:
    info, _, _ = build_model_info(cifar_report())
    assert validate_model_info(info) == []
    for key, bad, message in [
        ("clean_acc", 0.9312, "must be string"),  # a fraction, not RobustBench's percentage string
        ("clean_acc", "93.1", "does not match"),
        ("autoattack_acc", "154.60", "does not match"),
        ("eps", "eight", "does not match"),
        ("number_forward_passes", True, "must be integer"),
        ("additional_data", "no", "must be boolean or null"),
    ]:
        broken = dict(info, **{key: bad})
        assert any(message in p for p in validate_model_info(broken)), (key, bad)
    assert "missing field 'footnote'" in validate_model_info({k: v for k, v in info.items() if k != "footnote"})
    assert "unknown field 'extra'" in validate_model_info(dict(info, extra=1))
    assert MODEL_INFO_SCHEMA["required"] == list(MODEL_INFO_FIELDS)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"num_samples": 1000}, "1000 images evaluated; RobustBench uses 10000"),
        ({"dataset": "builtin:digits"}, "not a RobustBench data set"),
        ({"checks": [Check("autoattack_at_most_pgd", False, "")]}, "gradient-masking check(s) failed"),
        ({"epsilon": 4 / 255}, "ε = 4/255; RobustBench's cifar10 Linf budget is 8/255"),
    ],
)
def test_a_run_off_the_protocol_is_marked_not_an_entry(tmp_path, changes, reason) -> None:
    submission = write_robustbench_submission(cifar_report(**changes), tmp_path, RobustBenchArguments(robustbench_name="X"))
    info = submission.model_info
    assert validate_model_info(info) == []  # still schema-valid ...
    assert info["footnote"].startswith(NOT_AN_ENTRY) and reason in info["footnote"]  # ... but marked
    assert not submission.ready
    text = submission.paths["submission"].read_text()
    assert text.startswith(f"> **{NOT_AN_ENTRY}.**") and "Do not submit it" in text


def test_a_partial_autoattack_is_not_an_entry() -> None:
    custom = {"settings": {"autoattack_version": "custom", "autoattack_attacks": ("apgd-ce",)}, "attacks_run": ["apgd-ce"]}
    _, _, problems = build_model_info(cifar_report(autoattack=custom))
    assert problems == ["AutoAttack ran apgd-ce (custom), not the full standard suite"]
    # asked for "standard", but a component was dropped (a three-class model has no APGD-T): not the standard suite
    dropped = {"attacks_run": ["apgd-ce", "fab-t", "square"]}
    _, _, problems = build_model_info(cifar_report(autoattack=dropped))
    assert problems == ["AutoAttack ran apgd-ce, fab-t, square (standard), not the full standard suite"]


def test_submission_text_and_model_zoo_entry(tmp_path) -> None:
    arguments = RobustBenchArguments(robustbench_name="Xu2024MIMIR_ViT-B", paper_title="MIMIR", hub_model_id="me/vit",
                                     hub_revision="abc123", additional_data=False)
    submission = write_robustbench_submission(cifar_report(), tmp_path, arguments)
    text = submission.paths["submission"].read_text()
    assert "Title: [New Model] Xu2024MIMIR_ViT-B" in text
    assert "- **Clean accuracy**: 93.12%" in text and "- **Robust accuracy**: 54.60%" in text
    assert "- **Additional data**: false" in text and "- **Paper URL**: TODO (link)" in text
    assert "apgd-ce: 3730 broken, 55.82% left" in text  # the per-component results explain the number
    assert "https://huggingface.co/me/vit" in text
    zoo = submission.paths["model_zoo"].read_text()
    tree = ast.parse(zoo)  # valid Python
    assert any(isinstance(node, ast.ClassDef) and node.name == "HubImageClassifier" for node in tree.body)
    assert 'HubImageClassifier("me/vit", revision="abc123")' in zoo
    assert '"preprocessing": "None"' in zoo  # 32-px CIFAR images pass unchanged: RobustBench's ToTensor preset
    assert zoo.lstrip().startswith('"""') and "linf = OrderedDict" in zoo


def test_an_l2_entry_without_a_pinned_revision(tmp_path) -> None:
    """CIFAR-10 L2 (ε = 0.5): the files say L2, and the model-zoo entry without --hub_revision is still valid Python."""
    submission = write_robustbench_submission(cifar_report(norm="L2", epsilon=0.5), tmp_path,
                                              RobustBenchArguments(robustbench_name="X", hub_model_id="me/vit"))
    assert submission.ready and submission.model_info["eps"] == "0.5"
    assert submission.paths["model_info"].parts[-3:] == ("cifar10", "L2", "X.json")
    zoo = submission.paths["model_zoo"].read_text()
    ast.parse(zoo)
    assert 'revision=None),  # pin the Hub commit you evaluated' in zoo and "l2 = OrderedDict" in zoo
    assert "- **Threat Model**: L2" in submission.paths["submission"].read_text()


def test_imagenet_preprocessing_is_named_as_robustbench_names_it(tmp_path) -> None:
    report = cifar_report(dataset="ILSVRC/imagenet-1k", num_samples=5000, epsilon=4 / 255,
                          preprocessing={"resize_shorter_side": 256, "center_crop": 224})
    submission = write_robustbench_submission(report, tmp_path, RobustBenchArguments(robustbench_name="X"))
    assert submission.ready and submission.model_info["eps"] == "4/255"
    assert submission.paths["model_info"].parts[-3:] == ("imagenet", "Linf", "X.json")
    assert '"preprocessing": "BicubicRes256Crop224"' in submission.paths["model_zoo"].read_text()


def test_dataset_names() -> None:
    assert robustbench_dataset("uoft-cs/cifar10") == "cifar10"
    assert robustbench_dataset("uoft-cs/cifar100") == "cifar100"
    assert robustbench_dataset("ILSVRC/imagenet-1k") == "imagenet"
    assert robustbench_dataset("zh-plus/tiny-imagenet") is None
    assert robustbench_dataset("builtin:digits") is None


def test_the_shipped_imagenet_list_is_robustbenchs() -> None:
    ids = imagenet_test_image_ids()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert ids[0] == "n09468604/ILSVRC2012_val_00015253.JPEG"  # RobustBench's order
    assert all(entry.split("/")[1].startswith("ILSVRC2012_val_") for entry in ids)
    # byte for byte RobustBench's file: its git blob id, as data/NOTICE.md records it
    from importlib import resources

    raw = resources.files("mimir_hf.evaluation").joinpath("data/robustbench_imagenet_test_image_ids.txt").read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    assert blob == "cb6494cb1b2784e5d430b45d0ae4d61b29150e99"


def test_imagenet_images_are_found_by_file_name(tmp_path) -> None:
    from datasets import Dataset, Image
    from PIL import Image as PILImage

    def png() -> bytes:
        buffer = io.BytesIO()
        PILImage.new("RGB", (4, 4)).save(buffer, format="PNG")
        return buffer.getvalue()

    names = ["ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    dataset = Dataset.from_dict(
        {"image": [{"bytes": png(), "path": f"val/{n}"} for n in names], "label": [0, 1, 2]}
    ).cast_column("image", Image())
    ids = ["n1/ILSVRC2012_val_00000002.JPEG", "n2/ILSVRC2012_val_00000003.JPEG"]
    assert imagenet_test_indices(dataset, ids) == [2, 0]
    with pytest.raises(ValueError, match="1 of RobustBench's 2 ImageNet images are not in this split"):
        imagenet_test_indices(dataset, ids[:1] + ["n3/ILSVRC2012_val_00000009.JPEG"])
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    assert imagenet_test_image_ids(ids_file) == ids


def _args(**changes):
    eval_args = SimpleNamespace(attacks=["clean", "autoattack"], autoattack_version="standard", epsilon="8/255",
                                norm="Linf")
    data_args = SimpleNamespace(dataset="uoft-cs/cifar10", max_eval_samples=None)
    for key, value in changes.items():
        setattr(eval_args if hasattr(eval_args, key) else data_args, key, value)
    return eval_args, data_args


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"attacks": ["clean", "pgd-20"]}, "lacks one"),
        ({"autoattack_version": "custom"}, "runs AutoAttack 'standard'"),
        ({"epsilon": "4/255"}, "budget is 8/255"),
        ({"max_eval_samples": 1000}, "would make a subset"),
        ({"dataset": "ILSVRC/imagenet-1k"}, "budget is 4/255"),
    ],
)
def test_the_protocol_refuses_explicit_values_that_break_it(changes, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_protocol_arguments(*_args(**changes))
    check_protocol_arguments(*_args())  # the protocol itself passes
    check_protocol_arguments(*_args(dataset="builtin:digits", max_eval_samples=64))  # not an entry: allowed, marked


@pytest.mark.slow
def test_recipe_protocol_robustbench_on_builtin_digits(tmp_path) -> None:
    """`--protocol robustbench` on a user's model and the digits, without a config: RobustBench's attacks
    (clean + AutoAttack standard, no ε sweep) and a schema-valid JSON marked not an entry."""
    from test_evaluation_recipe import digits_checkpoint, load_recipe

    digits_checkpoint(tmp_path / "ckpt")
    recipe = load_recipe()
    out = tmp_path / "rb"
    code = recipe.main(["--protocol", "robustbench", "--model_name_or_path", str(tmp_path / "ckpt"),
                        "--output_dir", str(out), "--max_eval_samples", "8", "--no_progress", "true"])
    assert code == 0
    report = json.loads((out / "robustness.json").read_text())
    assert set(report["attacks"]) == {"clean", "autoattack"}  # the protocol's attacks, not the full default list
    assert report["attacks"]["autoattack"]["version"] == "standard"
    assert report["preprocessing"]["center_crop"] == 16 and report["preprocessing"]["resize_shorter_side"] == 16
    (info_path,) = (out / "model_info" / "builtin-digits" / "Linf").glob("*.json")
    info = json.loads(info_path.read_text())
    assert validate_model_info(info) == []
    assert info["footnote"].startswith(NOT_AN_ENTRY)
    assert info["clean_acc"] == f"{100 * report['attacks']['clean']['accuracy']:.2f}"
    assert (out / "robustbench_submission.md").read_text().startswith(f"> **{NOT_AN_ENTRY}.**")


@pytest.mark.slow
def test_recipe_protocol_robustbench_on_an_imagenet_folder_uses_the_listed_images(tmp_path) -> None:
    """ImageNet: the images are the ones the list names, found by file name, in the list's order."""
    import numpy as np
    from PIL import Image as PILImage

    from test_evaluation_recipe import load_recipe
    from test_evaluation_scaling import tiny_vit

    root = tmp_path / "imagenet"
    names = []
    for index in range(1, 10):
        synset = f"n0{index % 3}"
        name = f"ILSVRC2012_val_{index:08d}.JPEG"
        (root / "validation" / synset).mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(index).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(root / "validation" / synset / name, format="JPEG")
        names.append(f"{synset}/{name}")
    listed = [names[7], names[2], names[4], names[0]]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(listed) + "\n")
    tiny_vit().save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "rb"
    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "evaluate_robustbench_imagenet.yaml"
    code = load_recipe().main([
        "--config", str(config), "--model_name_or_path", str(tmp_path / "ckpt"), "--dataset", str(root),
        "--output_dir", str(out), "--imagenet_ids_file", str(ids), "--robustbench_name", "Tiny", "--batch_size", "2",
        "--no_progress", "true",
    ])
    assert code == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["num_samples"] == 4 and report["threat_model"]["epsilon"] == pytest.approx(4 / 255)
    from datasets import Image, load_dataset

    folder = load_dataset("imagefolder", data_dir=str(root), split="validation").shuffle(seed=0)  # as mimir_hf.data reads it
    files = [Path(p["path"]).name for p in folder.cast_column("image", Image(decode=False))["image"]]
    with np.load(out / "per_sample.npz") as per_sample:
        evaluated = [files[i] for i in per_sample["indices"]]
    assert evaluated == [Path(entry).name for entry in listed]
    info = json.loads((out / "model_info" / "imagenet" / "Linf" / "Tiny.json").read_text())
    assert validate_model_info(info) == [] and info["eps"] == "4/255"
    assert "4 images evaluated; RobustBench uses 5000" in info["footnote"]


def _full_cifar10c(mean: float) -> dict:
    from mimir_hf.evaluation.corruptions import CIFAR10C_CORRUPTIONS

    return {"mean_accuracy": mean,
            "num_images": {c: {str(s): 10_000 for s in range(1, 6)} for c in CIFAR10C_CORRUPTIONS}}


def test_corruptions_model_info(tmp_path) -> None:
    from mimir_hf.evaluation.robustbench import (
        CORRUPTIONS_MODEL_INFO_FIELDS,
        CORRUPTIONS_MODEL_INFO_SCHEMA,
        write_robustbench_corruptions_info,
    )

    arguments = RobustBenchArguments(robustbench_name="X")
    entry = write_robustbench_corruptions_info(_full_cifar10c(0.7678), cifar_report(), tmp_path, arguments)
    info = json.loads((tmp_path / "model_info" / "cifar10" / "corruptions" / "X.json").read_text())
    assert list(info) == list(CORRUPTIONS_MODEL_INFO_FIELDS)
    assert validate_model_info(info, CORRUPTIONS_MODEL_INFO_SCHEMA) == []
    assert info["corruptions_acc"] == "76.78" and info["clean_acc"] == "93.12" and info["eps"] is None
    assert entry.ready and info["footnote"] is None
    partial = _full_cifar10c(0.5)
    del partial["num_images"]["fog"]
    entry = write_robustbench_corruptions_info(partial, cifar_report(), tmp_path, arguments)
    assert not entry.ready and "5 of the 75 corruption × severity pairs" in entry.model_info["footnote"]
    assert validate_model_info(dict(info, eps="8/255"), CORRUPTIONS_MODEL_INFO_SCHEMA) == ["'eps' must be null, got str"]
