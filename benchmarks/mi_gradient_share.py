"""How much of a MIMIR pretraining step's gradient comes from the MI penalty?

    python benchmarks/mi_gradient_share.py --config recipes/configs/replicate_cpu_v2/pretrain_mimir.yaml \
        --dataset <cifar10 npz folder> --json mi_share.json                 # a fresh model, as training starts
    python benchmarks/mi_gradient_share.py --config recipes/configs/replicate_cpu_v2/pretrain_mimir.yaml \
        --dataset <cifar10 npz folder> --model_name_or_path <pretraining output>   # a trained encoder

The MIMIR loss is reconstruction + λ · nHSIC(Z, X′). With the paper's λ = 1e-5 the logged penalty is
about a thousandth of the reconstruction loss, which raises the question whether it moves the
parameters at all. The loss values do not answer it (an additive term can be small and still have
a large gradient); the parameter gradients do. For each batch this script crafts x′ exactly as a
training step does (the config's attack, target and mask ratio), runs the training forward, and
takes the gradient of the reconstruction loss and of the *unweighted* nHSIC with respect to every
parameter. It reports, over the batches (median and range):

- `ratio` = ‖∇θ nHSIC‖ / ‖∇θ reconstruction‖, the gradient share per unit λ;
- the share at the config's λ (λ · ratio) and the λ that would make the share `--target_share`
  (target / ratio: the share is linear in λ);
- the cosine between the two gradients (negative: the penalty pulls against reconstruction);
- the loss values, and λ · nHSIC / reconstruction, the share the logs show.

Settings (architecture, attack, λ, σ, estimator, training target, batch size, held-out split) come
from a pretraining config, read by the recipe's own parser, so the numbers describe that recipe.
The batches are training images (the held-out validation images are removed first), without
augmentation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_description  # noqa: E402

from mimir_hf.cli import parse_recipe_args  # noqa: E402
from mimir_hf.data import DataArguments, collate_images, eval_transform, with_transform  # noqa: E402
from mimir_hf.data.splits import hold_out_validation  # noqa: E402
from mimir_hf.pretraining import MimirTrainingArguments, craft_adversarial_pixels  # noqa: E402
from mimir_hf.pretraining.run import PretrainModelArguments, build_model  # noqa: E402


def gradient_norms(model, pixels: torch.Tensor, args: MimirTrainingArguments, seed: int) -> dict[str, float]:
    """One training-step forward on `pixels`; the two gradients' norms, their cosine and the loss values."""
    generator = torch.Generator().manual_seed(seed)
    adversarial = craft_adversarial_pixels(model, pixels, epsilon=args.attack_epsilon, step_size=args.attack_step_size,
                                           steps=args.attack_steps, target=args.attack_target, generator=generator)
    num_patches = model.vit.embeddings.patch_embeddings.num_patches
    noise = torch.rand(pixels.shape[0], num_patches, generator=generator)
    model.config.mi_weight = 1.0  # the forward then returns the unweighted nHSIC as mi_loss
    try:
        outputs = model(pixel_values=pixels, adversarial_pixel_values=adversarial, noise=noise,
                        reconstruction_target=adversarial if args.training_target == "adversarial" else None)
    finally:
        model.config.mi_weight = args.mi_weight
    if bool(outputs.mi_dropped):
        raise RuntimeError(f"the nHSIC estimate failed on batch {seed}; no gradient to measure")
    parameters = [p for p in model.parameters() if p.requires_grad]
    reconstruction = torch.autograd.grad(outputs.reconstruction_loss, parameters, retain_graph=True, allow_unused=True)
    penalty = torch.autograd.grad(outputs.mi_loss, parameters, allow_unused=True)

    def flat(gradients) -> torch.Tensor:
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().double()
                          for g, p in zip(gradients, parameters)])

    g_rec, g_mi = flat(reconstruction), flat(penalty)
    return {
        "reconstruction_loss": float(outputs.reconstruction_loss.detach()),
        "nhsic": float(outputs.mi_loss.detach()),
        "grad_norm_reconstruction": float(g_rec.norm()),
        "grad_norm_nhsic": float(g_mi.norm()),
        "ratio": float(g_mi.norm() / g_rec.norm()),
        "cosine": float(torch.nn.functional.cosine_similarity(g_rec, g_mi, dim=0)),
    }


def summarise(rows: list[dict], mi_weight: float, target_share: float) -> dict:
    def spread(key: str) -> dict:
        values = [row[key] for row in rows]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    ratio = statistics.median(row["ratio"] for row in rows)
    loss_share = [mi_weight * row["nhsic"] / row["reconstruction_loss"] for row in rows]
    return {
        "batches": len(rows),
        "ratio": spread("ratio"),
        "cosine": spread("cosine"),
        "reconstruction_loss": spread("reconstruction_loss"),
        "nhsic": spread("nhsic"),
        "mi_weight": mi_weight,
        "gradient_share_at_mi_weight": mi_weight * ratio,
        "loss_share_at_mi_weight": statistics.median(loss_share),
        "target_share": target_share,
        "mi_weight_for_target_share": target_share / ratio,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a pretraining config (recipes/configs/...yaml)")
    parser.add_argument("--dataset", default=None, help="overrides the config's dataset (e.g. a CIFAR-10 npz folder)")
    parser.add_argument("--model_name_or_path", default=None, help="a pretraining checkpoint (default: a fresh model)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--target_share", type=float, default=0.1,
                        help="the gradient share for which the λ is reported (default: a tenth)")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args(argv)

    recipe = ["--config", options.config, "--use_cpu", "true", "--output_dir", "unused", "--report_to", "none"]
    recipe += ["--dataset", options.dataset] if options.dataset else []
    recipe += ["--model_name_or_path", options.model_name_or_path] if options.model_name_or_path else []
    model_args, data_args, args = parse_recipe_args((PretrainModelArguments, DataArguments, MimirTrainingArguments), recipe)
    torch.manual_seed(args.seed)
    image_size = data_args.resolve_image_size(None)
    model = build_model(model_args, image_size)
    image_size = model.config.image_size
    batch = args.per_device_train_batch_size
    images = data_args.load(data_args.train_split)
    if data_args.validation_split_size is not None:
        images, _ = hold_out_validation(images, data_args.validation_split_size, seed=data_args.validation_split_seed)
    images = images.select(range(min(len(images), batch * options.batches)))
    pixels = collate_images(list(with_transform(images, eval_transform(image_size, data_args.eval_crop_fraction))))["pixel_values"]
    model.train()
    rows = [gradient_norms(model, pixels[i * batch:(i + 1) * batch], args, seed=i)
            for i in range(len(pixels) // batch)]
    if not rows:
        raise SystemExit(f"fewer than one batch of {batch} images in {data_args.dataset!r}")
    summary = summarise(rows, args.mi_weight, options.target_share)
    result = {"machine": machine_description(), "config": options.config, "dataset": str(data_args.dataset),
              "model": options.model_name_or_path or "fresh model (the config's architecture, MAE initialisation)",
              "batch_size": batch, "attack_steps": args.attack_steps, "training_target": args.training_target,
              "summary": summary, "per_batch": rows}
    ratio = summary["ratio"]
    print(f"model: {result['model']}; {summary['batches']} batches of {batch}")
    print(f"‖∇ nHSIC‖ / ‖∇ reconstruction‖ per unit λ: median {ratio['median']:.3g} (range {ratio['min']:.3g}-{ratio['max']:.3g}); "
          f"cosine median {summary['cosine']['median']:+.3f}")
    print(f"at λ = {args.mi_weight:g}: gradient share {summary['gradient_share_at_mi_weight']:.3g}, "
          f"loss share {summary['loss_share_at_mi_weight']:.3g}")
    print(f"λ for a gradient share of {options.target_share:g}: {summary['mi_weight_for_target_share']:.3g}")
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
