"""How far is the float32 nHSIC from the float64 one, on latents of real images?

    python benchmarks/mi_precision.py --data /path/to/cifar10            # npz folder, as the recipes take
    python benchmarks/mi_precision.py --data builtin:digits --checkpoint outputs/quickstart-pretrain

`mi_compute_dtype="auto"` computes the penalty in float32 where float64 is slow (consumer GPUs).
This script measures what that costs in accuracy, on the quantity training uses: the encoder's
latent of an adversarial batch x′ (1-step PGD, as in a MIMIR step) and x′ itself. For each batch
size it reports, over several batches, the relative error of the nHSIC value and of its gradient
with respect to the latent (relative L2 error and cosine similarity), float32 against float64,
and the CPU time of each. The encoder is `--checkpoint` (a MIMIR/MAE pretraining output) or, by
default, a freshly MAE-initialised CIFAR ViT-T (say which in any write-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_description  # noqa: E402

from mimir_hf.modeling import MimirForPreTraining, mimir_config  # noqa: E402
from mimir_hf.mutual_information import hsic_normalized_cca  # noqa: E402
from mimir_hf.pretraining import craft_adversarial_pixels  # noqa: E402


def load_images(source: str, image_size: int, count: int) -> torch.Tensor:
    from mimir_hf.data import DataArguments, collate_images, eval_transform, with_transform

    data = DataArguments(dataset=source).load("train", max_samples=count)
    return collate_images(list(with_transform(data, eval_transform(image_size))))["pixel_values"]


def value_and_gradient(latent: torch.Tensor, adversarial: torch.Tensor, dtype: str) -> tuple[float, torch.Tensor, float]:
    z = latent.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    value = hsic_normalized_cca(z, adversarial, sigma=5.0, epsilon=1e-5, compute_dtype=dtype)
    (gradient,) = torch.autograd.grad(value, [z])
    seconds = time.perf_counter() - start
    return float(value), gradient.double(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="builtin:digits", help="npz folder (e.g. CIFAR-10) or builtin:digits")
    parser.add_argument("--checkpoint", default=None, help="a MIMIR / ViT-MAE pretraining checkpoint (default: fresh ViT-T)")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[32, 64, 128, 256])
    parser.add_argument("--batches", type=int, default=4, help="batches per size")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.checkpoint:
        model = MimirForPreTraining.from_pretrained(args.checkpoint)
    else:
        model = MimirForPreTraining(mimir_config("vit-t", 32, 2))
    model.eval()
    size = model.config.image_size
    images = load_images(args.data, size, max(args.batch_sizes) * args.batches)
    print("machine:", machine_description())
    print(f"encoder: {args.checkpoint or 'fresh MAE-initialised cifar-vit-t'}; data: {args.data} ({len(images)} images)\n")
    rows = []
    for batch in args.batch_sizes:
        stats = {"value_rel": [], "grad_rel": [], "grad_cos": [], "t64": [], "t32": []}
        for index in range(args.batches):
            x = images[index * batch:(index + 1) * batch]
            if len(x) < batch:
                break
            adversarial = craft_adversarial_pixels(model, x, epsilon=8 / 255, step_size=10 / 255, steps=1,
                                                   generator=torch.Generator().manual_seed(index))
            with torch.no_grad():
                latent = model(pixel_values=x, adversarial_pixel_values=adversarial).latent
            v64, g64, t64 = value_and_gradient(latent, adversarial, "float64")
            v32, g32, t32 = value_and_gradient(latent, adversarial, "float32")
            stats["value_rel"].append(abs(v32 - v64) / abs(v64))
            stats["grad_rel"].append(float((g32 - g64).norm() / g64.norm()))
            stats["grad_cos"].append(float(torch.nn.functional.cosine_similarity(g32.flatten(), g64.flatten(), dim=0)))
            stats["t64"].append(t64)
            stats["t32"].append(t32)
            if index == 0:
                stats["value64"] = v64
        row = {"batch": batch, "batches": len(stats["t64"]), "nhsic_float64_first_batch": stats.get("value64"),
               "value_rel_error_max": max(stats["value_rel"]), "grad_rel_error_max": max(stats["grad_rel"]),
               "grad_cosine_min": min(stats["grad_cos"]), "cpu_ms_float64": statistics.median(stats["t64"]) * 1e3,
               "cpu_ms_float32": statistics.median(stats["t32"]) * 1e3}
        rows.append(row)
        print(f"batch {batch:4d}: nHSIC {row['nhsic_float64_first_batch']:.4f} | float32 vs float64: value rel. error "
              f"<= {row['value_rel_error_max']:.2e}, gradient rel. error <= {row['grad_rel_error_max']:.2e}, "
              f"cosine >= {row['grad_cosine_min']:.6f} | CPU fwd+bwd {row['cpu_ms_float64']:.1f} ms (fp64) vs "
              f"{row['cpu_ms_float32']:.1f} ms (fp32)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "encoder": args.checkpoint, "data": args.data,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
