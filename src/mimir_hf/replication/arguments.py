"""`ReplicationArguments`: what a user chooses for a replication run (recipes/replicate_cifar10.py).

The options a replication needs beyond the stage configs themselves: where the data and outputs
are, which runs (arm x seed) to train, how many stages at once, time limits for a lent machine,
and where to archive the evidence. `Replication.from_arguments` resolves them against the config
set into the plan that the rest of the package works from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ReplicationArguments", "DEFAULT_CONFIG_DIR"]

# The repository's recipes/ (the stages run them); None when the package is installed without them.
_REPOSITORY_RECIPES = Path(__file__).resolve().parents[3] / "recipes"
DEFAULT_CONFIG_DIR = str(_REPOSITORY_RECIPES / "configs" / "replicate_cpu")


@dataclass
class ReplicationArguments:
    r"""
    Options of a replication run. Every field is a command-line flag of recipes/replicate_cifar10.py.

    Parameters:
        data_dir (`str`, *optional*):
            CIFAR-10 as train_batch_*.npz + test.npz, or any `--dataset` source; required for a run.
        output_dir (`str`, defaults to `"outputs/replicate-cifar10"`):
            One folder per stage goes here, plus stages.json and the results.
        config_dir (`str`):
            Folder holding pretrain_mae.yaml, pretrain_mimir.yaml, finetune.yaml, evaluate.yaml and
            optionally evaluate_autoattack.yaml / evaluate_adaptive.yaml.
        config_set (`str`, *optional*):
            A YAML file naming the stage configs (paths relative to it) and optionally an Accelerate
            config, default extra arguments, extra arms, the runs and the adaptive runs; replaces
            `config_dir`.
        arms (`str`, *optional*):
            Comma-separated runs in priority order: an arm (a scratch, b MAE, c MIMIR, or one the config
            set defines), optionally at a seed (`b@1`). Default: the config set's `runs`, else a,b,c.
        adaptive (`str`, *optional*):
            Comma-separated runs that also get the evaluate_adaptive evaluation. Default: the config
            set's `adaptive`, else every run when that config exists.
    """

    data_dir: str | None = field(
        default=None, metadata={"help": "Required for a run: CIFAR-10 as train_batch_*.npz + test.npz (or any --dataset source)."}
    )
    output_dir: str = field(default="outputs/replicate-cifar10", metadata={"help": "Folder of the stage outputs and results."})
    config_dir: str = field(default=DEFAULT_CONFIG_DIR, metadata={"help": "Folder with the stage configs."})
    config_set: str | None = field(
        default=None,
        metadata={"help": "A YAML file naming the stage configs (paths relative to it), optionally accelerate_config, "
                          "pretrain_args/finetune_args/eval_args, arms, runs and adaptive; replaces --config_dir. "
                          "recipes/configs/replicate_paper.yaml is the paper's scale."},
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={"help": "Run the training stages under `accelerate launch --config_file` this file; overrides the "
                          "config set's ('none': plain processes)."},
    )
    arms: str | None = field(
        default=None,
        metadata={"help": "Comma-separated runs in priority order: arms a (scratch), b (MAE), c (MIMIR) or one the config "
                          "set defines, each optionally at a seed (b@1). Default: the config set's `runs`, else a,b,c."},
    )
    adaptive: str | None = field(
        default=None,
        metadata={"help": "Comma-separated runs (of --arms) that also get the evaluate_adaptive evaluation. Default: the "
                          "config set's `adaptive`, else every run when that config exists."},
    )
    skip_existing: bool = field(
        default=False,
        metadata={"help": "Skip stages whose final outputs exist; an unfinished training stage resumes from its last checkpoint."},
    )
    scale_factor: float | None = field(
        default=None, metadata={"help": "Multiply the configs' max_train_samples (every training stage) by this."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Training subset of every training stage."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluated test images of the first evaluation."})
    max_steps: int | None = field(default=None, metadata={"help": "Cap every training stage (smoke tests only)."})
    autoattack_version: str | None = field(
        default=None,
        metadata={"help": "Override the evaluations' AutoAttack version.", "choices": ["standard", "plus", "custom"]},
    )
    pretrain_args: str = field(default="", metadata={"help": "Extra overrides for every pretraining stage (one quoted string)."})
    finetune_args: str = field(default="", metadata={"help": "Extra overrides for every finetuning stage."})
    eval_args: str = field(default="", metadata={"help": "Extra overrides for every evaluation."})
    bootstrap_samples: int = field(default=10_000, metadata={"help": "Bootstrap resamples of the test images for the paired statistics."})
    bootstrap_seed: int = field(default=0, metadata={"help": "Seed of that resampling."})
    jobs: int = field(
        default=1,
        metadata={"help": "Stages run at once, each as soon as the stage it starts from has finished. With more than one, "
                          "each stage's output goes to <output_dir>/logs/<stage>.log and, unless OMP_NUM_THREADS is set, "
                          "each gets cpu_count // jobs threads."},
    )
    archive_dir: str | None = field(
        default=None,
        metadata={"help": "Also copy the run's small result files (never checkpoints) here after every stage, machine "
                          "paths replaced, so that the evidence survives a change of machine."},
    )
    archive_weights: bool = field(
        default=False,
        metadata={"help": "With --archive_dir, also copy each finetuned classifier's model.safetensors (if under 5 MiB)."},
    )
    results_only: bool = field(default=False, metadata={"help": "Run no stage: write the results (and the archive) from what exists."})
    launch_limit: float | None = field(
        default=None, metadata={"help": "Seconds after the start past which no stage is started (exit status 4)."}
    )
    time_limit: float | None = field(
        default=None,
        metadata={"help": "Seconds after the start at which running stages are stopped (SIGTERM, then SIGKILL); implies "
                          "--launch_limit at most this."},
    )
    progress_every: float = field(
        default=60.0, metadata={"help": "With --jobs > 1, print the running stages and their last log line this often (0: never)."}
    )
    python: str | None = field(default=None, metadata={"help": "Interpreter that runs the recipes (default: this one)."})
    dry_run: bool = field(default=False, metadata={"help": "Print the stage commands and exit."})

    def __post_init__(self) -> None:
        if self.scale_factor is not None and self.scale_factor <= 0:
            raise ValueError(f"scale_factor must be > 0, got {self.scale_factor}.")
        if self.bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be >= 1, got {self.bootstrap_samples}.")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}.")
        for name in ("launch_limit", "time_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}.")
        if self.time_limit is not None:
            self.launch_limit = self.time_limit if self.launch_limit is None else min(self.launch_limit, self.time_limit)
        if self.progress_every < 0:
            raise ValueError(f"progress_every must be >= 0, got {self.progress_every}.")
