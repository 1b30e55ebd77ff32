"""What does a MIMIR pretraining step cost over a plain MAE step?

    python benchmarks/step_cost.py                                   # paper ViT-T (CIFAR) and a small model, batch 32 and 64
    python benchmarks/step_cost.py --models small --batch_sizes 64 128 --repeats 30

Both steps run on the same model, batch and optimiser, interleaved in one process (so machine
noise hits both alike); medians over the repetitions. The MIMIR step is split into its parts:
attack (1-step PGD: one forward + one input-only backward), training forward (encoder on x′,
decoder, clean-target loss), MI penalty forward, the joint backward, and the optimiser step.
The MI penalty's own share is also timed on its own (forward + backward from a detached latent).
Peak memory of each step kind is measured in a fresh subprocess (peak-RSS growth over the
process's RSS after building the model, via /proc), since CPU tensors are invisible to CUDA-style counters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODEL_SHAPES, machine_description, median, peak_rss_mib, reset_peak_rss, spread, timed  # noqa: E402

from mimir_hf.modeling import MimirForPreTraining, mimir_config  # noqa: E402
from mimir_hf.pretraining.attack import craft_adversarial_pixels  # noqa: E402

EPSILON, STEP_SIZE, MI_WEIGHT = 8 / 255, 10 / 255, 1e-5


def build(model_name: str, seed: int = 0):
    shape = dict(MODEL_SHAPES[model_name])
    torch.manual_seed(seed)
    model = MimirForPreTraining(mimir_config(shape.pop("size"), shape.pop("image_size"), shape.pop("patch_size"), **shape))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    return model, optimizer


def mae_step(model, optimizer, x, parts: dict[str, list[float]] | None = None) -> None:
    """Plain MAE: forward on x, backward, optimiser step."""
    model.config.mi_weight = 0.0
    optimizer.zero_grad(set_to_none=True)
    holder = {}
    t_forward = timed(lambda: holder.update(out=model(pixel_values=x)))
    t_backward = timed(lambda: holder["out"].loss.backward())
    t_opt = timed(optimizer.step)
    if parts is not None:
        for key, value in (("forward", t_forward), ("backward", t_backward), ("optimizer", t_opt)):
            parts[key].append(value)


def mimir_step(model, optimizer, x, parts: dict[str, list[float]] | None = None) -> None:
    """MIMIR: attack, forward on x′ against clean x, MI penalty, joint backward, optimiser step.

    The same computation as `MimirForPreTraining.forward` with `mi_weight > 0`, split so that each
    part can be timed.
    """
    model.config.mi_weight = 0.0  # the penalty is computed below, separately timed
    optimizer.zero_grad(set_to_none=True)
    holder = {}
    t_attack = timed(lambda: holder.update(adv=craft_adversarial_pixels(model, x, epsilon=EPSILON, step_size=STEP_SIZE, steps=1)))
    t_forward = timed(lambda: holder.update(out=model(pixel_values=x, adversarial_pixel_values=holder["adv"])))
    penalty = model.mi_penalty
    t_mi = timed(lambda: holder.update(mi=MI_WEIGHT * penalty(holder["out"].latent, holder["adv"]).value))
    t_backward = timed(lambda: (holder["out"].loss + holder["mi"]).backward())
    t_opt = timed(optimizer.step)
    if parts is not None:
        for key, value in (("attack", t_attack), ("forward", t_forward), ("mi_forward", t_mi), ("backward", t_backward), ("optimizer", t_opt)):
            parts[key].append(value)


def mi_alone(model, x) -> float:
    """The MI penalty's forward + backward on its own, from a detached latent of the right shape."""
    with torch.no_grad():
        latent = model.vit(x).last_hidden_state
    latent = latent.detach().requires_grad_(True)
    adversarial = x.detach().clone().requires_grad_(False)
    penalty = model.mi_penalty
    return timed(lambda: (MI_WEIGHT * penalty(latent, adversarial).value).backward())


def measure(model_name: str, batch: int, repeats: int, warmup: int) -> dict:
    model, optimizer = build(model_name)
    x = torch.rand(batch, 3, model.config.image_size, model.config.image_size, generator=torch.Generator().manual_seed(1))
    for _ in range(warmup):
        mae_step(model, optimizer, x)
        mimir_step(model, optimizer, x)
    totals = {"mae": [], "mimir": [], "mi_alone": []}
    parts_mae: dict[str, list[float]] = {k: [] for k in ("forward", "backward", "optimizer")}
    parts_mimir: dict[str, list[float]] = {k: [] for k in ("attack", "forward", "mi_forward", "backward", "optimizer")}
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both kinds alike
        totals["mae"].append(timed(lambda: mae_step(model, optimizer, x, parts_mae)))
        totals["mimir"].append(timed(lambda: mimir_step(model, optimizer, x, parts_mimir)))
        totals["mi_alone"].append(mi_alone(model, x))
    return {
        "model": model_name,
        "batch": batch,
        "repeats": repeats,
        "mae_ms": median(totals["mae"]) * 1e3,
        "mimir_ms": median(totals["mimir"]) * 1e3,
        "ratio": median(totals["mimir"]) / median(totals["mae"]),
        "mi_alone_ms": median(totals["mi_alone"]) * 1e3,
        "mi_share": median(totals["mi_alone"]) / median(totals["mimir"]),
        "mae_parts_ms": {k: median(v) * 1e3 for k, v in parts_mae.items()},
        "mimir_parts_ms": {k: median(v) * 1e3 for k, v in parts_mimir.items()},
        "spread": {"mae": spread(totals["mae"]), "mimir": spread(totals["mimir"])},
    }


def memory_probe(model_name: str, batch: int, kind: str) -> float:
    """Peak RSS growth (MiB) over the state after building the model and data, for 3 steps of one kind."""
    model, optimizer = build(model_name)
    x = torch.rand(batch, 3, model.config.image_size, model.config.image_size)
    base = reset_peak_rss()
    step = mae_step if kind == "mae" else mimir_step
    for _ in range(3):
        step(model, optimizer, x)
    return peak_rss_mib() - base


def memory(model_name: str, batch: int) -> dict[str, float]:
    out = {}
    for kind in ("mae", "mimir"):
        result = subprocess.run(
            [sys.executable, __file__, "--_memory_probe", kind, "--models", model_name, "--batch_sizes", str(batch)],
            check=True, capture_output=True, text=True,
        )
        out[kind] = float(result.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cifar-vit-t", "small"], choices=sorted(MODEL_SHAPES))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no_memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--_memory_probe", choices=["mae", "mimir"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_probe:
        print(memory_probe(args.models[0], args.batch_sizes[0], args._memory_probe))
        return

    print("machine:", machine_description())
    print(f"attack: 1-step PGD eps={EPSILON:.4f} alpha={STEP_SIZE:.4f}; MI: nHSIC lambda={MI_WEIGHT}; medians of {args.repeats} interleaved repeats\n")
    results = []
    for model_name in args.models:
        for batch in args.batch_sizes:
            r = measure(model_name, batch, args.repeats, args.warmup)
            if not args.no_memory:
                r["peak_rss_growth_mib"] = memory(model_name, batch)
            results.append(r)
            mp, mm = r["mae_parts_ms"], r["mimir_parts_ms"]
            print(f"== {model_name}, batch {batch}")
            print(f"  MAE step   {r['spread']['mae']}   forward {mp['forward']:.1f} | backward {mp['backward']:.1f} | optimizer {mp['optimizer']:.1f} ms")
            print(f"  MIMIR step {r['spread']['mimir']}   attack {mm['attack']:.1f} | forward {mm['forward']:.1f} | MI fwd {mm['mi_forward']:.1f} "
                  f"| backward {mm['backward']:.1f} | optimizer {mm['optimizer']:.1f} ms")
            print(f"  ratio MIMIR/MAE = {r['ratio']:.3f}   (target <= 1.75; floor ~1.67)")
            print(f"  MI penalty alone (fwd+bwd) {r['mi_alone_ms']:.1f} ms = {100 * r['mi_share']:.2f} % of the MIMIR step (target <= 3 %)")
            if "peak_rss_growth_mib" in r:
                mem = r["peak_rss_growth_mib"]
                print(f"  peak RSS growth over 3 steps: MAE {mem['mae']:.0f} MiB, MIMIR {mem['mimir']:.0f} MiB")
            print(flush=True)
    print("machine at the end:", machine_description())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_description(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
