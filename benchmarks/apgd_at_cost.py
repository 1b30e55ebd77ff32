"""What does an APGD-AT step cost, and what does the ImageNet SOTA recipe need?

    python benchmarks/apgd_at_cost.py                                  # CPU: a small model at 32 px
    python benchmarks/apgd_at_cost.py --device cuda --models vit-s vit-b --batch_size 80   # the recipe's shapes

One optimizer step of each kind runs on the same model (the mean-pooled BEiT classifier MIMIR
finetunes), batch and optimizer, interleaved, medians over the repetitions:

- `clean`: forward + backward + AdamW step (plain training, the reference point);
- `pgd-1`: the MIMIR ImageNet recipe's attack (1 forward + 1 input-only backward) + the training step;
- `apgd-2`: Singh et al.'s 2-step APGD (3 forwards + 2 input-only backwards) + the training step,
  plus the weight-EMA update (decay 0.9999) that recipe uses.

On CUDA it runs under bf16 autocast, as the configs do, and also prints images per second and
the GPU-hours 300 epochs of ImageNet-1K (1,281,167 images) would take at that throughput on one
device, data loading not included. It imports only the attack layer and transformers (no
`datasets`), so it runs on a bare GPU machine with torch + transformers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from transformers import BeitConfig, BeitForImageClassification  # noqa: E402

from mimir_hf.attacks import apgd, cross_entropy_objective, pgd  # noqa: E402
from mimir_hf.training.ema import WeightEMA  # noqa: E402

IMAGENET_TRAIN_IMAGES = 1_281_167
SHAPES = {
    "small": dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=3, image_size=32, patch_size=4, num_labels=10),
    "vit-s": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=224, patch_size=16, num_labels=1000),
    "vit-b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16, num_labels=1000),
}


def build(name: str, device: torch.device) -> BeitForImageClassification:
    shape = dict(SHAPES[name])
    config = BeitConfig(
        **shape,
        intermediate_size=4 * shape["hidden_size"],
        layer_norm_eps=1e-6,
        use_mask_token=False,
        use_absolute_position_embeddings=True,
        use_relative_position_bias=False,
        layer_scale_init_value=0.0,
        use_mean_pooling=True,
    )
    return BeitForImageClassification(config).to(device).train()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(kind: str, model, optimizer, ema, x, y, device) -> float:
    logits_fn = lambda v: model(pixel_values=v).logits  # noqa: E731
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    synchronize(device)
    start = time.perf_counter()
    with autocast:
        if kind == "pgd-1":
            x = pgd(cross_entropy_objective(logits_fn, y), x, epsilon=4 / 255, step_size=5 / 255, steps=1, model=model, model_mode="eval")
        elif kind == "apgd-2":
            x = apgd(cross_entropy_objective(logits_fn, y), x, epsilon=4 / 255, steps=2, model=model, model_mode="eval")
        loss = F.cross_entropy(logits_fn(x).float(), y, label_smoothing=0.1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if kind == "apgd-2":
        ema.update(model)
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["small"], choices=sorted(SHAPES))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name} | torch {torch.__version__} | batch {args.batch_size} | {args.repeats} repeats, medians\n")
    print("| model | step | median s/step | × clean | images/s | 300 ImageNet epochs, device-hours |")
    print("|---|---|---|---|---|---|")
    kinds = ("clean", "pgd-1", "apgd-2")
    for model_name in args.models:
        torch.manual_seed(0)
        model = build(model_name, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
        ema = WeightEMA(model, decay=0.9999)
        size = SHAPES[model_name]["image_size"]
        x = torch.rand(args.batch_size, 3, size, size, device=device)
        y = torch.randint(0, SHAPES[model_name]["num_labels"], (args.batch_size,), device=device)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for repeat in range(args.warmup + args.repeats):
            for kind in kinds:  # interleaved, so drift hits every kind alike
                elapsed = step(kind, model, optimizer, ema, x, y, device)
                if repeat >= args.warmup:
                    times[kind].append(elapsed)
        clean = statistics.median(times["clean"])
        for kind in kinds:
            median = statistics.median(times[kind])
            throughput = args.batch_size / median
            hours = f"{300 * IMAGENET_TRAIN_IMAGES / throughput / 3600:.0f}" if size == 224 else "— (not an ImageNet shape)"
            print(f"| {model_name} | {kind} | {median:.4f} | {median / clean:.2f} | {throughput:.0f} | {hours} |")
    if device.type == "cuda":
        print(f"\npeak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
