"""Converting the authors' checkpoints: key mapping, shapes, wrappers, refusals, the written folder.

The state dicts are synthetic, built with the key names and shapes of the reference's models
(`models/mae_vit.py`, `models/models_vit.py`, `models/swin_transformer.py`: timm layouts). The
numerical equivalence against timm itself lives in tests/test_convert_timm.py (skipped without
timm); here a small from-the-definition forward of the global-pooled ViT checks the classifier's
logits so that CI without timm still catches a wrong mapping.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModelForImageClassification, AutoModelForPreTraining

from mimir_hf.convert import (
    UnrecognisedCheckpointError,
    UnsupportedArchitectureError,
    convert_reference_checkpoint,
    detect_architecture,
    load_reference_checkpoint,
    mae_state_dict_to_model,
    swin_state_dict_to_model,
    vit_classifier_state_dict_to_model,
)
from mimir_hf.modeling import MimirForPreTraining

ROOT = Path(__file__).resolve().parents[1]


def _rand(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=generator)


def timm_blocks(prefix: str, depth: int, width: int, mlp: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """timm `Block` keys: norm1, attn.qkv (3D x D), attn.proj, norm2, mlp.fc1, mlp.fc2."""
    state = {}
    for i in range(depth):
        p = f"{prefix}.{i}"
        state |= {
            f"{p}.norm1.weight": 1 + _rand(width, generator=generator),
            f"{p}.norm1.bias": _rand(width, generator=generator),
            f"{p}.attn.qkv.weight": _rand(3 * width, width, generator=generator),
            f"{p}.attn.qkv.bias": _rand(3 * width, generator=generator),
            f"{p}.attn.proj.weight": _rand(width, width, generator=generator),
            f"{p}.attn.proj.bias": _rand(width, generator=generator),
            f"{p}.norm2.weight": 1 + _rand(width, generator=generator),
            f"{p}.norm2.bias": _rand(width, generator=generator),
            f"{p}.mlp.fc1.weight": _rand(mlp, width, generator=generator),
            f"{p}.mlp.fc1.bias": _rand(mlp, generator=generator),
            f"{p}.mlp.fc2.weight": _rand(width, mlp, generator=generator),
            f"{p}.mlp.fc2.bias": _rand(width, generator=generator),
        }
    return state


def timm_vit_encoder(width=192, depth=2, patch=4, image=32, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = (image // patch) ** 2 + 1
    return {
        "cls_token": _rand(1, 1, width, generator=g),
        "pos_embed": _rand(1, tokens, width, generator=g),
        "patch_embed.proj.weight": _rand(width, 3, patch, patch, generator=g),
        "patch_embed.proj.bias": _rand(width, generator=g),
        **timm_blocks("blocks", depth, width, 4 * width, g),
    }


def reference_mae_state(width=192, depth=2, patch=4, image=32, decoder=128) -> dict[str, torch.Tensor]:
    """`MaskedAutoencoderViT` (mae_vit_ti_dec128d2b at 32 px, 2 encoder blocks): encoder + decoder_* + mask_token."""
    g = torch.Generator().manual_seed(1)
    tokens = (image // patch) ** 2 + 1
    state = timm_vit_encoder(width, depth, patch, image)
    state |= {"norm.weight": 1 + _rand(width, generator=g), "norm.bias": _rand(width, generator=g)}
    state |= {
        "decoder_embed.weight": _rand(decoder, width, generator=g),
        "decoder_embed.bias": _rand(decoder, generator=g),
        "mask_token": _rand(1, 1, decoder, generator=g),
        "decoder_pos_embed": _rand(1, tokens, decoder, generator=g),
        **timm_blocks("decoder_blocks", 2, decoder, 4 * decoder, g),
        "decoder_norm.weight": 1 + _rand(decoder, generator=g),
        "decoder_norm.bias": _rand(decoder, generator=g),
        "decoder_pred.weight": _rand(patch * patch * 3, decoder, generator=g),
        "decoder_pred.bias": _rand(patch * patch * 3, generator=g),
    }
    return state


def reference_classifier_state(pooling="mean", num_classes=10) -> dict[str, torch.Tensor]:
    """`models_vit.VisionTransformer(global_pool=True)`: `fc_norm`, no `norm`; timm's token pooling: `norm`, no `fc_norm`."""
    g = torch.Generator().manual_seed(2)
    state = timm_vit_encoder()
    norm = "fc_norm" if pooling == "mean" else "norm"
    state |= {f"{norm}.weight": 1 + _rand(192, generator=g), f"{norm}.bias": _rand(192, generator=g)}
    state |= {"head.weight": _rand(num_classes, 192, generator=g), "head.bias": _rand(num_classes, generator=g)}
    return state


def reference_vit_logits(state: dict[str, torch.Tensor], images: torch.Tensor, heads: int) -> torch.Tensor:
    """The global-pooled ViT of the reference, from its definition: pre-norm blocks, patch-token mean, fc_norm, head."""
    patch = state["patch_embed.proj.weight"].shape[-1]
    x = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x], dim=1) + state["pos_embed"]
    width = x.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (width,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"]).chunk(3, dim=-1)
        split = lambda t: t.reshape(len(t), -1, heads, width // heads).transpose(1, 2)  # noqa: E731
        attention = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(width // heads)).softmax(-1) @ split(v)
        x = x + F.linear(attention.transpose(1, 2).reshape(x.shape), state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        h = F.layer_norm(x, (width,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])), state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
        x = x + h
    pooled = F.layer_norm(x[:, 1:].mean(1), (width,), state["fc_norm.weight"], state["fc_norm.bias"], eps=1e-6)
    return F.linear(pooled, state["head.weight"], state["head.bias"])


def swin_state(layout="original", embed=8, depths=(2, 2), heads=(1, 2), window=4, classes=5) -> dict[str, torch.Tensor]:
    """Original Swin (`layers.i.blocks.j.*`, merging at the end of stage i, `head.*`) or timm ≥ 0.9's layout."""
    g = torch.Generator().manual_seed(3)
    table = (2 * window - 1) ** 2
    state = {
        "patch_embed.proj.weight": _rand(embed, 3, 4, 4, generator=g),
        "patch_embed.proj.bias": _rand(embed, generator=g),
        "patch_embed.norm.weight": 1 + _rand(embed, generator=g),
        "patch_embed.norm.bias": _rand(embed, generator=g),
    }
    dim = embed
    for stage, (depth, head) in enumerate(zip(depths, heads)):
        blocks = timm_blocks(f"layers.{stage}.blocks", depth, dim, 4 * dim, g)
        for j in range(depth):
            blocks[f"layers.{stage}.blocks.{j}.attn.relative_position_bias_table"] = _rand(table, head, generator=g)
            blocks[f"layers.{stage}.blocks.{j}.attn.relative_position_index"] = torch.zeros(window**2, window**2, dtype=torch.long)
        state |= blocks
        if stage < len(depths) - 1:
            merging = stage if layout == "original" else stage + 1
            state[f"layers.{merging}.downsample.reduction.weight"] = _rand(2 * dim, 4 * dim, generator=g)
            state[f"layers.{merging}.downsample.norm.weight"] = 1 + _rand(4 * dim, generator=g)
            state[f"layers.{merging}.downsample.norm.bias"] = _rand(4 * dim, generator=g)
            dim *= 2
    state |= {"norm.weight": 1 + _rand(dim, generator=g), "norm.bias": _rand(dim, generator=g)}
    head_key = "head" if layout == "original" else "head.fc"
    state |= {f"{head_key}.weight": _rand(classes, dim, generator=g), f"{head_key}.bias": _rand(classes, generator=g)}
    return state


# ---------------------------------------------------------------------------------------------- mapping


def test_mae_mapping_splits_qkv_and_keeps_every_tensor():
    state = reference_mae_state()
    model = mae_state_dict_to_model(state)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (192, 2, 3)
    assert (config.image_size, config.patch_size, config.intermediate_size) == (32, 4, 768)
    assert (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads) == (128, 2, 16)
    assert config.norm_pix_loss and config.mask_ratio == 0.75 and config.layer_norm_eps == 1e-6
    hf = model.state_dict()
    qkv, bias = state["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.bias"]
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(hf[f"vit.layers.1.attention.{name}.weight"], qkv[192 * i : 192 * (i + 1)])
        assert torch.equal(hf[f"vit.layers.1.attention.{name}.bias"], bias[192 * i : 192 * (i + 1)])
    assert torch.equal(hf["decoder.decoder_layers.0.attention.k_proj.weight"], state["decoder_blocks.0.attn.qkv.weight"][128:256])
    for source, target in [
        ("pos_embed", "vit.embeddings.position_embeddings"),
        ("norm.weight", "vit.layernorm.weight"),
        ("mask_token", "decoder.mask_token"),
        ("decoder_pos_embed", "decoder.decoder_pos_embed"),
        ("decoder_pred.weight", "decoder.decoder_pred.weight"),
        ("blocks.0.norm2.bias", "vit.layers.0.layernorm_after.bias"),
    ]:
        assert torch.equal(hf[target], state[source]), target
    # every source number went somewhere: parameter counts agree
    assert sum(v.numel() for v in hf.values()) == sum(v.numel() for v in state.values())


def test_classifier_logits_match_the_reference_definition():
    state = reference_classifier_state("mean")
    model = vit_classifier_state_dict_to_model(state)
    assert type(model).__name__ == "BeitForImageClassification" and model.config.use_mean_pooling
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference_vit_logits(state, images, heads=3)
        got = model(pixel_values=images).logits
    assert (expected - got).abs().max() < 1e-4, (expected - got).abs().max()
    # the key bias was dropped (BEiT has none) and that changed nothing
    assert "beit.layers.0.attention.k_proj.bias" not in model.state_dict()


def test_classifier_mapping_is_checked_by_the_logits():
    """A wrong mapping (norm1 and norm2 swapped) must show in the comparison the test above relies on."""
    state = reference_classifier_state("mean")
    broken = dict(state)
    broken["blocks.0.norm1.weight"], broken["blocks.0.norm2.weight"] = state["blocks.0.norm2.weight"], state["blocks.0.norm1.weight"]
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        difference = (reference_vit_logits(state, images, 3) - vit_classifier_state_dict_to_model(broken)(pixel_values=images).logits).abs().max()
    assert difference > 1e-3


def test_token_pooled_classifier_becomes_vit():
    model = vit_classifier_state_dict_to_model(reference_classifier_state("cls", num_classes=7))
    assert type(model).__name__ == "ViTForImageClassification" and model.config.num_labels == 7


def test_both_swin_layouts_give_the_same_model():
    original = swin_state_dict_to_model(swin_state("original"), image_size=32)
    timm_layout = swin_state_dict_to_model(swin_state("timm"), image_size=32)
    config = original.config
    assert (config.embed_dim, list(config.depths), list(config.num_heads), config.window_size) == (8, [2, 2], [1, 2], 4)
    assert config.layer_norm_eps == 1e-6 and config.num_labels == 5
    a, b = original.state_dict(), timm_layout.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["swin.encoder.layers.0.downsample.reduction.weight"], swin_state("original")["layers.0.downsample.reduction.weight"])
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(original(pixel_values=images).logits).all()


def test_swin_window_is_read_from_the_tables():
    assert swin_state_dict_to_model(swin_state(window=7), image_size=56).config.window_size == 7


# ---------------------------------------------------------------------------------------------- files


def test_wrappers_prefixes_and_pickled_args_are_handled(tmp_path):
    state = reference_classifier_state()
    path = tmp_path / "checkpoint-99.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 99, "args": argparse.Namespace(lr=1e-3)}, path)
    checkpoint = load_reference_checkpoint(path)
    assert checkpoint.wrapper == "model" and checkpoint.stripped_prefixes == ["module."] and checkpoint.epoch == 99
    assert checkpoint.state_dict.keys() == state.keys() and not checkpoint.used_ema


def test_ema_copy_selection(tmp_path):
    raw = reference_classifier_state()
    ema = {k: v + 1 for k, v in raw.items()}
    path = tmp_path / "full_model.pth"
    torch.save({"state_dict": {f"base_model.{k}": v for k, v in raw.items()}, "state_dict_ema": ema}, path)
    auto = load_reference_checkpoint(path)
    assert auto.used_ema and torch.equal(auto.state_dict["head.bias"], ema["head.bias"])
    plain = load_reference_checkpoint(path, ema="raw")
    assert not plain.used_ema and plain.stripped_prefixes == ["base_model."]
    assert torch.equal(plain.state_dict["head.bias"], raw["head.bias"])
    torch.save({"model": raw}, tmp_path / "no_ema.pth")
    with pytest.raises(UnrecognisedCheckpointError, match="no EMA copy"):
        load_reference_checkpoint(tmp_path / "no_ema.pth", ema="ema")


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": reference_classifier_state(), "extra": _Payload()}, path)
    with pytest.raises(UnrecognisedCheckpointError, match="weights_only"):
        load_reference_checkpoint(path)


def test_cait_convit_and_unknown_layouts_are_refused(tmp_path):
    with pytest.raises(UnsupportedArchitectureError, match="CaiT"):
        detect_architecture({"blocks_token_only.0.attn.q.weight": torch.zeros(1), "blocks.0.gamma_1": torch.zeros(1)})
    with pytest.raises(UnsupportedArchitectureError, match="ConViT"):
        detect_architecture({"blocks.0.attn.gating_param": torch.zeros(1)})
    with pytest.raises(UnsupportedArchitectureError, match="MAE-pretrained Swin"):
        detect_architecture(swin_state() | {"mask_token": torch.zeros(1, 1, 8), "decoder_embed.weight": torch.zeros(8, 8)})
    with pytest.raises(UnrecognisedCheckpointError, match="conv1.weight"):
        detect_architecture({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})
    path = tmp_path / "x.pth"
    torch.save({"optimizer": {"lr": 1.0}, "epoch": 3}, path)
    with pytest.raises(UnrecognisedCheckpointError, match="optimizer"):
        load_reference_checkpoint(path)
    with pytest.raises(UnsupportedArchitectureError, match="no transformers class"):
        convert_reference_checkpoint(path, kind="convit")
    torch.save(reference_mae_state(), path)
    with pytest.raises(ValueError, match="holds a 'mae' layout"):
        convert_reference_checkpoint(path, kind="vit")


def test_unmapped_tensors_are_not_dropped_silently():
    state = reference_classifier_state() | {"blocks.0.attn.extra_scale": torch.ones(1)}
    with pytest.raises(UnrecognisedCheckpointError, match="extra_scale"):
        vit_classifier_state_dict_to_model(state)


def test_unknown_width_needs_heads():
    state = reference_mae_state(width=96)
    with pytest.raises(ValueError, match="attention heads"):
        mae_state_dict_to_model(state)
    assert mae_state_dict_to_model(state, num_attention_heads=4).config.num_attention_heads == 4


def test_recipe_writes_a_folder_stock_transformers_loads(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_reference_recipe", ROOT / "recipes" / "convert_reference.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    main = recipe.main
    source = tmp_path / "checkpoint-99.pth"
    state = reference_classifier_state()
    torch.save({"model": state, "epoch": 99}, source)
    out = tmp_path / "converted"
    assert main(["--checkpoint", str(source), "--output_dir", str(out), "--kind", "vit"]) == 0
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    assert model.config.id2label[0] == "airplane" and not processor.do_normalize
    assert processor.crop_size == {"height": 32, "width": 32}
    record = json.loads((out / "conversion.json").read_text())
    assert record["source_architecture"] == "vit" and record["epoch"] == 99 and len(record["source_sha256"]) == 64
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=images).logits, reference_vit_logits(state, images, 3), atol=1e-4)
    with pytest.raises(FileExistsError):
        main(["--checkpoint", str(source), "--output_dir", str(out)])
    from PIL import Image
    from transformers import pipeline

    predictions = pipeline("image-classification", model=str(out))(Image.new("RGB", (32, 32), (120, 30, 200)))
    assert predictions and predictions[0]["label"] in model.config.id2label.values()

    mae_source = tmp_path / "checkpoint-799.pth"
    torch.save({"model": reference_mae_state()}, mae_source)
    mae_out = tmp_path / "pretrain"
    convert_reference_checkpoint(mae_source, mae_out, kind="mae")
    assert type(AutoModelForPreTraining.from_pretrained(mae_out)).__name__ == "ViTMAEForPreTraining"
    assert MimirForPreTraining.from_pretrained(mae_out).config.norm_pix_loss


def test_imagenet_processor_follows_the_reference_evaluation(tmp_path):
    path = tmp_path / "swin.pth"
    torch.save(swin_state("original", window=7), path)
    result = convert_reference_checkpoint(path, tmp_path / "swin", kind="swin")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "swin")
    assert result.model.config.image_size == 224
    assert processor.size == {"shortest_edge": 256} and processor.crop_size == {"height": 224, "width": 224}
    assert processor.resample == 3 and not processor.do_normalize  # bicubic, [0, 1] pixels


def test_converted_swin_card_describes_swin(tmp_path):
    from hub_server import build_tiny_checkpoints

    from mimir_hf.evaluation import RobustnessReport
    from mimir_hf.hub import render_model_card, validate_model_card

    source = tmp_path / "weight.pth"
    torch.save(swin_state("original", window=7, classes=10), source)
    folder = tmp_path / "swin"
    convert_reference_checkpoint(source, folder, kind="swin", additional_data=True)
    report = json.loads((build_tiny_checkpoints(tmp_path / "tiny")["classifier"] / "robustness.json").read_text())
    report["model"] = str(folder)
    (folder / "robustness.json").write_text(json.dumps(report))
    card = validate_model_card(render_model_card(folder, repo_id="org/swin"), report=RobustnessReport.from_dict(report))
    text = str(card)
    assert "Swin Transformer (embed dim 8" in text and "CLS token" not in text and "SwinForImageClassification" in text
    assert card.data.additional_data is True  # from conversion.json


@pytest.mark.filterwarnings("ignore:GRADIENT-MASKING")  # random weights predict one class, as the check says
def test_evaluation_recipe_takes_a_converted_checkpoint(tmp_path):
    """recipes/evaluate.py runs its attacks on a converted (Swin) folder: model, processor and labels all load."""
    spec = importlib.util.spec_from_file_location("evaluate_recipe", ROOT / "recipes" / "evaluate.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    source = tmp_path / "weight.pth"
    torch.save({"state_dict": swin_state("original", classes=10)}, source)
    (tmp_path / "digits.json").write_text(json.dumps([str(i) for i in range(10)]))
    convert_reference_checkpoint(source, tmp_path / "swin", kind="swin", image_size=32, labels=str(tmp_path / "digits.json"))
    out = tmp_path / "eval"
    recipe.main([
        "--model_name_or_path", str(tmp_path / "swin"), "--output_dir", str(out), "--max_eval_samples", "8",
        "--attacks", "clean", "pgd-3", "--epsilon_sweep", "64/255", "--no_progress", "true",
    ])
    report = json.loads((out / "robustness.json").read_text())
    assert report["num_samples"] == 8 and {"clean", "pgd-3"} <= set(report["attacks"])
