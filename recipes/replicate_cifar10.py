"""The paper's comparison in one command: from scratch vs MAE -> adversarial finetuning vs MIMIR -> the same
finetuning on CIFAR-10, with paired statistics (`mimir_hf.replication`).

    python recipes/replicate_cifar10.py --data_dir data/cifar10           # CPU scale, small configs
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --skip_existing        # rerun after a crash
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --arms a,c --max_train_samples 2560 --output_dir outputs/rep-small
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --config_set recipes/configs/replicate_paper.yaml \
        --output_dir outputs/replicate-paper --skip_existing              # the paper's scale, 4 GPUs
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --config_set recipes/configs/replicate_cpu_v3.yaml \
        --output_dir outputs/replicate-v3 --jobs 2 --skip_existing --archive_dir docs/results/cpu-v3 --archive_weights
                                                          # ablations, a second seed and adaptive attacks
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --config_dir recipes/configs/replicate_gpu --jobs 4 \
        --time_limit 500                      # one GPU, stages sharing it; stopped at 500 s, the finished ones reported

`--data_dir` holds CIFAR-10 as train_batch_1..5.npz + test.npz (or is any other `--dataset` source,
e.g. the Hub's uoft-cs/cifar10); it is checked before the first stage starts.

Arms (identical finetuning config, seeds, data order and evaluation; only the starting weights differ):
    a  adversarial training from scratch (same architecture, random MAE-style init)
    b  plain MAE pretraining (attack_steps 0, mi_weight 0) -> the same adversarial finetuning
    c  MIMIR pretraining (1-step PGD 8/255, alpha 10/255, nHSIC 1e-5, sigma 5) -> the same finetuning
A config set may define more (`arms:`), each a pretraining config plus overrides (ablations). A run is
an arm at a seed: `--arms b@1` trains arm b with `--seed 1 --data_seed 1` in both training stages
(held-out split and test images unchanged) into folders suffixed `-seed1`; a bare `b` keeps the
configs' seeds. Runs are planned in the order given, each run's stages together, so with `--jobs` the
first runs finish first. Tables name the finetuning by its config ("FGSM-RS", "PGD-10-AT", ...).

Every stage is a subprocess of the ordinary recipe (recipes/pretrain.py, finetune.py, evaluate.py)
with `--config <stage config>` plus a few overrides (data, output folder, starting weights, seed), so
each one is exactly the command a user would type; the commands, exit statuses, wall times and the
commit of the code are saved in `<output_dir>/stages.json` as they finish. The config folder holds
pretrain_mae.yaml, pretrain_mimir.yaml, finetune.yaml, evaluate.yaml and optionally
evaluate_autoattack.yaml (a second evaluation per run) and evaluate_adaptive.yaml (for the runs named
in `--adaptive`). A config set (`--config_set`, a YAML file) names them instead, and may add an
Accelerate config (the training stages then run under `accelerate launch --config_file`), default
extra options, arms, runs and adaptive runs.

`--launch_limit S` starts no stage after S seconds and `--time_limit S` stops the running ones at S
seconds (for a machine lent for a fixed time): the finished stages' results are still written, the
others are listed as unfinished, and the recipe exits with status 4.

At the end `<output_dir>/results.json`, `results.md` and `results.png` are written from the
evaluations' robustness.json and per_sample.npz only (accuracies, worst case, exact McNemar tests and
paired bootstrap intervals between the runs of one seed). `--archive_dir` copies the small result files
(and with `--archive_weights` the finetuned classifiers) after every stage, machine paths replaced.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mimir_hf.cli import parse_recipe_args, run_recipe
from mimir_hf.replication import Replication, ReplicationArguments, StageFailedError, run_replication


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_recipe_args((ReplicationArguments,), argv)
    return run_replication(Replication.from_arguments(args, recipes_dir=Path(__file__).resolve().parent))


if __name__ == "__main__":
    sys.exit(run_recipe(main, user_errors=(StageFailedError,)))
