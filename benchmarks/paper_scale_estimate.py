"""GPU-hours and memory per stage of the paper-scale replication, *estimated* from counted FLOPs.

No GPU was available when this was written, so nothing here is a GPU measurement. What is measured,
on the CPU, with the real models of `recipes/configs/replicate_paper.yaml` (ViT-T, 32 px, patch 2):

- the FLOPs of one forward, one training forward + backward and one attack step (forward + input
  gradient, parameters frozen as the PGD core does) per image, counted by `torch.utils.flop_counter`;
- the bytes of the activations autograd keeps for one image (saved-tensor hooks), in float32.

Everything else is arithmetic written below: the number of such passes per stage (from the configs),
the accuracy that decides how many images each evaluation attack still works on (the paper's published
ViT-T numbers), and an assumed fraction of the GPU's peak that the run reaches (`--mfu`, printed with
the result). A ViT as small as ViT-T (width 192, 65 visible tokens per image in pretraining, 257 in
finetuning) keeps a large GPU far from its peak: DeiT-Ti (5 M parameters, 197 tokens, 2.6 GFLOP per
image) was published at 2536 images/s of inference on a V100, about 5 % of that GPU's 125 TFLOP/s.
The default range is therefore 2-10 % of the peak. Measure on the GPU and replace the estimate when
one is available.

    python benchmarks/paper_scale_estimate.py                 # H100/H200-class GPUs (989 dense bf16 TFLOP/s)
    python benchmarks/paper_scale_estimate.py --peak_tflops 312 --gpu_name A100
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from mimir_hf.finetuning import mae_to_classifier
from mimir_hf.modeling import MimirForPreTraining, mimir_config

TRAIN_IMAGES = 50_000
EVAL_IMAGES = 1_000
NUM_GPUS = 4
PRETRAIN_EPOCHS = 800
FINETUNE_EPOCHS = 50
FINETUNE_PGD_STEPS = 10
PRETRAIN_ATTACK_STEPS = 1
# The paper's ViT-T on CIFAR-10 (docs/MIMIR.md): attacks after the first run only on images still correct.
CLEAN_ACCURACY = 0.848
ROBUST_ACCURACY = 0.53
# evaluate_cifar10.yaml: attack -> (gradient steps per image, share of the images it runs on)
EVALUATION = {
    "pgd-20": (20, "clean"), "pgd-100": (100, "clean"), "cw-30": (30, "clean"),
    "pgd-mi (100)": (100, "clean"), "pgd-feature (100)": (100, "clean"),
    "sweep: 5 x pgd-20": (5 * 20, "clean"),
    "autoattack: apgd-ce": (100, "clean"), "autoattack: apgd-t (9 x 100)": (900, "robust"),
    "autoattack: fab-t (9 x 100, ~1.5 steps each)": (1350, "robust"),
}
SQUARE_QUERIES = 5000  # forwards only, on the still-robust images (AutoAttack's Square + the separate Square run)


@dataclass
class PassCost:
    flops: float  # per image
    activation_bytes: float  # per image, float32, what autograd keeps for the backward


def _count(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _saved_bytes(fn) -> float:
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return float(total)


def measure(batch: int = 4) -> dict[str, PassCost]:
    torch.manual_seed(0)
    mae = MimirForPreTraining(mimir_config("vit-t", 32, mi_weight=0.0))  # the nHSIC term is counted apart
    classifier = mae_to_classifier(mae, num_labels=10)
    x = torch.rand(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))

    def mae_loss(inputs):
        return mae(pixel_values=inputs, adversarial_pixel_values=inputs).loss

    def classifier_loss(inputs):
        return torch.nn.functional.cross_entropy(classifier(pixel_values=inputs).logits, labels)

    def train(loss_fn):
        return lambda: loss_fn(x).backward()

    def attack_step(model, loss_fn):
        def step():
            model.requires_grad_(False)
            inputs = x.clone().requires_grad_(True)
            loss_fn(inputs).backward()  # = autograd.grad w.r.t. the input (FlopCounterMode's hooks reject .grad())
            model.requires_grad_(True)
        return step

    costs = {}
    with torch.no_grad():
        costs["classifier forward"] = PassCost(_count(lambda: classifier(pixel_values=x)) / batch, 0.0)
    costs["MAE training step"] = PassCost(_count(train(mae_loss)) / batch, _saved_bytes(lambda: mae_loss(x)) / batch)
    costs["MAE attack step"] = PassCost(_count(attack_step(mae, mae_loss)) / batch, 0.0)
    costs["classifier training step"] = PassCost(
        _count(train(classifier_loss)) / batch, _saved_bytes(lambda: classifier_loss(x)) / batch
    )
    costs["classifier attack step"] = PassCost(_count(attack_step(classifier, classifier_loss)) / batch, 0.0)
    return costs


def stage_flops(costs: dict[str, PassCost]) -> dict[str, float]:
    """Total FLOPs of each stage of the paper-scale replication (per arm where it repeats)."""
    mae_step, mae_attack = costs["MAE training step"].flops, costs["MAE attack step"].flops
    cls_step, cls_attack = costs["classifier training step"].flops, costs["classifier attack step"].flops
    forward = costs["classifier forward"].flops
    correct, robust = CLEAN_ACCURACY * EVAL_IMAGES, ROBUST_ACCURACY * EVAL_IMAGES
    evaluation = EVAL_IMAGES * forward
    for steps, subset in EVALUATION.values():
        evaluation += steps * cls_attack * (correct if subset == "clean" else robust)
    evaluation += 2 * SQUARE_QUERIES * forward * robust
    return {
        "pretrain MAE": PRETRAIN_EPOCHS * TRAIN_IMAGES * mae_step,
        "pretrain MIMIR": PRETRAIN_EPOCHS * TRAIN_IMAGES * (mae_step + PRETRAIN_ATTACK_STEPS * mae_attack),
        "finetune (each arm)": FINETUNE_EPOCHS * TRAIN_IMAGES * (cls_step + FINETUNE_PGD_STEPS * cls_attack),
        "evaluate (each arm)": evaluation,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="Dense bf16 peak of one GPU (H100/H200 SXM: 989).")
    parser.add_argument("--gpu_name", default="H100/H200")
    parser.add_argument("--mfu", type=float, nargs=2, default=(0.02, 0.10), help="Assumed fraction of the peak reached: low high.")
    args = parser.parse_args()

    costs = measure()
    print("Counted on the CPU (torch.utils.flop_counter), per image, ViT-T 32 px patch 2:")
    for name, cost in costs.items():
        memory = f", activations kept {cost.activation_bytes / 2**20:.1f} MiB (fp32)" if cost.activation_bytes else ""
        print(f"  {name:26s} {cost.flops / 1e9:7.2f} GFLOP{memory}")
    low, high = args.mfu
    print(f"\nESTIMATE, not a measurement: {args.gpu_name} at {args.peak_tflops:g} TFLOP/s peak, "
          f"{100 * low:.0f}-{100 * high:.0f} % of it reached; 4 GPUs assumed to scale perfectly")
    print(f"{'stage':22s} {'PFLOP':>9s} {'GPU-hours':>16s} {'wall on 4 GPUs':>16s}")
    total = [0.0, 0.0]
    for name, flops in stage_flops(costs).items():
        hours = [flops / (args.peak_tflops * 1e12 * share) / 3600 for share in (high, low)]
        gpus = NUM_GPUS if not name.startswith("evaluate") else 1
        repeat = 3 if "each arm" in name else 1
        total = [t + repeat * h for t, h in zip(total, hours)]
        print(f"{name:22s} {flops / 1e15:9.1f} {hours[0]:7.1f} - {hours[1]:6.1f} {hours[0] / gpus:7.1f} - {hours[1] / gpus:5.1f} h"
              + ("  (1 GPU)" if gpus == 1 else ""))
    print(f"{'all 8 stages':22s} {'':9s} {total[0]:7.0f} - {total[1]:6.0f}")

    # Memory per GPU: fp32 weights + gradients + AdamW moments, plus the activations of one training step.
    print("\nMemory per GPU (estimate: fp32 weights, grads and AdamW moments + kept activations; bf16 autocast keeps "
          "roughly half of the activations):")
    params = {"MAE (pretraining)": sum(p.numel() for p in MimirForPreTraining(mimir_config("vit-t", 32)).parameters()),
              "classifier (finetuning)": None}
    torch.manual_seed(0)
    params["classifier (finetuning)"] = sum(
        p.numel() for p in mae_to_classifier(MimirForPreTraining(mimir_config("vit-t", 32)), num_labels=10).parameters()
    )
    for (label, count), (cost_name, batch) in zip(params.items(), (("MAE training step", 128), ("classifier training step", 32))):
        static = 16 * count
        activations = costs[cost_name].activation_bytes * batch
        print(f"  {label:24s} {count / 1e6:5.2f} M parameters: {static / 2**30:.2f} GiB states + "
              f"{activations / 2**30:.2f} GiB activations at {batch} images per GPU = {(static + activations) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
