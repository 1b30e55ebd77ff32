"""benchmarks/step_levers.py runs end to end on a tiny model, so that the figures in docs/benchmarks.md can be re-measured."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def levers(load_benchmark):
    return load_benchmark("step_levers")


def test_bad_arguments_are_refused(levers):
    for bad in (["--batch", "1"], ["--rounds", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            levers.parse_args(bad)


def test_smoke_measures_every_lever(levers, tmp_path):
    result = levers.main(["--smoke", "--json", str(tmp_path / "levers.json")])
    assert (tmp_path / "levers.json").is_file()
    shares = result["profile_share_of_step"]
    assert abs(sum(shares.values()) - 1) < 1e-3
    # Attention was found and attributed to the encoder's and the decoder's shapes, not lumped together.
    assert any("(decoder)" in k for k in shares) and any("(encoder)" in k for k in shares)
    assert set(result["attention_per_layer_ms"]) == {"encoder", "decoder"}
    assert set(result["qkv_per_layer_ms"]["encoder"]) == {"separate_full", "fused_full", "separate_input_only", "fused_input_only"}
    assert set(result["mi_ms"]) == {"float64", "float32"} and result["mi_float32_rel_error"] < 1e-2
    assert set(result["bf16_step_ms"]) == {"fp32", "bf16_training_only", "bf16_attack_and_training"}
    assert "compile_step_ms" not in result
