"""The evaluation half of `recipes/evaluate.py`'s command line (the data half is `mimir_hf.data.DataArguments`),
and the command line of `recipes/compare.py`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..mutual_information.kernels import COMPUTE_DTYPES
from .attack_specs import AttackSettings, format_epsilon, parse_budget

__all__ = ["ComparisonArguments", "EvaluationArguments"]

logger = logging.getLogger(__name__)

_DEFAULT = AttackSettings()
"""The attack options' defaults have one home, `AttackSettings`; the command line shows them as text."""


@dataclass
class EvaluationArguments:
    """What to attack, how hard, and where the report goes. Budgets accept `8/255` or `0.0314`.

    The attack options are `AttackSettings`' fields, as text for the command line; `attack_settings()`
    builds the settings, field by field, and `evaluate_from_args` passes the rest on by name.
    """

    protocol: str = field(
        default="custom",
        metadata={
            "help": "custom: the attacks you list. robustbench: RobustBench's protocol (clean + AutoAttack standard on "
            "all CIFAR test images or RobustBench's 5,000 ImageNet images) and a leaderboard submission (ModelInfo "
            "JSON, [New Model] text, model-zoo entry) next to robustness.json."
        },
    )
    model_name_or_path: str = field(
        default="outputs/quickstart-finetune",
        metadata={"help": "Image classifier to evaluate: a directory written by `save_pretrained` or a Hub id."},
    )
    output_dir: str = field(
        default="outputs/quickstart-eval",
        metadata={"help": "Where robustness.json, per_sample.npz, autoattack.log and the ε-curve PNG go."},
    )
    attacks: list[str] = field(
        default_factory=lambda: list(_DEFAULT.attacks),
        metadata={
            "help": "Attacks to run: clean, pgd-<k>, cw, cw-<k>, autoattack, square, pgd-mi, pgd-feature; any may "
            "end in @eps=<v>/255."
        },
    )
    norm: str = field(
        default=_DEFAULT.norm,
        metadata={
            "help": "Threat model: Linf (ε per pixel, e.g. 8/255) or L2 (ε on the image's Euclidean norm, e.g. 0.5).",
            "choices": ["Linf", "L2"],
        },
    )
    epsilon: str = field(
        default=format_epsilon(_DEFAULT.epsilon), metadata={"help": "Headline budget in [0, 1] pixel units (L∞ 8/255, L2 0.5)."}
    )
    step_size: str | None = field(default=None, metadata={"help": "PGD step α (default ε/4 = 2/255 at 8/255)."})
    restarts: int = field(default=_DEFAULT.restarts, metadata={"help": "Random restarts of the PGD-family attacks."})
    epsilon_sweep: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra budgets for `sweep_attack` (the accuracy-vs-ε curve and the ε checks); [] for none. Default: "
            "the norm's, 1/255 2/255 4/255 16/255 64/255 (Linf) or 0.125 0.25 1.0 8.0 (L2)."
        },
    )
    sweep_attack: str = field(default=_DEFAULT.sweep_attack, metadata={"help": "Attack run at every sweep budget."})
    cw_steps: int = field(default=_DEFAULT.cw_steps, metadata={"help": "Steps of the `cw` attack (PGD on the CW margin)."})
    adaptive_steps: int = field(default=_DEFAULT.adaptive_steps, metadata={"help": "Steps of pgd-mi and pgd-feature."})
    mi_weight: float = field(default=_DEFAULT.mi_weight, metadata={"help": "Weight of nHSIC(features, x′) in pgd-mi."})
    mi_compute_dtype: str = field(
        default=_DEFAULT.mi_compute_dtype,
        metadata={
            "help": "Precision of pgd-mi's nHSIC estimate: auto, float64 or float32 (as the training penalty's).",
            "choices": list(COMPUTE_DTYPES),
        },
    )
    autoattack_version: str = field(
        default=_DEFAULT.autoattack_version,
        metadata={"help": "AutoAttack version: standard, plus, or custom (+ autoattack_attacks)."},
    )
    autoattack_attacks: list[str] = field(
        default_factory=lambda: list(_DEFAULT.autoattack_attacks),
        metadata={"help": "AutoAttack components for autoattack_version=custom."},
    )
    square_queries: int = field(
        default=_DEFAULT.square_queries, metadata={"help": "Query budget of the stand-alone Square attack."}
    )
    batch_size: int = field(default=64, metadata={"help": "Images per attack batch."})
    seed: int = field(default=_DEFAULT.seed, metadata={"help": "Seed of every attack's random start."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 … (default: cuda if available)."})
    check_tolerance: float = field(
        default=0.005, metadata={"help": "Accuracy slack of the consistency checks (at least one sample)."}
    )
    large_epsilon_max_accuracy: float = field(
        default=0.05, metadata={"help": "Accuracy at ε = 64/255 above which the large-ε check fails."}
    )
    fail_on_check: bool = field(
        default=False, metadata={"help": "Exit with status 3 when a gradient-masking check fails."}
    )
    no_progress: bool = field(default=False, metadata={"help": "Hide the progress bars."})
    corruptions_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Also measure accuracy per corruption and severity on this data set (e.g. a CIFAR-10-C copy on the "
            "Hub) with columns image, label, corruption, severity; writes corruptions.json."
        },
    )
    corruptions_config: str | None = field(default=None, metadata={"help": "Config name of corruptions_dataset."})
    corruptions_split: str = field(default="test", metadata={"help": "Split of corruptions_dataset."})
    corruption_column: str = field(default="corruption", metadata={"help": "Column naming each image's corruption."})
    severity_column: str = field(default="severity", metadata={"help": "Column holding each image's severity (1-5)."})
    resume: bool = field(
        default=True,
        metadata={
            "help": "Continue an interrupted evaluation from the batches kept in <output_dir>/eval_state/ (false: "
            "discard them and start over)."
        },
    )
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch intra-op CPU threads (default: torch's). Small models attacked in small batches on busy "
            "cores run much faster with 1."
        },
    )

    def __post_init__(self) -> None:
        if self.protocol not in ("custom", "robustbench"):
            raise ValueError(f"protocol must be 'custom' or 'robustbench', got {self.protocol!r}.")
        if isinstance(self.attacks, str):
            self.attacks = [a for a in self.attacks.replace(",", " ").split() if a]
        if isinstance(self.epsilon_sweep, (str, float, int)):
            self.epsilon_sweep = [a for a in str(self.epsilon_sweep).replace(",", " ").split() if a]
        if isinstance(self.autoattack_attacks, str):
            self.autoattack_attacks = [a for a in self.autoattack_attacks.replace(",", " ").split() if a]
        if self.norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2', got {self.norm!r}.")
        parse_budget(self.epsilon, norm=self.norm)
        if self.step_size is not None:
            parse_budget(self.step_size, "step_size", norm=self.norm)
        for value in self.epsilon_sweep or ():
            parse_budget(value, "epsilon_sweep value", norm=self.norm)
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")

    def attack_settings(self) -> AttackSettings:
        """The `AttackSettings` these arguments ask for, field by field: a renamed settings field is an
        error here, never a command-line option silently dropped.

        An ε-sweep left out is the norm's default (logged); a sweep the user gave is never replaced,
        and one written in k/255 under L2 is run as given, with a warning.
        """
        for name, value in (("--epsilon", [self.epsilon]), ("--epsilon_sweep", self.epsilon_sweep or [])):
            if self.norm == "L2" and any("/255" in str(v) for v in value):
                logger.warning(
                    "--norm L2 with %s %s: an L2 budget is a radius of the whole image (RobustBench's CIFAR-10 L2 "
                    "budget is 0.5), not a per-pixel k/255 budget; running it as given.", name, " ".join(map(str, value))
                )
        settings = AttackSettings(
            attacks=tuple(self.attacks),
            norm=self.norm,
            epsilon=self.epsilon,
            step_size=self.step_size,
            restarts=self.restarts,
            epsilon_sweep=None if self.epsilon_sweep is None else tuple(self.epsilon_sweep),
            sweep_attack=self.sweep_attack,
            cw_steps=self.cw_steps,
            adaptive_steps=self.adaptive_steps,
            mi_weight=self.mi_weight,
            mi_compute_dtype=self.mi_compute_dtype,
            autoattack_version=self.autoattack_version,
            autoattack_attacks=tuple(self.autoattack_attacks),
            square_queries=self.square_queries,
            seed=self.seed,
        )
        if self.epsilon_sweep is None:
            logger.info("No --epsilon_sweep given: the %s default, %s.", self.norm,
                        " ".join(format_epsilon(e, self.norm) for e in settings.epsilon_sweep))
        return settings


@dataclass
class ComparisonArguments:
    """Which evaluations `recipes/compare.py` pairs, and how the bootstrap runs (seeded, so reruns agree)."""

    evaluations: list[str] = field(
        default_factory=list,
        metadata={"help": "Two or more folders written by recipes/evaluate.py on the same images (robustness.json + "
                  "per_sample.npz)."},
    )
    names: list[str] | None = field(
        default=None, metadata={"help": "One display name per evaluation (default: the folder names)."}
    )
    output_dir: str = field(
        default="outputs/comparison",
        metadata={"help": "Where comparison.json, comparison.md and comparison.png go."},
    )
    attacks: list[str] | None = field(
        default=None, metadata={"help": "Attacks to compare (default: every attack all evaluations ran)."}
    )
    robust_attack: str = field(
        default="autoattack", metadata={"help": "Attack of the (clean + robust) / 2 row."}
    )
    bootstrap_samples: int = field(default=10_000, metadata={"help": "Bootstrap resamples of the images."})
    confidence: float = field(default=0.95, metadata={"help": "Level of the bootstrap intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap resampling."})
    no_progress: bool = field(default=False, metadata={"help": "Hide the progress bar."})

    def __post_init__(self) -> None:
        for name in ("evaluations", "names", "attacks"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [v for v in value.replace(",", " ").split() if v])
        if len(self.evaluations) < 2:
            raise ValueError(
                f"Give two or more evaluation folders to compare (--evaluations eval-a eval-b ...), got {self.evaluations}."
            )
        if self.names is not None and len(self.names) != len(self.evaluations):
            raise ValueError(f"--names needs one name per evaluation: {len(self.names)} names for "
                             f"{len(self.evaluations)} evaluations.")
        if self.bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be >= 1, got {self.bootstrap_samples}.")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}.")
