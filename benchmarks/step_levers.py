"""What could make our MIMIR pretraining step cheaper on a CPU? Each candidate measured.

    python benchmarks/step_levers.py               # ~3 min: where the time goes, fused QKV, MI dtype, bf16
    python benchmarks/step_levers.py --compile     # + torch.compile of encoder and decoder (minutes to compile)

`benchmarks/compare_reference.py` shows that our step and the authors' run the same aten kernels
on the same shapes; this script asks which changes on our side would buy time, on the paper's
CIFAR ViT-T at batch 32, fp32, one thread by default, timed on the process's CPU clock
(robust to other programs on a shared machine), variants interleaved, medians of `--rounds`:

* profile: the share of one MIMIR step (attack + training step) spent in each kernel, attention split
  by shape (the encoder's 3 heads x 64 over 65 tokens vs the decoder's 16 heads x 8 over 257 tokens);
  and each shape's attention per layer with PyTorch's CPU flash kernel and with the unfused "math" path;
* qkv: one fused q/k/v projection instead of three (what timm's `Attention` does), per layer;
* mi: the nHSIC penalty in float64 (today) vs float32, forward + backward, and its float32 error;
* bf16: CPU autocast on the training step only (today's Trainer) and on the attack as well;
* compile (`--compile`): `torch.compile` of the encoder and decoder modules.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of encoder + decoder")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 round (for tests)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.rounds = 4, 1
    if args.batch < 2 or args.rounds < 1 or args.threads < 1:
        parser.error("--batch must be >= 2, --rounds and --threads >= 1")
    return args


def cpu_ms(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU ms of each variant, one warm-up call each, then `rounds` rotated rounds."""
    for fn in variants.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(cpu_ms(variants[name]))
    return {k: statistics.median(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine_description

    from mimir_hf.modeling import MimirForPreTraining, mimir_config
    from mimir_hf.mutual_information import hsic_normalized_cca
    from mimir_hf.pretraining.attack import craft_adversarial_pixels

    if args.smoke:
        config = mimir_config("vit-t", 16, 4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=128, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                              decoder_num_attention_heads=4, decoder_intermediate_size=128)
    else:
        config = mimir_config("vit-t", 32, 2)
    torch.manual_seed(0)
    model = MimirForPreTraining(config).train()
    x = torch.rand(args.batch, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(1))
    tokens = (config.image_size // config.patch_size) ** 2
    visible = 1 + int(tokens * (1 - config.mask_ratio))
    shapes = {
        "encoder": (args.batch, config.num_attention_heads, visible, config.hidden_size // config.num_attention_heads),
        "decoder": (args.batch, config.decoder_num_attention_heads, tokens + 1,
                    config.decoder_hidden_size // config.decoder_num_attention_heads),
    }
    log = lambda m: print(m, flush=True)  # noqa: E731
    log(f"machine: {machine_description()}")
    result: dict = {"machine": machine_description(), "threads": torch.get_num_threads(), "batch": args.batch,
                    "clock": "process CPU time", "rounds": args.rounds, "attention_shapes": shapes}

    def mimir_step(m, attack_ctx=contextlib.nullcontext, train_ctx=contextlib.nullcontext) -> None:
        with attack_ctx():
            adversarial = craft_adversarial_pixels(m, x, epsilon=8 / 255, step_size=10 / 255, steps=1)
        with train_ctx():
            out = m(pixel_values=x, adversarial_pixel_values=adversarial)
        out.loss.backward()
        m.zero_grad(set_to_none=True)

    # 1. Where the time goes: kernels of one step, attention split by shape.
    mimir_step(model)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        mimir_step(model)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    share: dict[str, float] = {}
    for e in events:
        name = e.key
        if "scaled_dot_product" in name:
            first = e.input_shapes[0] if e.input_shapes else []
            which = "decoder" if list(first) == list(shapes["decoder"]) else "encoder" if list(first) == list(shapes["encoder"]) else "other"
            name = f"attention {'backward' if 'backward' in e.key else 'forward'} ({which})"
        elif name in ("aten::mm", "aten::addmm", "aten::bmm"):
            name = "matmul (mm/addmm/bmm)"
        else:
            name = "everything else"
        share[name] = share.get(name, 0.0) + e.self_cpu_time_total
    result["profile_share_of_step"] = {k: round(v / total, 4) for k, v in sorted(share.items(), key=lambda kv: -kv[1])}
    result["profiled_op_time_ms"] = total / 1e3  # wall time inside ops, inflated by the profiler (and by load)
    log("share of one MIMIR step (attack + forward + backward) by kernel, profiler self CPU time:")
    for k, v in result["profile_share_of_step"].items():
        log(f"  {k:36s} {100 * v:5.1f} %")

    # 2. Attention per layer, per shape (forward + backward of q, k, v: the attack needs all three too).
    attention: dict[str, dict[str, float]] = {}
    for where, shape in shapes.items():
        q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))

        def fwd_bwd() -> None:
            F.scaled_dot_product_attention(q, k, v).sum().backward()

        def fwd() -> None:
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v)

        def math_fwd_bwd() -> None:  # the unfused path: scores materialised, no recomputation in the backward
            with sdpa_kernel(SDPBackend.MATH):
                F.scaled_dot_product_attention(q, k, v).sum().backward()

        attention[where] = interleaved({"forward": fwd, "forward+backward": fwd_bwd,
                                        "math_forward+backward": math_fwd_bwd}, args.rounds)
    result["attention_per_layer_ms"] = attention
    log(f"attention per layer (ms): {json.dumps(attention)}")

    # 3. Fused q/k/v projection vs three, per layer; full backward (training) and input-only (attack).
    qkv: dict[str, dict[str, float]] = {}
    layers = {"encoder": (config.num_hidden_layers, visible, config.hidden_size),
              "decoder": (config.decoder_num_hidden_layers, tokens + 1, config.decoder_hidden_size)}
    saving = 0.0
    for where, (count, length, width) in layers.items():
        h = torch.randn(args.batch * length, width, requires_grad=True)
        weights = [torch.randn(width, width, requires_grad=True) for _ in range(3)]
        biases = [torch.zeros(width, requires_grad=True) for _ in range(3)]

        def separate(full: bool) -> Callable[[], None]:
            def run() -> None:
                out = sum(F.linear(h, w, b).sum() for w, b in zip(weights, biases))
                torch.autograd.grad(out, [h, *weights, *biases] if full else [h])
            return run

        def fused(full: bool) -> Callable[[], None]:
            def run() -> None:
                out = F.linear(h, torch.cat(weights), torch.cat(biases)).sum()
                torch.autograd.grad(out, [h, *weights, *biases] if full else [h])
            return run

        times = interleaved({"separate_full": separate(True), "fused_full": fused(True),
                             "separate_input_only": separate(False), "fused_input_only": fused(False)}, args.rounds)
        qkv[where] = times
        saving += count * (times["separate_full"] - times["fused_full"] + times["separate_input_only"] - times["fused_input_only"])
    result["qkv_per_layer_ms"] = qkv
    result["qkv_fused_saving_per_step_ms"] = saving
    log(f"q/k/v projections per layer (ms): {json.dumps(qkv)}; fusing saves ~{saving:.0f} ms per MIMIR step")

    # 4. The nHSIC penalty: float64 (today) vs float32, forward + backward, and the float32 error.
    with torch.no_grad():
        latent = model.vit(x).last_hidden_state

    def mi(dtype) -> Callable[[], None]:
        def run() -> None:
            z = latent.detach().clone().requires_grad_(True)
            (1e-5 * hsic_normalized_cca(z, x, sigma=5.0, epsilon=1e-5, compute_dtype=dtype)).backward()
        return run

    mi_times = interleaved({"float64": mi(torch.float64), "float32": mi(torch.float32)}, args.rounds)
    v64 = float(hsic_normalized_cca(latent, x, compute_dtype=torch.float64))
    v32 = float(hsic_normalized_cca(latent, x, compute_dtype=torch.float32))
    result["mi_ms"] = mi_times
    result["mi_float32_rel_error"] = abs(v32 - v64) / abs(v64)
    log(f"nHSIC fwd+bwd (ms): {json.dumps(mi_times)}; float32 relative error {result['mi_float32_rel_error']:.1e}")

    # 5. Mixed precision on the CPU: bf16 autocast on the training step only, and on the attack as well.
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    steps = interleaved({
        "fp32": lambda: mimir_step(model),
        "bf16_training_only": lambda: mimir_step(model, train_ctx=bf16),
        "bf16_attack_and_training": lambda: mimir_step(model, attack_ctx=bf16, train_ctx=bf16),
    }, args.rounds)
    result["bf16_step_ms"] = steps
    log(f"MIMIR step without optimizer (ms): {json.dumps(steps)}")

    # 6. torch.compile of the encoder and decoder (what the attack and the training forward call).
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.vit.compile()
        compiled.decoder.compile()
        start = time.perf_counter()
        for _ in range(2):
            mimir_step(compiled)
        result["compile_warmup_wall_s"] = time.perf_counter() - start
        result["compile_step_ms"] = interleaved({"eager": lambda: mimir_step(model), "compiled": lambda: mimir_step(compiled)},
                                                args.rounds)
        log(f"torch.compile: first two steps {result['compile_warmup_wall_s']:.0f} s wall; "
            f"steps (ms): {json.dumps(result['compile_step_ms'])}")

    result["machine_at_end"] = machine_description()
    log("\nJSON:\n" + json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
