"""The paper's comparison in one command: scratch PGD-AT vs MAE -> PGD-AT vs MIMIR -> PGD-AT on CIFAR-10.

    python recipes/replicate_cifar10.py --data_dir data/cifar10           # CPU scale, ~80 min on 2 idle cores
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --skip_existing        # rerun after a crash
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --arms a,c --max_train_samples 2560 --output_dir outputs/rep-small
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --config_set recipes/configs/replicate_paper.yaml \
        --output_dir outputs/replicate-paper --skip_existing              # the paper's scale, 4 GPUs
    python recipes/replicate_cifar10.py --data_dir data/cifar10 --config_dir recipes/configs/replicate_gpu --jobs 4 \
        --time_limit 500                      # one GPU, stages sharing it; stopped at 500 s, the finished ones reported

`--data_dir` holds CIFAR-10 as train_batch_1..5.npz + test.npz (or is any other `--dataset` source,
e.g. the Hub's uoft-cs/cifar10); it is checked before the first stage starts.

Arms (identical finetuning config, seeds, data order and evaluation; only the starting weights differ):
    a  adversarial training from scratch (same architecture, random MAE-style init)
    b  plain MAE pretraining (attack_steps 0, mi_weight 0) -> the same adversarial finetuning
    c  MIMIR pretraining (1-step PGD 8/255, alpha 10/255, nHSIC 1e-5, sigma 5) -> the same finetuning
A config set may define more arms (`arms:`), each a pretraining config plus overrides (ablations).
A run is an arm at a seed: `--arms b@1` trains arm b with `--seed 1 --data_seed 1` in both training
stages (held-out split and test images unchanged) into folders suffixed `-seed1`; a bare `b` keeps the
configs' seeds and the plain folder names. Runs are planned in the order given (each run's stages
together), so with `--jobs` the first runs finish first. The label of the finetuning ("FGSM-RS",
"PGD-10-AT", ...) is read from the finetune config.

Every stage is a subprocess of the ordinary recipe (recipes/pretrain.py, finetune.py, evaluate.py)
with `--config <config_dir>/<stage>.yaml` plus a few overrides (data, output folder, starting
weights), so each one is exactly the command a user would type; the commands are printed and saved
in `<output_dir>/stages.json`. The config directory must hold pretrain_mae.yaml, pretrain_mimir.yaml,
finetune.yaml (shared by the three arms) and evaluate.yaml. A config set (`--config_set`, a YAML
file) names the four configs instead, and may add an Accelerate config and default extra options.

With `--accelerate_config FILE` (or `accelerate_config:` in the config set) the five training stages
run under `accelerate launch --config_file FILE` (multi-GPU, multi-node, FSDP: whatever the file
says); the evaluations stay single-process.

`--launch_limit S` starts no stage after S seconds and `--time_limit S` stops the running ones at S
seconds (for a machine lent for a fixed time): the finished stages' results are still written, the
others are listed as unfinished in the table, and the driver exits with status 4.

At the end `<output_dir>/results.json`, `results.md` and `results.png` (grouped bars with bootstrap
intervals) are written from the robustness.json files of the evaluations (accuracies, worst case,
attack settings), from the stage wall times that this driver measured, and from the paired
statistics that `mimir_hf.evaluation.compare_evaluations` computes from the evaluations'
per_sample.npz (exact McNemar tests and paired bootstrap intervals for every pair of arms, the same
as `python recipes/compare.py --evaluations <output_dir>/eval-*`). Nothing else goes into the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RECIPES = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = RECIPES / "configs" / "replicate_cpu"
STAGE_CONFIGS = ("pretrain_mae", "pretrain_mimir", "finetune", "evaluate")
# A second evaluation per arm, e.g. AutoAttack on the first 2,000 images when evaluate.yaml runs clean and
# PGD-20 on all 10,000: AutoAttack on every image costs more than the rest of a CPU-scale run together.
# A third, for the runs named in --adaptive: attacks aimed at the defence (PGD-MI, PGD-feature).
OPTIONAL_STAGE_CONFIGS = ("evaluate_autoattack", "evaluate_adaptive")
CONFIG_SET_KEYS = (*STAGE_CONFIGS, *OPTIONAL_STAGE_CONFIGS, "accelerate_config", "pretrain_args", "finetune_args",
                   "eval_args", "arms", "runs", "adaptive")
ARM_KEYS = ("name", "label", "pretrain", "pretrain_args", "finetune_args")

# `finetune_overrides` come before --finetune_args, so a user's value still wins. The scratch arm trains
# without layer-wise lr decay: decay is a prior for pretrained encoders and would starve its random
# patch embedding.
# A label's "{finetune}" is replaced by the finetune config's method (finetune_method_label).
ARMS = {
    "a": {"name": "scratch", "label": "(a) {finetune} from scratch", "pretrain": None, "finetune_overrides": ["--layer_decay", "1.0"]},
    "b": {"name": "mae", "label": "(b) MAE -> {finetune}", "pretrain": "mae", "finetune_overrides": []},
    "c": {"name": "mimir", "label": "(c) MIMIR -> {finetune}", "pretrain": "mimir", "finetune_overrides": []},
}


def finetune_method_label(config: Path) -> str:
    """What the finetune config trains with, for the tables: "FGSM-RS", "PGD-10-AT", "TRADES", ..."""
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    method = str(settings.get("adversarial_method", "pgd"))
    steps = int(settings.get("attack_steps", 10))
    if method == "pgd":
        if steps == 1:
            return "FGSM-RS" if settings.get("attack_random_start", True) else "FGSM-AT"
        return f"PGD-{steps}-AT"
    return {"trades": "TRADES", "mart": "MART", "apgd": f"APGD-{steps}-AT", "none": "standard training"}.get(method, method)


@dataclass(frozen=True)
class Run:
    """An arm at a seed: `seed=None` keeps the configs' seeds and the arm's plain folder names."""

    arm: str
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Run":
        arm, _, seed = text.strip().partition("@")
        if seed and not seed.isdigit():
            raise ValueError(f"a run is <arm> or <arm>@<seed>, got {text!r}")
        return cls(arm.lower(), int(seed) if seed else None)

    @property
    def key(self) -> str:
        return self.arm if self.seed is None else f"{self.arm}@{self.seed}"

    @property
    def suffix(self) -> str:
        return "" if self.seed is None else f"-seed{self.seed}"

    def name(self, arms: dict) -> str:
        return arms[self.arm]["name"] + self.suffix

    def pretrain_name(self, arms: dict) -> str | None:
        return None if arms[self.arm]["pretrain"] is None else arms[self.arm]["name"] + self.suffix

    def seed_args(self) -> list[str]:
        return [] if self.seed is None else ["--seed", str(self.seed), "--data_seed", str(self.seed)]

    def label(self, arms: dict, finetune: str) -> str:
        label = arms[self.arm]["label"].replace("{finetune}", finetune)
        return label if self.seed is None else f"{label}, seed {self.seed}"
HEADLINE_ATTACKS = ("clean", "pgd-20", "autoattack")


@dataclass
class Stage:
    name: str  # pretrain-mae, finetune-scratch, eval-mimir, ...
    recipe: str  # pretrain.py | finetune.py | evaluate.py
    config: Path
    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    accelerate_config: Path | None = None  # run under `accelerate launch --config_file ...`
    needs: str | None = None  # the stage whose output this one starts from

    @property
    def kind(self) -> str:
        return self.name.split("-", 1)[0]

    def command(self, python: str) -> list[str]:
        launcher = []
        if self.accelerate_config is not None:
            # -q: a failed stage shows the recipe's own one-line error, not the launcher's traceback too
            launcher = ["-m", "accelerate.commands.launch", "-q", "--config_file", str(self.accelerate_config)]
        return [python, *launcher, str(RECIPES / self.recipe), "--config", str(self.config), *self.overrides]

    def is_complete(self) -> bool:
        """Outputs that a recipe writes only when its run has finished."""
        if self.kind == "eval":
            return (self.output_dir / "robustness.json").is_file()
        # Both training recipes save the final model, then recipe_config.yaml, as their last steps.
        return (self.output_dir / "recipe_config.yaml").is_file() and any(self.output_dir.glob("*.safetensors"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--data_dir", default=None,
                        help="Required for a run: CIFAR-10 as train_batch_*.npz + test.npz (or any --dataset source).")
    parser.add_argument("--output_dir", default="outputs/replicate-cifar10")
    parser.add_argument("--config_dir", default=str(DEFAULT_CONFIG_DIR), help="Folder with the four stage configs.")
    parser.add_argument("--config_set", default=None,
                        help="A YAML file naming the four stage configs (paths relative to it), optionally an "
                             "accelerate_config and default pretrain_args/finetune_args/eval_args; replaces --config_dir. "
                             "recipes/configs/replicate_paper.yaml is the paper's scale.")
    parser.add_argument("--accelerate_config", default=None,
                        help="Run the training stages under `accelerate launch --config_file` this file "
                             "(e.g. recipes/accelerate_configs/multi_gpu.yaml); overrides the config set's.")
    parser.add_argument("--arms", default=None,
                        help="Comma-separated runs, in priority order: arms a (scratch), b (MAE), c (MIMIR) or one the "
                             "config set defines, each optionally at a seed (b@1). Default: the config set's `runs`, else a,b,c.")
    parser.add_argument("--adaptive", default=None,
                        help="Comma-separated runs (of --arms) that also get the evaluate_adaptive evaluation. "
                             "Default: the config set's `adaptive`, else every run when that config exists.")
    parser.add_argument("--skip_existing", action="store_true",
                        help="Skip stages whose final outputs exist; an unfinished training stage resumes from its last checkpoint.")
    parser.add_argument("--scale_factor", type=float, default=None,
                        help="Multiply the configs' max_train_samples (the training subset of every training stage) by this.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Training subset of every training stage.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Evaluated test images (config: 1000).")
    parser.add_argument("--max_steps", type=int, default=None, help="Cap every training stage (smoke tests only).")
    parser.add_argument("--autoattack_version", default=None, choices=["standard", "plus", "custom"],
                        help="Override evaluate.yaml's AutoAttack version (standard there; custom bounds it to APGD-CE + APGD-T).")
    parser.add_argument("--pretrain_args", default="", help="Extra overrides for both pretraining stages (one quoted string).")
    parser.add_argument("--finetune_args", default="", help="Extra overrides for the three finetuning stages.")
    parser.add_argument("--eval_args", default="", help="Extra overrides for the three evaluations.")
    parser.add_argument("--bootstrap_samples", type=int, default=10_000,
                        help="Bootstrap resamples of the test images for the paired statistics.")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="Seed of that resampling.")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Stages run at once, each as soon as the stage it starts from has finished (a finetune waits "
                             "for its pretraining, an evaluation for its finetune). With more than one, each stage's output "
                             "goes to <output_dir>/logs/<stage>.log and, unless OMP_NUM_THREADS is set, each gets "
                             "cpu_count // jobs threads. On 2 CPU cores 2 jobs of 1 thread do ~1.1x the work of 1 job of 2.")
    parser.add_argument("--archive_dir", default=None,
                        help="Also copy the run's small result files (results, stages.json, each stage's reports, per-sample "
                             "arrays, logs, trainer_state.json, configs and plots; never weights or checkpoints) into this "
                             "folder after every stage, so the evidence survives a change of machine (e.g. docs/results/cpu-v2).")
    parser.add_argument("--archive_weights", action="store_true",
                        help="With --archive_dir, also copy each finetuned classifier's model.safetensors (if under 5 MiB), "
                             "so that the archive holds loadable classifiers (config and image processor are always copied).")
    parser.add_argument("--results_only", action="store_true",
                        help="Run no stage: write results.json/.md/.png (and the archive) from the outputs that exist.")
    parser.add_argument("--launch_limit", type=float, default=None,
                        help="Seconds after the driver's start past which no stage is started (the rest are recorded as "
                             "not started, the results of the finished ones written, and the driver exits with status 4).")
    parser.add_argument("--time_limit", type=float, default=None,
                        help="Seconds after the driver's start at which running stages are stopped (SIGTERM, then "
                             "SIGKILL), so that the results of the finished ones are written inside a hard wall-clock "
                             "limit; implies --launch_limit at most this. `--skip_existing` later resumes the rest.")
    parser.add_argument("--progress_every", type=float, default=60.0,
                        help="With --jobs > 1, print every this many seconds which stages run, for how long, and the last "
                             "line of each one's log (its progress bar); 0: never.")
    parser.add_argument("--python", default=sys.executable, help="Interpreter that runs the recipes.")
    parser.add_argument("--dry_run", action="store_true", help="Print the stage commands and exit.")
    args = parser.parse_args(argv)
    if args.scale_factor is not None and args.scale_factor <= 0:
        parser.error("--scale_factor must be > 0.")
    if args.bootstrap_samples < 1:
        parser.error("--bootstrap_samples must be >= 1.")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1.")
    for name in ("launch_limit", "time_limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0 seconds.")
    if args.time_limit is not None:
        args.launch_limit = args.time_limit if args.launch_limit is None else min(args.launch_limit, args.time_limit)
    if args.progress_every < 0:
        parser.error("--progress_every must be >= 0.")
    args.stage_configs, config_set = _stage_configs(args, parser)
    args.arm_table = _arm_table(config_set, parser)
    args.runs = _runs(args.arms, config_set.get("runs"), "a,b,c", args.arm_table, parser, "--arms")
    args.arms = [run.key for run in args.runs]
    adaptive_default = ",".join(args.arms) if "evaluate_adaptive" in args.stage_configs else ""
    adaptive = _runs(args.adaptive, config_set.get("adaptive"), adaptive_default, args.arm_table, parser, "--adaptive")
    if adaptive and "evaluate_adaptive" not in args.stage_configs:
        parser.error("--adaptive needs an evaluate_adaptive config (in --config_dir or the config set).")
    if set(adaptive) - set(args.runs):
        parser.error(f"--adaptive names runs that are not planned: {sorted(r.key for r in set(adaptive) - set(args.runs))}.")
    args.adaptive = [run.key for run in adaptive]
    for key in ("pretrain_args", "finetune_args", "eval_args"):  # the set's defaults first, the command line's after
        setattr(args, key, " ".join(part for part in (str(config_set.get(key) or ""), getattr(args, key)) if part))
    accelerate = args.accelerate_config or config_set.get("accelerate_config")
    args.accelerate_config = None if accelerate in (None, "", "none") else Path(accelerate)
    if args.accelerate_config is not None and not args.accelerate_config.is_file():
        parser.error(f"the Accelerate config {str(args.accelerate_config)!r} does not exist.")
    return args


def _arm_table(config_set: dict, parser: argparse.ArgumentParser) -> dict[str, dict]:
    """The built-in arms plus the config set's (`arms: {d: {name, label, pretrain, pretrain_args, finetune_args}}`)."""
    table = {key: dict(arm, pretrain_overrides=[]) for key, arm in ARMS.items()}
    for key, arm in (config_set.get("arms") or {}).items():
        key = str(key).lower()
        unknown = sorted(set(arm) - set(ARM_KEYS)) if isinstance(arm, dict) else ["(not a mapping)"]
        if unknown or not arm.get("name") or arm.get("pretrain") not in (None, "mae", "mimir") or key in ARMS or "@" in key:
            parser.error(f"config set arm {key!r}: a new key (not a, b, c) mapping name, label, pretrain (mae, mimir or "
                         f"null) and optionally pretrain_args, finetune_args; unknown keys {unknown}.")
        table[key] = {"name": arm["name"], "label": arm.get("label") or f"({key}) {arm['name']} -> {{finetune}}",
                      "pretrain": arm.get("pretrain"), "pretrain_overrides": shlex.split(arm.get("pretrain_args") or ""),
                      "finetune_overrides": shlex.split(arm.get("finetune_args") or "")}
    names = [arm["name"] for arm in table.values()]
    if len(set(names)) != len(names):
        parser.error(f"two arms share a name: {names}.")
    return table


def _runs(given: str | None, from_set, default: str, arms: dict, parser: argparse.ArgumentParser, flag: str) -> list[Run]:
    text = given if given is not None else (",".join(map(str, from_set)) if from_set else default)
    try:
        runs = [Run.parse(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        parser.error(f"{flag}: {error}.")
    unknown = [run.key for run in runs if run.arm not in arms]
    if unknown or (flag == "--arms" and not runs):
        parser.error(f"{flag} takes comma-separated runs <arm>[@<seed>] of the arms {', '.join(arms)}; got {text!r}.")
    if len(set(runs)) != len(runs):
        parser.error(f"{flag} names a run twice: {text!r}.")
    return runs


def _stage_configs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[dict[str, Path], dict]:
    """The four stage configs (and the config set's other entries), from --config_set or --config_dir."""
    if args.config_set is None:
        config_dir = Path(args.config_dir)
        optional = {name: config_dir / f"{name}.yaml" for name in OPTIONAL_STAGE_CONFIGS if (config_dir / f"{name}.yaml").is_file()}
        return {**{name: config_dir / f"{name}.yaml" for name in STAGE_CONFIGS}, **optional}, {}
    path = Path(args.config_set)
    if not path.is_file():
        parser.error(f"the config set {str(path)!r} does not exist.")
    config_set = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(config_set) - set(CONFIG_SET_KEYS))
    missing = [name for name in STAGE_CONFIGS if not config_set.get(name)]
    if not isinstance(config_set, dict) or unknown or missing:
        parser.error(f"{path}: a config set maps {', '.join(STAGE_CONFIGS)} to config files (and may set "
                     f"{', '.join(CONFIG_SET_KEYS[len(STAGE_CONFIGS):])}); unknown keys {unknown}, missing {missing}.")
    resolved = dict(config_set)
    for key in (*STAGE_CONFIGS, *OPTIONAL_STAGE_CONFIGS, "accelerate_config"):
        if resolved.get(key) and resolved[key] != "none" and not Path(resolved[key]).is_absolute():
            resolved[key] = os.path.normpath(path.parent / resolved[key])
    names = [*STAGE_CONFIGS, *(name for name in OPTIONAL_STAGE_CONFIGS if resolved.get(name) not in (None, "", "none"))]
    return {name: Path(resolved[name]) for name in names}, resolved


def check_data_dir(args: argparse.Namespace, stages: list[Stage]) -> None:
    """Fail before the first stage, not hours later, when the data cannot be read for a split a stage uses."""
    if args.data_dir is None:
        raise SystemExit("error: --data_dir is required: a folder with CIFAR-10 as train_batch_1..5.npz + test.npz "
                         "(the .npz loader reads them in place), or another --dataset source such as uoft-cs/cifar10.")
    source = str(args.data_dir)
    local = Path(source).expanduser()
    if not local.exists():
        looks_like_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~")) or source.startswith("builtin:")
        if looks_like_hub_id:
            return  # a Hub data set: the first stage downloads (and checks) it
        raise SystemExit(f"error: --data_dir {source!r} does not exist.")
    from mimir_hf.data import load_image_dataset

    splits = set()
    for stage in stages:
        config = yaml.safe_load(stage.config.read_text(encoding="utf-8")) or {}
        splits.add(config.get("eval_split", "test"))
        if stage.kind != "eval":
            splits.add(config.get("train_split", "train"))
    for split in sorted(splits):
        try:
            data = load_image_dataset(source, split, max_samples=1)
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: --data_dir {source!r} has no readable split {split!r}: {error}") from None
        if len(data) == 0:
            raise SystemExit(f"error: --data_dir {source!r}: split {split!r} is empty.")


def _train_subset(config: Path, args: argparse.Namespace) -> list[str]:
    if args.max_train_samples is not None:
        return ["--max_train_samples", str(args.max_train_samples)]
    if args.scale_factor is not None:
        base = yaml.safe_load(config.read_text(encoding="utf-8")).get("max_train_samples")
        if base is None:
            raise SystemExit(f"error: --scale_factor needs max_train_samples in {config}; pass --max_train_samples instead.")
        return ["--max_train_samples", str(max(2, math.floor(base * args.scale_factor)))]
    return []


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of every arm: its config and output folder."""

    config: str  # key of the stage configs
    suffix: str  # eval-<arm><suffix>

    def folder(self, arm: str) -> str:
        return f"eval-{arm}{self.suffix}"


EVALUATIONS = (Evaluation("evaluate", ""), Evaluation("evaluate_autoattack", "-autoattack"),
               Evaluation("evaluate_adaptive", "-adaptive"))


def _evaluations_of(run: Run, args: argparse.Namespace) -> list[Evaluation]:
    """The evaluations a run gets: every configured one, the adaptive one only for the runs named in --adaptive."""
    configs = args.stage_configs
    adaptive = set(getattr(args, "adaptive", []))
    return [e for e in EVALUATIONS if e.config in configs and (e.config != "evaluate_adaptive" or run.key in adaptive)]


def plan_stages(args: argparse.Namespace) -> list[Stage]:
    """The stages in priority order: each run's pretraining, finetune and evaluations together, runs as listed.

    With --jobs a stage starts once the stage it needs has finished, first come first served in this
    order, so a run listed first is finished first.
    """
    out = Path(args.output_dir)
    configs = args.stage_configs
    arms = args.arm_table
    missing = [str(p) for p in configs.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"error: missing config(s): {', '.join(missing)}")
    data = ["--dataset", str(args.data_dir if args.data_dir is not None else "<--data_dir>")]
    launch = args.accelerate_config
    steps = ["--max_steps", str(args.max_steps)] if args.max_steps is not None else []
    resume = ["--resume_from_checkpoint", "last"] if args.skip_existing else []

    stages: list[Stage] = []
    for run in args.runs:
        arm, name, pretrain = arms[run.arm], run.name(arms), run.pretrain_name(arms)
        if pretrain is not None:
            config = configs[f"pretrain_{arm['pretrain']}"]
            output = out / f"pretrain-{pretrain}"
            stages.append(Stage(
                f"pretrain-{pretrain}", "pretrain.py", config, output,
                [*data, "--output_dir", str(output), *_train_subset(config, args), *steps, *resume,
                 *run.seed_args(), *arm["pretrain_overrides"], *shlex.split(args.pretrain_args)],
                accelerate_config=launch,
            ))
        start = "scratch" if pretrain is None else str(out / f"pretrain-{pretrain}")
        output = out / f"finetune-{name}"
        stages.append(Stage(
            f"finetune-{name}", "finetune.py", configs["finetune"], output,
            [*data, "--model_name_or_path", start, "--output_dir", str(output), *_train_subset(configs["finetune"], args),
             *steps, *resume, *run.seed_args(), *arm["finetune_overrides"], *shlex.split(args.finetune_args)],
            accelerate_config=launch, needs=None if pretrain is None else f"pretrain-{pretrain}",
        ))
        for evaluation in _evaluations_of(run, args):
            output = out / evaluation.folder(name)
            extra = []
            if args.max_eval_samples is not None and evaluation.config == "evaluate":
                extra = ["--max_eval_samples", str(args.max_eval_samples)]
            if args.autoattack_version is not None:
                extra += ["--autoattack_version", args.autoattack_version]
            stages.append(Stage(
                evaluation.folder(name), "evaluate.py", configs[evaluation.config], output,
                [*data, "--model_name_or_path", str(out / f"finetune-{name}"), "--output_dir", str(output),
                 *extra, *shlex.split(args.eval_args)],
                needs=f"finetune-{name}",
            ))
    return stages


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def source_commit() -> str | None:
    """The commit of the code the stages run (the recipes' repository), "+dirty" when it has uncommitted
    changes to tracked files; None outside a git checkout. Recorded per stage: a run that continues
    across commits says which stage ran which code."""
    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(RECIPES), *command], capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def run_stages(stages: list[Stage], args: argparse.Namespace) -> dict:
    """Run (or skip) the stages, up to `args.jobs` at once, each once the stage it needs has finished;
    record every command, status and wall time in stages.json as it goes.

    A failed stage stops new launches; the stages already running finish (their work is kept), then
    the driver exits with the failure, and `--skip_existing` resumes from there. Past `launch_limit`
    no stage starts; at `time_limit` the running ones are stopped; both are recorded (`stopped`,
    `not_started`) and the function returns, so that the caller can still write the results.
    """
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "stages.json"
    record = _load_json(log_path)
    jobs = getattr(args, "jobs", 1)
    launch_limit, time_limit = getattr(args, "launch_limit", None), getattr(args, "time_limit", None)
    env = dict(os.environ)
    if jobs > 1:
        (out / "logs").mkdir(exist_ok=True)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    total_start = time.perf_counter()
    commit = source_commit()
    position = {stage.name: index for index, stage in enumerate(stages, 1)}
    pending = list(stages)
    done: set[str] = set()
    running: dict[str, tuple[Stage, subprocess.Popen, float, object]] = {}
    failed: list[str] = []

    def prefix(stage: Stage) -> str:
        return f"[{position[stage.name]}/{len(stages)}] {stage.name}"

    def save() -> None:
        log_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def elapsed() -> float:
        return time.perf_counter() - total_start

    def may_launch() -> bool:
        return launch_limit is None or elapsed() < launch_limit

    def finish(stage: Stage, process: subprocess.Popen, start: float, log, **extra) -> float:
        """Close the stage's log and record its command, exit status and wall time; returns the wall time."""
        if log is not None:
            log.close()
        wall = time.perf_counter() - start
        record[stage.name] = {
            "command": shlex.join(stage.command(args.python)),
            "wall_time_seconds": round(wall, 1),
            "returncode": process.returncode,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": commit,
            "skipped_at_last_invocation": False,
            **extra,
        }
        return wall

    progress = _Progress(running, done, total_start, len(stages), getattr(args, "progress_every", 0) if jobs > 1 else 0)
    while pending or running:
        while not failed and len(running) < jobs and may_launch():
            stage = next((s for s in pending if s.needs is None or s.needs in done or s.needs not in position), None)
            if stage is None:
                break
            pending.remove(stage)
            if args.skip_existing and stage.is_complete():
                previous = record.get(stage.name, {})
                print(f"{prefix(stage)}: outputs exist in {stage.output_dir}, skipped "
                      f"(wall time of the run that made them: {_format_seconds(previous.get('wall_time_seconds'))})", flush=True)
                record[stage.name] = {**previous, "skipped_at_last_invocation": True}
                save()
                done.add(stage.name)
                continue
            command = stage.command(args.python)
            log = None
            if jobs > 1:
                log = open(out / "logs" / f"{stage.name}.log", "a", encoding="utf-8")  # noqa: SIM115 (closed on exit)
                print(f"{prefix(stage)}: {shlex.join(command)}  (output: {log.name})", flush=True)
            else:
                print(f"{prefix(stage)}: {shlex.join(command)}", flush=True)
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
            running[stage.name] = (stage, process, time.perf_counter(), log)
        if failed and not running:
            break
        if not running:
            if pending and not may_launch():
                break
            if pending:  # only stages whose input stage is not planned and not done: nothing can start
                raise SystemExit(f"error: stages {[s.name for s in pending]} wait for stages that did not run.")
            break
        deadline = None if time_limit is None else total_start + time_limit
        finished = _wait_any(running, deadline, progress.tick)
        if finished is None:  # the time limit: stop what runs, keep what finished
            _stop([process for _, process, _, _ in running.values()])
            for stage, process, start, log in running.values():
                finish(stage, process, start, log, stopped=f"time limit ({_format_seconds(time_limit)})")
                print(f"{prefix(stage)}: STOPPED at the time limit of {_format_seconds(time_limit)}", flush=True)
            running.clear()
            save()
            break
        stage, process, start, log = running.pop(finished)
        wall = finish(stage, process, start, log,
                      **({"threads": env["OMP_NUM_THREADS"], "parallel_jobs": jobs} if jobs > 1 else {}))
        save()
        # evaluate.py exits 3 when a gradient-masking check failed: the report exists and says so.
        if process.returncode != 0 and not (stage.kind == "eval" and stage.is_complete()):
            failed.append(f"{stage.name} (exit status {process.returncode})")
            print(f"{prefix(stage)}: FAILED (exit status {process.returncode})"
                  + (f"; its output is in {log.name}" if log is not None else "")
                  + (f"; waiting for {', '.join(running)} to finish" if running else ""), flush=True)
            continue
        done.add(stage.name)
        archive(args, [stage.name])
        print(f"{prefix(stage)}: done in {_format_seconds(wall)} "
              f"(elapsed {_format_seconds(elapsed())})", flush=True)
    if failed:
        raise SystemExit(f"error: stage {', '.join(failed)} failed; "
                         "fix it and rerun with --skip_existing to keep the finished stages.")
    left = [stage for stage in pending if not stage.is_complete()]
    for stage in left:
        record[stage.name] = {"not_started": f"launch limit ({_format_seconds(launch_limit)})"}
    if left:
        print(f"Not started (launch limit of {_format_seconds(launch_limit)}): {', '.join(s.name for s in left)}", flush=True)
        save()
    return record


TEXT_SUFFIXES = (".json", ".md", ".log", ".yaml", ".txt")  # machine paths are replaced in these
ARCHIVED_SUFFIXES = (*TEXT_SUFFIXES, ".png", ".npz")
ARCHIVE_MAX_BYTES = 5 * 2**20  # per file: reports and per-sample arrays are far smaller; weights are never copied


def archive(args: argparse.Namespace, stage_names: list[str] | None = None) -> list[Path]:
    """Copy the small result files of `stage_names` (None: the whole run) into `args.archive_dir`.

    Only the top level of each stage folder is read (checkpoints and the evaluation's per-batch
    state live in sub-folders), only the suffixes above, and nothing over ARCHIVE_MAX_BYTES.
    """
    if not getattr(args, "archive_dir", None):
        return []
    import shutil

    out, dest = Path(args.output_dir), Path(args.archive_dir)
    sources: list[tuple[Path, Path]] = []
    weights = getattr(args, "archive_weights", False)
    folders = stage_names if stage_names is not None else sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "logs")
    for name in folders:
        folder = out / name
        if folder.is_dir():
            suffixes = (*ARCHIVED_SUFFIXES, ".safetensors") if weights and name.startswith("finetune-") else ARCHIVED_SUFFIXES
            sources += [(f, dest / name / f.name) for f in sorted(folder.iterdir())
                        if f.is_file() and f.suffix in suffixes and f.stat().st_size <= ARCHIVE_MAX_BYTES]
        log = out / "logs" / f"{name}.log"
        if log.is_file() and log.stat().st_size <= ARCHIVE_MAX_BYTES:
            sources.append((log, dest / "logs" / log.name))
    sources += [(f, dest / f.name) for f in (out / n for n in ("stages.json", "results.json", "results.md", "results.png"))
                if f.is_file()]
    replacements = _machine_paths(args)
    for source, target in sources:
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in TEXT_SUFFIXES:
            text = source.read_text(encoding="utf-8", errors="replace")
            for path, placeholder in replacements:
                text = text.replace(path, placeholder)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copy2(source, target)
    return [target for _, target in sources]


def _machine_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    """This machine's paths in the run's text files and their placeholders, longest first: an archive
    meant for a repository must not carry them (and they mean nothing on another machine)."""
    pairs = {}
    # the checkout whose recipes ran each stage (a run may have been started from another copy)
    repos = {str(Path(token).parents[1]) for record in _load_json(Path(args.output_dir) / "stages.json").values()
             for token in shlex.split(str(record.get("command", "")))
             if token.endswith(".py") and Path(token).is_absolute() and Path(token).parent.name == "recipes"}
    for path, placeholder in ((args.output_dir, "<output_dir>"), (args.data_dir, "<data_dir>"), (args.python, "python"),
                              (sys.executable, "python"), (sys.prefix, "<python_prefix>"), (str(RECIPES.parent), "<repo>"),
                              *((repo, "<repo>") for repo in repos), (os.getcwd(), "<cwd>")):
        if path:
            for form in {str(path), str(Path(path).resolve())}:
                if form not in ("", ".", "/"):
                    pairs[form] = placeholder
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


class _Progress:
    """Every `every` seconds, one line: elapsed time, stages done, and each running stage's time and last log line."""

    def __init__(self, running: dict, done: set[str], start: float, total: int, every: float) -> None:
        self.running, self.done, self.start, self.total, self.every = running, done, start, total, every
        self.last = start

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.every or now - self.last < self.every:
            return
        self.last = now
        parts = []
        for name, (_, _, started, log) in self.running.items():
            tail = _last_line(Path(log.name)) if log is not None else ""
            parts.append(f"{name} {_format_seconds(now - started)}" + (f" [{tail}]" if tail else ""))
        print(f"[{_format_seconds(now - self.start)}] {len(self.done)} of {self.total} stages done; running: "
              + "; ".join(parts), flush=True)


def _last_line(path: Path, limit: int = 100) -> str:
    """The last non-empty line of a log, progress bars' carriage returns counted as line ends."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1][:limit] if lines else ""


def _stop(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM to every process, then SIGKILL to those still running after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.perf_counter() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_any(running: dict, deadline: float | None = None, tick=None) -> str | None:
    """The name of the first running stage to exit (polling: subprocess has no portable wait-any), or None
    once `deadline` (a time.perf_counter() value) has passed."""
    while True:
        for name, (_, process, _, _) in running.items():
            if process.poll() is not None:
                return name
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        if tick is not None:
            tick()
        time.sleep(0.5)


def _accuracy(report: dict, name: str) -> float | None:
    entry = report.get("attacks", {}).get(name)
    return None if entry is None else entry.get("accuracy")


def _headline_evaluations(args: argparse.Namespace) -> list[Evaluation]:
    """The evaluations the headline table reads (the adaptive one is reported beside it)."""
    return [e for e in EVALUATIONS if e.config in args.stage_configs and e.config != "evaluate_adaptive"]


def _seed_groups(args: argparse.Namespace) -> dict[int | None, list[Run]]:
    """Runs by seed, in the order given: paired statistics compare models trained with the same seeds."""
    groups: dict[int | None, list[Run]] = {}
    for run in args.runs:
        groups.setdefault(run.seed, []).append(run)
    return groups


def collect_results(args: argparse.Namespace, stage_log: dict | None = None) -> dict:
    """results.json content, from the evaluations' robustness.json and the recorded stage wall times only.

    With a second evaluation (evaluate_autoattack), each headline attack is read from the first
    evaluation that ran it (clean and PGD-20 on all images, AutoAttack on the subset), the worst case
    from the evaluation that ran most of them, and each evaluation gets its own paired statistics.
    Paired statistics compare the runs of one seed with each other; an adaptive evaluation's
    accuracies are reported under `adaptive`.
    """
    out = Path(args.output_dir)
    stage_log = stage_log if stage_log is not None else _load_json(out / "stages.json")
    evaluations = _headline_evaluations(args)
    finetune = finetune_method_label(args.stage_configs["finetune"])
    arms = []
    for run in args.runs:
        name, pretrain = run.name(args.arm_table), run.pretrain_name(args.arm_table)
        folders = [e.folder(name) for e in evaluations]
        adaptive = [e.folder(name) for e in _evaluations_of(run, args) if e.config == "evaluate_adaptive"]
        report_path = out / folders[0] / "robustness.json"
        stage_names = ([f"pretrain-{pretrain}"] if pretrain else []) + [f"finetune-{name}", *folders, *adaptive]
        wall = {stage: stage_log.get(stage, {}).get("wall_time_seconds") for stage in stage_names}
        row: dict = {"arm": run.arm, "seed": run.seed, "run": run.key, "name": name,
                     "label": run.label(args.arm_table, finetune), "report": str(report_path), "wall_time_seconds": wall}
        commits = sorted({stage_log[stage]["commit"] for stage in stage_names if stage_log.get(stage, {}).get("commit")})
        if commits:
            row["commits"] = commits
        reports = {folder: _load_json(out / folder / "robustness.json") for folder in folders if (out / folder / "robustness.json").is_file()}
        if len(reports) < len(folders):
            row["missing"] = True
            arms.append(row)
            continue
        if len(folders) > 1:
            row["reports"] = [str(out / folder / "robustness.json") for folder in folders]
        accuracy, samples = {}, {}
        for attack in HEADLINE_ATTACKS:
            source = next((r for r in reports.values() if _accuracy(r, attack) is not None), None)
            accuracy[attack] = None if source is None else _accuracy(source, attack)
            samples[attack] = None if source is None else source.get("num_samples")
        widest = max(reports.values(), key=lambda r: len((r.get("worst_case") or {}).get("attacks") or []))
        autoattack = next((r["attacks"]["autoattack"] for r in reports.values() if "autoattack" in r.get("attacks", {})), {})
        all_checks = [c for r in reports.values() for c in r.get("checks", [])]
        row.update({
            "num_samples": reports[folders[0]].get("num_samples"),
            "epsilon": reports[folders[0]].get("threat_model", {}).get("epsilon"),
            "accuracy": accuracy,
            "worst_case": {**(widest.get("worst_case") or {}), "num_samples": widest.get("num_samples")},
            "autoattack": {k: autoattack.get(k) for k in ("version", "attacks", "attacks_run", "note", "wall_time_seconds", "library_version")
                           if autoattack.get(k) is not None},
            "checks_passed": all(r.get("checks_passed") for r in reports.values()),
            "failed_checks": [c["name"] for c in all_checks if not c.get("passed")],
        })
        if len(folders) > 1:
            row["accuracy_num_samples"] = samples
        for folder in adaptive:
            report = _load_json(out / folder / "robustness.json")
            if report:
                row["adaptive"] = {"report": str(out / folder / "robustness.json"), "num_samples": report.get("num_samples"),
                                   "accuracy": {a: e.get("accuracy") for a, e in report.get("attacks", {}).items()},
                                   "checks_passed": report.get("checks_passed")}
        arms.append(row)
    unfinished = {stage: f"stopped at the {entry['stopped']}" if "stopped" in entry else f"not started ({entry['not_started']})"
                  for stage, entry in stage_log.items() if "stopped" in entry or "not_started" in entry}
    groups = _seed_groups(args)
    results = {
        "output_dir": str(out),
        "finetune_method": finetune,
        "commits": sorted({c for row in arms for c in row.get("commits", [])}),
        "arms": arms,
        **({"unfinished_stages": unfinished} if unfinished else {}),
        "source": "robustness.json of each evaluation; wall times and commits recorded by this driver; paired statistics "
        "by mimir_hf.evaluation.compare_evaluations from each evaluation's per_sample.npz, between runs of one seed",
    }
    for evaluation in evaluations:
        for seed, runs in groups.items():
            key = "paired" + evaluation.suffix.replace("-", "_") + ("" if seed is None else f"_seed{seed}")
            keys = {run.key for run in runs}
            results[key] = paired_statistics(args, [row for row in arms if row["run"] in keys], evaluation)
    return results


def paired_statistics(args: argparse.Namespace, arms: list[dict], evaluation: Evaluation = EVALUATIONS[0]) -> dict:
    """The library's paired comparison of the evaluated runs on the headline attacks that `evaluation` ran.

    A run that took hours must still get its table, so a comparison that cannot be made (one arm,
    per-sample files missing, arms evaluated on different images) is recorded with its reason instead
    of raised.
    """
    from mimir_hf.evaluation import compare_evaluations

    evaluated = [row for row in arms if not row.get("missing")]
    if len(evaluated) < 2:
        return {"skipped": "fewer than two arms were evaluated"}
    folders = [Path(args.output_dir) / evaluation.folder(row["name"]) for row in evaluated]
    reports = [_load_json(folder / "robustness.json") for folder in folders]
    attacks = [a for a in HEADLINE_ATTACKS if all(_accuracy(r, a) is not None for r in reports)]
    try:
        comparison = compare_evaluations(
            folders,
            names=[row["name"] for row in evaluated],
            attacks=attacks or None,
            bootstrap_samples=args.bootstrap_samples,
            seed=args.bootstrap_seed,
        )
    except (ValueError, FileNotFoundError) as error:
        return {"skipped": str(error)}
    return comparison.to_dict()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def format_markdown(results: dict) -> str:
    lines = [
        "# Replication results",
        "",
        "Accuracies in % on the evaluated test images, L∞ ε = 8/255, from each arm's robustness.json. "
        "Worst case: correct under every headline attack of that report. Wall times as measured by recipes/replicate_cifar10.py."
        + (f" Finetuning: {results['finetune_method']}." if results.get("finetune_method") else ""),
        "",
        "| arm | clean | PGD-20 | AutoAttack | worst case | images | pretrain time | finetune time | eval time | checks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in results["arms"]:
        walls = row["wall_time_seconds"]
        pre = next((v for k, v in walls.items() if k.startswith("pretrain-")), None)
        evals = [v for k, v in walls.items() if k.startswith("eval-")]
        times = [_format_seconds(pre) if any(k.startswith("pretrain-") for k in walls) else "n/a",
                 _format_seconds(walls.get(f"finetune-{row['name']}")),
                 _format_seconds(None if None in evals or not evals else sum(evals))]
        if row.get("missing"):
            lines.append(f"| {row['label']} | not evaluated | | | | | {' | '.join(times)} | |")
            continue
        acc = row["accuracy"]
        checks = "passed" if row.get("checks_passed") else "FAILED: " + ", ".join(row.get("failed_checks", []))
        images = str(row.get("num_samples"))
        subset = row["worst_case"].get("num_samples")
        if "accuracy_num_samples" in row and subset != row.get("num_samples"):
            images += f" ({subset} for AutoAttack and worst case)"
        lines.append(
            f"| {row['label']} | {_pct(acc['clean'])} | {_pct(acc['pgd-20'])} | {_pct(acc['autoattack'])} | "
            f"{_pct(row['worst_case'].get('accuracy'))} | {images} | {' | '.join(times)} | {checks} |"
        )
        aa = row.get("autoattack", {})
        if aa:
            ran = aa.get("attacks_run") or aa.get("attacks")
            notes.append(f"- {row['label']}: AutoAttack version `{aa.get('version')}`"
                         + (f", components {', '.join(ran)}" if ran else "")
                         + (f" ({aa['note']})" if aa.get("note") else "") + ".")
        wc = row["worst_case"].get("attacks")
        if wc:
            notes.append(f"- {row['label']}: worst case over {', '.join(wc)}.")
    for name, reason in (results.get("unfinished_stages") or {}).items():
        notes.append(f"- Stage {name}: {reason}.")
    if notes:
        lines += ["", *notes]
    for key in [k for k in results if k.startswith("paired")]:
        paired = results[key] or {}
        which = key.removeprefix("paired").strip("_").replace("_", ", ")
        title = "Paired statistics (same test images" + (f"; {which})" if which else ")")
        if "metrics" in paired:
            from mimir_hf.evaluation import format_comparison_markdown

            lines += ["", format_comparison_markdown(paired, title=title, level=2).rstrip()]
        elif paired.get("skipped"):
            lines += ["", f"No paired statistics{' (' + which + ')' if which else ''}: {paired['skipped']}"]
    return "\n".join(lines) + "\n"


def write_results(args: argparse.Namespace, stage_log: dict | None = None) -> dict:
    results = collect_results(args, stage_log)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown = format_markdown(results)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    figure = plot_results(results, out / "results.png")
    print(markdown)
    print(f"Results written to {out / 'results.json'}, {out / 'results.md'}" + (f" and {figure}" if figure else ""))
    return results


def plot_results(results: dict, path: Path) -> Path | None:
    """The table as grouped bars (the arms side by side under each attack), with the paired statistics'
    bootstrap interval of each accuracy where there is one; None if no arm was evaluated."""
    from mimir_hf.evaluation import plot_accuracy_comparison

    evaluated = [row for row in results["arms"] if not row.get("missing")]
    rows = {row["label"]: {**row["accuracy"], "worst case": row["worst_case"].get("accuracy")} for row in evaluated}
    # Each bar's interval comes from the evaluation its accuracy was read from, as in collect_results: an
    # attack from the first evaluation that ran it, the worst case from the last (the one with most attacks).
    labels = {row["name"]: row["label"] for row in evaluated}
    intervals: dict[str, dict] = {label: {} for label in rows}
    for key in (k for k in results if k.startswith("paired")):
        for metric in (results[key] or {}).get("metrics", []):
            for run_name, entry in metric["accuracy"].items():
                bars = intervals.get(labels.get(run_name), None)
                if bars is not None and (metric["name"] == "worst case" or metric["name"] not in bars):
                    bars[metric["name"]] = tuple(entry["interval"])
    metrics = {name for bars in intervals.values() for name in bars}
    sizes = {row.get("num_samples") for row in evaluated}
    subsets = {row["worst_case"].get("num_samples") for row in evaluated if "accuracy_num_samples" in row} - sizes
    title = "CIFAR-10, L∞ ε = 8/255" + (f", first {sizes.pop()} test images" if len(sizes) == 1 else "")
    if len(subsets) == 1:
        title += f" (AutoAttack, worst case: first {subsets.pop()})"
    confidence = next((results[k]["bootstrap"]["confidence"] for k in results
                       if k.startswith("paired") and "bootstrap" in (results[k] or {})), None)
    if metrics and confidence is not None:
        title += f"\nerror bars: {100 * confidence:g} % bootstrap intervals"
    return plot_accuracy_comparison(rows, path, title=title, intervals=intervals) if rows else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = plan_stages(args)
    if args.dry_run:
        for stage in stages:
            print(shlex.join(stage.command(args.python)))
        return 0
    if args.results_only:
        write_results(args)
        archive(args)
        return 0
    check_data_dir(args, stages)
    print(f"Replication: arms {', '.join(args.arms)}, {len(stages)} stages, configs from "
          f"{args.config_set or args.config_dir}, outputs in {args.output_dir}"
          + (f", training under accelerate launch --config_file {args.accelerate_config}" if args.accelerate_config else ""),
          flush=True)
    stage_log = run_stages(stages, args)
    write_results(args, stage_log)
    archive(args)
    unfinished = [stage.name for stage in stages if {"stopped", "not_started"} & set(stage_log.get(stage.name, {}))]
    if unfinished:
        print(f"error: {', '.join(unfinished)} did not finish within the time limits; the results above cover the "
              "finished stages. Rerun with --skip_existing (and more time) to complete them.", file=sys.stderr, flush=True)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
