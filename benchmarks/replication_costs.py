"""What each stage of a CPU-scale replication costs, per image, for a few candidate model sizes.

    python benchmarks/replication_costs.py                         # the candidates, 2 threads and 1 thread
    python benchmarks/replication_costs.py --shapes small --threads 2 --repeats 5
    python benchmarks/replication_costs.py --config_dir recipes/configs/replicate_cpu_v2   # + the plan's minutes

Measured on the machine it runs on, one process, medians of `--repeats` timed repetitions after a
warm-up, batch 128 (the configs' batch):

- MAE and MIMIR pretraining steps (`step_cost.mae_step` / `mimir_step`: the real attack, model and
  MI penalty, AdamW);
- one FGSM-RS adversarial-training step of the mean-pooled classifier (uniform start, one
  input-gradient step through `mimir_hf.attacks.pgd`, then forward + backward + AdamW);
- one attack iteration of the evaluation (forward + input-only backward through the frozen classifier),
  the unit of PGD-20 (20 of them) and of the APGDs (100 each per attacked image).

With `--config_dir`, the per-image rates are turned into an estimate of every stage of that config
set (epochs x images / rate; evaluation as attack iterations / rate, AutoAttack's APGD-T counted on
an assumed robust share), printed as an estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODEL_SHAPES, machine_description, median, timed  # noqa: E402
from step_cost import build, mae_step, mimir_step  # noqa: E402

from mimir_hf.attacks.objectives import cross_entropy_objective  # noqa: E402
from mimir_hf.attacks.pgd import pgd  # noqa: E402
from mimir_hf.finetuning import mae_to_classifier  # noqa: E402

CANDIDATES = {
    "small": MODEL_SHAPES["small"],  # 96 wide, 4 blocks, patch 4: the replicate_cpu and replicate_cpu_v2 choice
    "w128-d4": {**MODEL_SHAPES["small"], "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512},
    "w192-d4": {**MODEL_SHAPES["small"], "hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 768},
    "w128-d6": {**MODEL_SHAPES["small"], "hidden_size": 128, "num_hidden_layers": 6, "num_attention_heads": 4,
                "intermediate_size": 512},
}
EPSILON = 8 / 255
BATCH = 128


def _rates(shape: str, repeats: int) -> dict[str, float]:
    MODEL_SHAPES.setdefault(shape, CANDIDATES[shape])
    pretrainer, optimizer = build(shape)
    x = torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(BATCH) % 10
    classifier = mae_to_classifier(pretrainer.vit, num_labels=10, pooling="mean")
    classifier_optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)

    def logits(pixels: torch.Tensor) -> torch.Tensor:
        return classifier(pixel_values=pixels).logits

    def fgsm_rs_step() -> None:
        adversarial = pgd(cross_entropy_objective(logits, y), x, epsilon=EPSILON, step_size=1.25 * EPSILON, steps=1,
                          model=classifier, model_mode="eval")
        classifier.train()
        classifier_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(logits(adversarial), y).backward()
        classifier_optimizer.step()

    def attack_iteration() -> None:
        classifier.eval()
        for p in classifier.parameters():
            p.requires_grad_(False)
        z = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(logits(z), y), [z])
        for p in classifier.parameters():
            p.requires_grad_(True)

    steps = {"mae_step": lambda: mae_step(pretrainer, optimizer, x), "mimir_step": lambda: mimir_step(pretrainer, optimizer, x),
             "fgsm_rs_step": fgsm_rs_step, "attack_iteration": attack_iteration}
    rates = {}
    for name, step in steps.items():
        step()  # warm-up
        rates[name] = BATCH / median([timed(step) for _ in range(repeats)])
    return rates


def plan_minutes(config_dir: Path, rates: dict[str, float], threads_note: str, robust_share: float = 0.25,
                 clean_share: float = 0.45) -> dict[str, float]:
    """Minutes per stage of a config set at these rates, one stage at a time (an estimate)."""
    def load(name: str) -> dict:
        path = config_dir / f"{name}.yaml"
        return yaml.safe_load(path.read_text()) if path.is_file() else {}

    train_images = 50_000 - (load("finetune").get("validation_split_size") or 0)
    minutes = {}
    for arm in ("mae", "mimir"):
        config = load(f"pretrain_{arm}")
        minutes[f"pretrain-{arm}"] = config["num_train_epochs"] * train_images / rates[f"{arm}_step"] / 60
    finetune = load("finetune")
    validation = (finetune.get("validation_split_size") or 0) * (finetune.get("eval_attack_steps", 10) + 1)
    minutes["finetune (each arm)"] = (finetune["num_train_epochs"] * (train_images / rates["fgsm_rs_step"]
                                                                      + validation / rates["attack_iteration"])) / 60
    for name in ("evaluate", "evaluate_autoattack"):
        config = load(name)
        if not config:
            continue
        n = config["max_eval_samples"]
        iterations = n  # clean
        iterations += 20 * n * clean_share if "pgd-20" in config["attacks"] else 0  # PGD-20 runs on clean-correct points
        iterations += 20 * n * clean_share * len(config.get("epsilon_sweep") or [])
        if "autoattack" in config["attacks"]:
            iterations += 100 * n * clean_share + 9 * 100 * n * robust_share  # APGD-CE, then APGD-T on what stands
        minutes[f"{name} (each arm)"] = iterations / rates["attack_iteration"] / 60
    minutes["total, one stage at a time"] = (sum(v for k, v in minutes.items() if "each arm" not in k)
                                             + 3 * sum(v for k, v in minutes.items() if "each arm" in k))
    print(f"Estimated minutes for {config_dir} at the {threads_note} rates (clean share {clean_share}, "
          f"robust share {robust_share} assumed):")
    for key, value in minutes.items():
        print(f"  {key:<34} {value:6.1f}")
    return minutes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config_dir", default=None, help="Also estimate this config set's stages (uses the 'small' rates).")
    parser.add_argument("--json", default=None, help="Write the measured rates here.")
    args = parser.parse_args(argv)
    print(machine_description(), flush=True)
    results: dict = {"batch": BATCH, "rates_images_per_second": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in args.shapes:
            rates = _rates(shape, args.repeats)
            results["rates_images_per_second"][f"{shape}/{threads}t"] = rates
            print(f"{shape:>8} {threads} thread(s): " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in rates.items()), flush=True)
    if args.config_dir:
        for threads in args.threads:
            key = f"small/{threads}t"
            if key in results["rates_images_per_second"]:
                results[f"plan_minutes/{threads}t"] = plan_minutes(Path(args.config_dir), results["rates_images_per_second"][key],
                                                                   f"{threads}-thread")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
