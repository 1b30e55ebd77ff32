"""benchmarks/compare_reference.py: argument checks, the weight mapping, and smoke runs of both sides.

The reference side needs the authors' code (xiaoyunxxy/MIMIR on GitHub) and timm, which the
project's own environment does not carry: point MIMIR_REFERENCE at a checkout and run these tests
in the comparison virtualenv (docs/benchmarks.md) to include it; elsewhere it is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_reference.py"


@pytest.fixture(scope="module")
def harness(load_benchmark):
    return load_benchmark("compare_reference")


def test_reference_is_required_unless_ours_only(harness, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args([])
    assert "--reference PATH" in capsys.readouterr().err
    args = harness.parse_args(["--ours_only", "--reference", "/ignored"])
    assert args.reference is None


def test_a_path_that_is_not_a_checkout_is_refused(harness, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mae_vit.py").write_text("")
    with pytest.raises(SystemExit):
        harness.parse_args(["--reference", str(tmp_path)])
    err = capsys.readouterr().err
    assert "does not look like a MIMIR checkout" in err and "MI/hsic.py" in err


@pytest.mark.parametrize("bad", [["--rounds", "0"], ["--threads", "0"], ["--batch_sizes", "32", "1"], ["--warmup", "-1"]])
def test_bad_numbers_are_refused(harness, bad):
    with pytest.raises(SystemExit):
        harness.parse_args(["--ours_only", *bad])


def test_smoke_shrinks_everything_but_keeps_explicit_batches(harness):
    args = harness.parse_args(["--ours_only", "--smoke"])
    assert (args.shape, args.rounds, args.warmup, args.batch_sizes) == ("smoke", 1, 0, [4])
    assert harness.parse_args(["--ours_only", "--smoke", "--batch_sizes", "6"]).batch_sizes == [6]
    defaults = harness.parse_args(["--ours_only"])
    assert (defaults.shape, defaults.threads, defaults.batch_sizes) == ("cifar-vit-t", 1, [32])


def test_weight_mapping_covers_every_tensor_once(harness):
    """Canary for transformers' ViT-MAE parameter names: every tensor of ours lands in exactly one reference name."""
    from mimir_hf.modeling import MimirForPreTraining, mimir_config

    shape = dict(harness.SHAPES["smoke"])
    config = mimir_config("vit-t", shape.pop("image_size"), shape.pop("patch_size"), intermediate_size=128,
                          decoder_intermediate_size=128, **shape)
    model = MimirForPreTraining(config)
    state = model.state_dict()
    mapped = harness.ours_to_reference(state, config.num_hidden_layers, config.decoder_num_hidden_layers)
    assert all(v is not None for v in mapped.values()), [k for k, v in mapped.items() if v is None]
    assert sum(v.numel() for v in mapped.values()) == sum(v.numel() for v in state.values())
    # q, k, v stacked in that order, as timm's fused qkv expects.
    layer = next(k for k in state if k.endswith("attention.q_proj.weight")).rsplit("q_proj", 1)[0]
    qkv = mapped["blocks.0.attn.qkv.weight"]
    for i, name in enumerate("qkv"):
        assert torch.equal(qkv[i * config.hidden_size:(i + 1) * config.hidden_size], state[f"{layer}{name}_proj.weight"])


def test_old_transformers_names_are_understood(harness):
    old = "vit.encoder.layer.3.attention.attention.query.weight"
    assert harness._normalise_our_key(old) == "vit.layers.3.attention.q_proj.weight"
    assert harness._normalise_our_key("vit.encoder.layer.0.output.dense.bias") == "vit.layers.0.mlp.fc2.bias"
    assert harness._normalise_our_key("vit.encoder.layer.0.attention.output.dense.bias") == "vit.layers.0.attention.o_proj.bias"


def test_our_side_smoke_runs_through_the_trainer(harness, tmp_path):
    """Our four step kinds run, each split into its parts, and the Trainer's attack is seen inside training_step."""
    document = harness.main(["--ours_only", "--smoke", "--json", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text())["results"] == document["results"]
    (result,) = document["results"]
    assert result["clock"] == "cpu"  # one thread on the CPU
    result = result["cpu"]
    assert set(result["step_ms"]) == {"ours_mimir", "ours_mae", "trainer_mimir", "trainer_mae"}
    assert all(ms > 0 for ms in result["step_ms"].values())
    parts = result["parts_ms"]["trainer_mimir"]
    assert all(parts[p] is not None and parts[p] >= 0 for p in ("attack", "forward", "backward", "optimizer"))
    assert parts["attack"] > 0, "the harness no longer sees the attack inside MimirTrainer.training_step; update _attack_marker"
    assert parts["attack"] + parts["forward"] + parts["backward"] + parts["optimizer"] <= result["step_ms"]["trainer_mimir"] * 1.01
    assert "trainer_mimir/trainer_mae" in result["ratios"] and "ours_mimir/ref_mimir" not in result["ratios"]
    assert document["agreement"] is None and document["threads"] == 1


def _reference_skip_reason() -> str | None:
    if importlib.util.find_spec("timm") is None:
        return "timm is not installed: the reference implementation needs it (see docs/benchmarks.md)"
    value = os.environ.get("MIMIR_REFERENCE")
    if not value:
        return "MIMIR_REFERENCE is not set to a checkout of xiaoyunxxy/MIMIR"
    if not (Path(value) / "models" / "mae_vit.py").is_file():
        return f"MIMIR_REFERENCE={value} is not a checkout of xiaoyunxxy/MIMIR"
    return None


@pytest.mark.skipif(_reference_skip_reason() is not None, reason=str(_reference_skip_reason()))
def test_reference_smoke_computes_the_same_maths(tmp_path):
    """Both sides on a tiny model: identical x', losses and gradients from copied weights, all six kinds timed."""
    out = tmp_path / "ref.json"
    subprocess.run([sys.executable, "-W", "ignore", str(HARNESS), "--reference", os.environ["MIMIR_REFERENCE"], "--smoke",
                    "--json", str(out)], check=True, capture_output=True, text=True, timeout=300)
    document = json.loads(out.read_text())
    agreement = document["agreement"]
    assert agreement["agree"], agreement
    assert agreement["mimir"]["adversarial_equal_fraction"] == 1.0
    assert agreement["mimir"]["gradient_rel"] < 1e-4 and agreement["mae"]["gradient_rel"] < 1e-4
    (result,) = document["results"]
    result = result[result["clock"]]
    assert set(result["step_ms"]) == {"ours_mimir", "ref_mimir", "ours_mae", "ref_mae", "trainer_mimir", "trainer_mae"}
    assert {"ours_mimir/ref_mimir", "trainer_mimir/ref_mimir", "ours_mae/ref_mae"} <= set(result["ratios"])
