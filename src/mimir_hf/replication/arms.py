"""The arms of a replication, and runs: an arm trained at a seed.

Every arm shares the finetuning config, seeds, data order and evaluation; only the starting
weights differ (scratch, or the output of one pretraining). The built-in three are the paper's
comparison; a config set adds ablations as a pretraining config plus overrides.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

__all__ = ["Arm", "BUILTIN_ARMS", "Run", "arms_from_config_set", "finetune_method_label", "parse_runs"]


@dataclass(frozen=True)
class Arm:
    """One starting point for the shared finetuning.

    `label` may contain "{finetune}", replaced by the finetune config's method (`finetune_method_label`),
    so that a table never names a finetuning that did not run.
    """

    key: str
    name: str
    label: str
    pretrain: str | None  # which pretraining config: "mae", "mimir", or None (from scratch)
    pretrain_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()


# The scratch arm trains without layer-wise lr decay: decay is a prior for pretrained encoders and would
# starve its random patch embedding. Overrides come before --finetune_args, so a user's value still wins.
BUILTIN_ARMS = {
    "a": Arm("a", "scratch", "(a) {finetune} from scratch", None, finetune_overrides=("--layer_decay", "1.0")),
    "b": Arm("b", "mae", "(b) MAE -> {finetune}", "mae"),
    "c": Arm("c", "mimir", "(c) MIMIR -> {finetune}", "mimir"),
}
_ARM_FIELDS = ("name", "label", "pretrain", "pretrain_args", "finetune_args")
_METHOD_FIELDS = ("adversarial_method", "attack_steps", "attack_random_start")


def arms_from_config_set(entries: dict | None, source: str) -> dict[str, Arm]:
    """The built-in arms plus a config set's `arms: {d: {name, label, pretrain, pretrain_args, finetune_args}}`."""
    table = dict(BUILTIN_ARMS)
    for key, entry in (entries or {}).items():
        key = str(key).lower()
        unknown = sorted(set(entry) - set(_ARM_FIELDS)) if isinstance(entry, dict) else ["(not a mapping)"]
        if unknown or not entry.get("name") or entry.get("pretrain") not in (None, "mae", "mimir") or key in BUILTIN_ARMS or "@" in key:
            raise ValueError(f"{source}: arm {key!r} must be a new key (not a, b, c) mapping name, label, pretrain (mae, "
                             f"mimir or null) and optionally pretrain_args, finetune_args; unknown keys {unknown}.")
        table[key] = Arm(key, entry["name"], entry.get("label") or f"({key}) {entry['name']} -> {{finetune}}",
                         entry.get("pretrain"), tuple(shlex.split(entry.get("pretrain_args") or "")),
                         tuple(shlex.split(entry.get("finetune_args") or "")))
    names = [arm.name for arm in table.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: two arms share a name: {names}.")
    return table


@dataclass(frozen=True)
class Run:
    """An arm at a seed. `seed=None` keeps the configs' seeds and the arm's plain folder names; a seed
    trains both stages with `--seed s --data_seed s` (held-out split and test images unchanged) into
    folders suffixed `-seed<s>`."""

    arm: Arm
    seed: int | None = None

    @property
    def key(self) -> str:
        return self.arm.key if self.seed is None else f"{self.arm.key}@{self.seed}"

    @property
    def name(self) -> str:
        return self.arm.name + ("" if self.seed is None else f"-seed{self.seed}")

    @property
    def pretrain_name(self) -> str | None:
        return None if self.arm.pretrain is None else self.name

    def seed_args(self) -> list[str]:
        return [] if self.seed is None else ["--seed", str(self.seed), "--data_seed", str(self.seed)]

    def label(self, finetune: str) -> str:
        label = self.arm.label.replace("{finetune}", finetune)
        return label if self.seed is None else f"{label}, seed {self.seed}"


def parse_runs(text: str, arms: dict[str, Arm], what: str) -> list[Run]:
    """`"d,e,b@1"` -> runs, in that order; a one-line error for an unknown arm, a bad seed or a repeat."""
    runs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, _, seed = part.partition("@")
        if key.lower() not in arms or (seed and not seed.isdigit()):
            raise ValueError(f"{what} takes comma-separated runs <arm>[@<seed>] of the arms {', '.join(arms)}; got {part!r}.")
        runs.append(Run(arms[key.lower()], int(seed) if seed else None))
    if len({run.key for run in runs}) != len(runs):
        raise ValueError(f"{what} names a run twice: {text!r}.")
    return runs


def finetune_method_label(config: Path, overrides: str | list[str] = "") -> str:
    """What a finetune config (plus command-line `overrides`) trains with, for the tables: "FGSM-RS",
    "PGD-10-AT", "TRADES", ...; unset fields take `AdversarialTrainingArguments`' defaults."""
    from ..finetuning import AdversarialTrainingArguments

    settings = {f.name: f.default for f in fields(AdversarialTrainingArguments) if f.name in _METHOD_FIELDS}
    settings.update({k: v for k, v in (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).items() if k in _METHOD_FIELDS})
    tokens = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
    for flag, value in zip(tokens, tokens[1:]):
        if flag.startswith("--") and flag[2:] in _METHOD_FIELDS:
            settings[flag[2:]] = yaml.safe_load(value)
    method, steps = str(settings["adversarial_method"]), int(settings["attack_steps"])
    if method == "pgd":
        if steps == 1:
            return "FGSM-RS" if settings["attack_random_start"] else "FGSM-AT"
        return f"PGD-{steps}-AT"
    return {"trades": "TRADES", "mart": "MART", "apgd": f"APGD-{steps}-AT", "none": "standard training"}.get(method, method)
