"""What does robustness evaluation cost?

    python benchmarks/eval_cost.py                                  # small + CIFAR ViT-T classifiers, 100 images
    python benchmarks/eval_cost.py --checkpoint outputs/quickstart-finetune --data builtin:digits

1. PGD-20 through `mimir_hf.evaluation` (the shared PGD core, with its projection, random start
   and bookkeeping) against the bare floor: 20 × (forward + input-gradient backward) of the same
   model on the same batch, interleaved, medians. Target: ≤ 1.1×.
2. AutoAttack "standard" (the authors' `pyautoattack`) wall time per 100 images. AutoAttack skips
   points already misclassified, so its time depends on how robust the model is: a random model
   is broken at once by APGD-CE. Pass a robust `--checkpoint` for a meaningful figure; the script
   prints the clean and AutoAttack accuracy next to the time so the number can be read honestly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODEL_SHAPES, machine_description, median, spread, timed  # noqa: E402

from mimir_hf.evaluation import AttackSettings, LogitsModel, build_attack, load_classifier  # noqa: E402
from mimir_hf.modeling import encoder_kwargs  # noqa: E402


def random_classifier(shape_name: str, num_labels: int = 10) -> LogitsModel:
    shape = dict(MODEL_SHAPES[shape_name])
    kwargs = encoder_kwargs(shape.pop("size"), shape.pop("image_size"), shape.pop("patch_size"))
    kwargs.update(shape)
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**kwargs, num_labels=num_labels)).eval()
    return LogitsModel(model)


def floor_loop(model: LogitsModel, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """The irreducible work of k-step PGD: k forwards and k input-only backwards."""
    for _ in range(steps):
        z = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(z), y)
        torch.autograd.grad(loss, [z])


def pgd_overhead(model: LogitsModel, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int) -> dict:
    attack = build_attack(f"pgd-{steps}", AttackSettings())
    ours, floor = [], []
    attack.run(model, x, y)  # warm-up
    for _ in range(repeats):
        ours.append(timed(lambda: attack.run(model, x, y)))
        floor.append(timed(lambda: floor_loop(model, x, y, steps)))
    return {"ours": ours, "floor": floor, "ratio": median(ours) / median(floor)}


def autoattack_time(model: LogitsModel, x: torch.Tensor, y: torch.Tensor) -> dict:
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    attack = build_attack("autoattack", AttackSettings())
    start = time.perf_counter()
    adversarial = attack.run(model, x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        robust = (model(adversarial).argmax(1) == y).float().mean().item()
    return {"seconds": seconds, "clean": clean, "robust": robust}


def load_data(source: str | None, n: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if source is None:
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, image_size, image_size, generator=g), torch.randint(0, 10, (n,), generator=g)
    from mimir_hf.data import DataArguments, collate_images, eval_transform, with_transform

    data = DataArguments(dataset=source).load("test", require_labels=True, max_samples=n)
    batch = collate_images(list(with_transform(data, eval_transform(image_size))))
    return batch["pixel_values"], batch["labels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small", "cifar-vit-t"], choices=sorted(MODEL_SHAPES))
    parser.add_argument("--checkpoint", default=None, help="a trained classifier (path) instead of random models")
    parser.add_argument("--data", default=None, help="data source for --checkpoint (e.g. builtin:digits); default random pixels")
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip_autoattack", action="store_true")
    args = parser.parse_args()

    print("machine:", machine_description())
    targets = []
    if args.checkpoint:
        model, _, _ = load_classifier(args.checkpoint)
        targets.append((args.checkpoint, model))
    else:
        targets.extend((name, random_classifier(name)) for name in args.models)

    for name, model in targets:
        model.eval()
        size = model.model.config.image_size if hasattr(model, "model") else 32
        x, y = load_data(args.data if args.checkpoint else None, args.num_images, size)
        print(f"\n== {name}: {args.num_images} images, {size}x{size}")
        r = pgd_overhead(model, x, y, args.steps, args.repeats)
        print(f"  PGD-{args.steps} via mimir_hf.evaluation {spread(r['ours'])}")
        print(f"  floor {args.steps} x (fwd + input bwd)  {spread(r['floor'])}")
        print(f"  ratio = {r['ratio']:.3f}   (target <= 1.1)")
        if not args.skip_autoattack:
            a = autoattack_time(model, x, y)
            per_100 = a["seconds"] * 100 / args.num_images
            print(f"  AutoAttack standard: {a['seconds']:.1f} s for {args.num_images} images = {per_100:.1f} s per 100 "
                  f"(clean {a['clean']:.2%}, AutoAttack {a['robust']:.2%}: time grows with the number of robust points)")
    print("\nmachine at the end:", machine_description())


if __name__ == "__main__":
    main()
