"""A replication resolved into stages: each one the ordinary recipe a user would type.

`Replication` is the run's plan: the user's `ReplicationArguments`, the stage configs (from a config
folder or a config set), the arm table and the runs. `plan_stages` turns it into `Stage`s, each a
subprocess of recipes/pretrain.py, finetune.py or evaluate.py with `--config <stage config>` plus a
few overrides (data, output folder, starting weights, seed), in priority order: each run's stages
together, runs as listed, so that with several jobs the first runs finish first.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..artefacts import RECIPE_CONFIG, REPORT_FILE, is_hub_id
from .arguments import _REPOSITORY_RECIPES, ReplicationArguments
from .arms import Arm, Run, arms_from_config_set, finetune_method_label, parse_runs

__all__ = ["EVALUATIONS", "Evaluation", "Replication", "Stage", "check_data_dir", "plan_stages"]

STAGE_CONFIGS = ("pretrain_mae", "pretrain_mimir", "finetune", "evaluate")
# A second evaluation per run (e.g. AutoAttack on the first 1,000 images when evaluate.yaml runs clean and
# PGD-20 on all 10,000: AutoAttack on every image costs more than the rest of a CPU-scale run together), and
# a third for the runs named in `adaptive`: the attacks aimed at the defence (PGD-MI, PGD-feature).
OPTIONAL_STAGE_CONFIGS = ("evaluate_autoattack", "evaluate_adaptive")
CONFIG_SET_KEYS = (*STAGE_CONFIGS, *OPTIONAL_STAGE_CONFIGS, "accelerate_config", "pretrain_args", "finetune_args",
                   "eval_args", "arms", "runs", "adaptive")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run: its config key and output folder."""

    config: str
    suffix: str  # eval-<run><suffix>

    def folder(self, run_name: str) -> str:
        return f"eval-{run_name}{self.suffix}"


EVALUATIONS = (Evaluation("evaluate", ""), Evaluation("evaluate_autoattack", "-autoattack"),
               Evaluation("evaluate_adaptive", "-adaptive"))


@dataclass
class Stage:
    name: str  # pretrain-mae, finetune-scratch, eval-mimir-seed1, ...
    recipe: Path  # recipes/pretrain.py | finetune.py | evaluate.py
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
        return [python, *launcher, str(self.recipe), "--config", str(self.config), *self.overrides]

    def is_complete(self) -> bool:
        """Outputs that a recipe writes only when its run has finished."""
        if self.kind == "eval":
            return (self.output_dir / REPORT_FILE).is_file()
        # Both training recipes save the final model, then recipe_config.yaml, as their last steps.
        return (self.output_dir / RECIPE_CONFIG).is_file() and any(self.output_dir.glob("*.safetensors"))


@dataclass
class Replication:
    """The resolved plan of a replication run (see the module docstring)."""

    args: ReplicationArguments
    stage_configs: dict[str, Path]
    arms: dict[str, Arm]
    runs: list[Run]
    adaptive: list[str]  # keys of the runs that get the adaptive evaluation
    pretrain_args: str = ""
    finetune_args: str = ""
    eval_args: str = ""
    accelerate_config: Path | None = None
    recipes_dir: Path = _REPOSITORY_RECIPES

    @classmethod
    def from_arguments(cls, args: ReplicationArguments, recipes_dir: Path | None = None) -> "Replication":
        """Read the config set (or folder), the arms and the runs; a one-line `ValueError` on anything wrong."""
        stage_configs, config_set, source = _stage_configs(args)
        arms = arms_from_config_set(config_set.get("arms"), source)
        runs = parse_runs(args.arms if args.arms is not None else ",".join(map(str, config_set.get("runs") or ["a", "b", "c"])),
                          arms, "--arms")
        if not runs:
            raise ValueError("--arms names no run.")
        has_adaptive = "evaluate_adaptive" in stage_configs
        default = ",".join(map(str, config_set["adaptive"])) if config_set.get("adaptive") else (
            ",".join(run.key for run in runs) if has_adaptive else "")
        adaptive = parse_runs(args.adaptive if args.adaptive is not None else default, arms, "--adaptive")
        if adaptive and not has_adaptive:
            raise ValueError("--adaptive needs an evaluate_adaptive config (in --config_dir or the config set).")
        unplanned = sorted({run.key for run in adaptive} - {run.key for run in runs})
        if unplanned and args.adaptive is not None:
            raise ValueError(f"--adaptive names runs that --arms does not plan: {unplanned}.")
        adaptive = [run for run in adaptive if run.key not in unplanned]  # the config set's, for the runs planned
        extra = {key: " ".join(part for part in (str(config_set.get(key) or ""), getattr(args, key)) if part)
                 for key in ("pretrain_args", "finetune_args", "eval_args")}  # the set's defaults first, the user's after
        accelerate = args.accelerate_config or config_set.get("accelerate_config")
        accelerate = None if accelerate in (None, "", "none") else Path(accelerate)
        if accelerate is not None and not accelerate.is_file():
            raise ValueError(f"the Accelerate config {str(accelerate)!r} does not exist.")
        recipes = Path(recipes_dir) if recipes_dir is not None else _REPOSITORY_RECIPES
        if not (recipes / "pretrain.py").is_file():
            raise ValueError(f"{recipes} holds no recipes/pretrain.py: a replication runs the repository's recipes; "
                             "run it from a checkout of the repository.")
        return cls(args, stage_configs, arms, runs, [run.key for run in adaptive], **extra,
                   accelerate_config=accelerate, recipes_dir=recipes)

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def python(self) -> str:
        return self.args.python or sys.executable

    @property
    def finetune_method(self) -> str:
        return finetune_method_label(self.stage_configs["finetune"], self.finetune_args)

    def evaluations_of(self, run: Run) -> list[Evaluation]:
        """The evaluations a run gets: every configured one, the adaptive one only for the runs named in `adaptive`."""
        return [e for e in EVALUATIONS if e.config in self.stage_configs
                and (e.config != "evaluate_adaptive" or run.key in self.adaptive)]

    def headline_evaluations(self) -> list[Evaluation]:
        """The evaluations the headline table reads (an adaptive one is reported beside it)."""
        return [e for e in EVALUATIONS if e.config in self.stage_configs and e.config != "evaluate_adaptive"]

    def seed_groups(self) -> dict[int | None, list[Run]]:
        """Runs by seed, in the order given: paired statistics compare models trained with the same seeds."""
        groups: dict[int | None, list[Run]] = {}
        for run in self.runs:
            groups.setdefault(run.seed, []).append(run)
        return groups


def _stage_configs(args: ReplicationArguments) -> tuple[dict[str, Path], dict, str]:
    """The stage configs and the config set's other entries, from `config_set` or `config_dir`."""
    if args.config_set is None:
        config_dir = Path(args.config_dir)
        configs = {name: config_dir / f"{name}.yaml" for name in STAGE_CONFIGS}
        configs.update({name: config_dir / f"{name}.yaml" for name in OPTIONAL_STAGE_CONFIGS if (config_dir / f"{name}.yaml").is_file()})
        return configs, {}, str(config_dir)
    path = Path(args.config_set)
    if not path.is_file():
        raise ValueError(f"the config set {str(path)!r} does not exist.")
    config_set = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(config_set) - set(CONFIG_SET_KEYS)) if isinstance(config_set, dict) else ["(not a mapping)"]
    missing = [name for name in STAGE_CONFIGS if not isinstance(config_set, dict) or not config_set.get(name)]
    if unknown or missing:
        raise ValueError(f"{path}: a config set maps {', '.join(STAGE_CONFIGS)} to config files (and may set "
                         f"{', '.join(CONFIG_SET_KEYS[len(STAGE_CONFIGS):])}); unknown keys {unknown}, missing {missing}.")
    resolved = dict(config_set)
    for key in (*STAGE_CONFIGS, *OPTIONAL_STAGE_CONFIGS, "accelerate_config"):
        if resolved.get(key) and resolved[key] != "none" and not Path(resolved[key]).is_absolute():
            resolved[key] = os.path.normpath(path.parent / resolved[key])
    names = [*STAGE_CONFIGS, *(name for name in OPTIONAL_STAGE_CONFIGS if resolved.get(name) not in (None, "", "none"))]
    return {name: Path(resolved[name]) for name in names}, resolved, str(path)


def _train_subset(config: Path, args: ReplicationArguments) -> list[str]:
    if args.max_train_samples is not None:
        return ["--max_train_samples", str(args.max_train_samples)]
    if args.scale_factor is not None:
        base = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("max_train_samples")
        if base is None:
            raise ValueError(f"--scale_factor needs max_train_samples in {config}; pass --max_train_samples instead.")
        return ["--max_train_samples", str(max(2, math.floor(base * args.scale_factor)))]
    return []


def plan_stages(replication: Replication) -> list[Stage]:
    """The stages in priority order (see the module docstring)."""
    args, out, configs = replication.args, replication.output_dir, replication.stage_configs
    missing = [str(p) for p in configs.values() if not p.is_file()]
    if missing:
        raise ValueError(f"missing config(s): {', '.join(missing)}")
    recipes = replication.recipes_dir
    data = ["--dataset", str(args.data_dir if args.data_dir is not None else "<--data_dir>")]
    launch = replication.accelerate_config
    steps = ["--max_steps", str(args.max_steps)] if args.max_steps is not None else []
    resume = ["--resume_from_checkpoint", "last"] if args.skip_existing else []

    stages: list[Stage] = []
    for run in replication.runs:
        pretrain = run.pretrain_name
        if pretrain is not None:
            config = configs[f"pretrain_{run.arm.pretrain}"]
            output = out / f"pretrain-{pretrain}"
            stages.append(Stage(
                f"pretrain-{pretrain}", recipes / "pretrain.py", config, output,
                [*data, "--output_dir", str(output), *_train_subset(config, args), *steps, *resume,
                 *run.seed_args(), *run.arm.pretrain_overrides, *shlex.split(replication.pretrain_args)],
                accelerate_config=launch,
            ))
        start = "scratch" if pretrain is None else str(out / f"pretrain-{pretrain}")
        output = out / f"finetune-{run.name}"
        stages.append(Stage(
            f"finetune-{run.name}", recipes / "finetune.py", configs["finetune"], output,
            [*data, "--model_name_or_path", start, "--output_dir", str(output), *_train_subset(configs["finetune"], args),
             *steps, *resume, *run.seed_args(), *run.arm.finetune_overrides, *shlex.split(replication.finetune_args)],
            accelerate_config=launch, needs=None if pretrain is None else f"pretrain-{pretrain}",
        ))
        for evaluation in replication.evaluations_of(run):
            output = out / evaluation.folder(run.name)
            extra = []
            if args.max_eval_samples is not None and evaluation.config == "evaluate":
                extra = ["--max_eval_samples", str(args.max_eval_samples)]
            if args.autoattack_version is not None:
                extra += ["--autoattack_version", args.autoattack_version]
            stages.append(Stage(
                evaluation.folder(run.name), recipes / "evaluate.py", configs[evaluation.config], output,
                [*data, "--model_name_or_path", str(out / f"finetune-{run.name}"), "--output_dir", str(output),
                 *extra, *shlex.split(replication.eval_args)],
                needs=f"finetune-{run.name}",
            ))
    return stages


def check_data_dir(replication: Replication, stages: list[Stage]) -> None:
    """Fail before the first stage, not hours later, when the data cannot be read for a split a stage uses."""
    source = replication.args.data_dir
    if source is None:
        raise ValueError("--data_dir is required: a folder with CIFAR-10 as train_batch_1..5.npz + test.npz "
                         "(the .npz loader reads them in place), or another --dataset source such as uoft-cs/cifar10.")
    local = Path(source).expanduser()
    if not local.exists():
        if is_hub_id(source) or source.startswith("builtin:"):
            return  # a Hub data set: the first stage downloads (and checks) it
        raise ValueError(f"--data_dir {source!r} does not exist.")
    from ..data import load_image_dataset

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
            raise ValueError(f"--data_dir {source!r} has no readable split {split!r}: {error}") from None
        if len(data) == 0:
            raise ValueError(f"--data_dir {source!r}: split {split!r} is empty.")
