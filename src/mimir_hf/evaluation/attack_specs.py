"""Attack names and budgets: what `robustness.json` keys mean, parsed into `AttackSpec`s.

The named attacks of a robustness evaluation, in pixel space [0, 1], L∞ (the default) or L2.

Every white-box attack here is the shared PGD core (`mimir_hf.attacks.pgd`) with a different
objective; AutoAttack and Square come from the authors' own package (`pyautoattack`), never
from a re-implementation. Names (the keys of `robustness.json`):

========================  ==========================================================
``clean``                 no attack
``pgd-<k>``               k steps of PGD on cross-entropy, random start (``pgd-20``, ``pgd-100``)
``cw`` / ``cw-<k>``       PGD on the Carlini–Wagner margin (CW-L∞); ``cw`` uses ``cw_steps``
``autoattack``            AutoAttack (``autoattack_version``, "standard" = APGD-CE, APGD-T, FAB-T, Square)
``square``                Square alone (black-box, score-based; for the gradient-masking check)
``pgd-mi`` / ``-<k>``     adaptive: maximise CE + ``mi_weight`` · nHSIC(encoder features, x′)
``pgd-feature`` / ``-<k>``  adaptive: maximise ‖f(x′) − f(x)‖₂ of the encoder's last hidden states
========================  ==========================================================

Any name may carry a budget of its own: ``pgd-20@eps=64/255`` (or ``@eps=0.25``); its step size
scales with ε (α/ε as in the headline setting).
"""


from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attacks import NORMS
from ..mutual_information import estimator_hyperparameters
from ..validation import parse_budget  # re-exported: the evaluation's budgets are read by the same parser
from .autoattack_suite import STANDARD_AUTOATTACK

__all__ = [
    "ATTACK_NAMES",
    "DEFAULT_ATTACKS",
    "DEFAULT_EPSILON_SWEEP",
    "DEFAULT_L2_EPSILON_SWEEP",
    "AttackSettings",
    "AttackSpec",
    "format_epsilon",
    "norm_display",
    "parse_attack_name",
    "parse_budget",
    "plan_attacks",
]

ATTACK_NAMES = ("clean", "pgd-<k>", "cw", "cw-<k>", "autoattack", "square", "pgd-mi", "pgd-feature")
DEFAULT_ATTACKS = ("clean", "pgd-20", "pgd-100", "cw", "autoattack", "square", "pgd-mi", "pgd-feature")
"""What a full evaluation runs when no list is given: the paper's attacks plus the adaptive ones."""
DEFAULT_EPSILON_SWEEP = (1 / 255, 2 / 255, 4 / 255, 16 / 255, 64 / 255)
"""L∞ budgets of the ε-curve and the checks; 64/255 is the large budget at which accuracy must be near zero."""
DEFAULT_L2_EPSILON_SWEEP = (0.125, 0.25, 1.0, 8.0)
"""L2 radii of the ε-curve and the checks; 8.0 is the large budget at which accuracy must be near zero."""


def format_epsilon(epsilon: float | None, norm: str = "Linf") -> str:
    """A budget as people write it: ``8/255`` for L∞, the plain radius (``0.5``) for L2, ``—`` for none.

    L∞ budgets are written in grey levels to 4 decimals, never rounded to a "nice" fraction: the
    text names attacks (``pgd-20@eps=8/255``) and parses back to the budget that ran, and a card
    must not print 8/255 for a run at 0.0314 (8.007/255). The one formatter for reports, tables,
    attack names and cards.
    """
    if epsilon is None:
        return "—"
    if norm != "Linf":
        return f"{epsilon:g}"
    levels = round(epsilon * 255, 4)
    return f"{levels:g}/255"


def norm_display(norm: str) -> str:
    return {"Linf": "L∞", "L2": "L2"}.get(norm, norm)



@dataclass
class AttackSettings:
    """What an evaluation attacks with: the attacks, the threat model, and every attack's hyper-parameters.

    The one definition of the attack options: `evaluate_robustness` takes it, `parse_attack_name` draws
    each named attack's defaults from it, and `EvaluationArguments.attack_settings()` builds it from the
    command line. Budgets accept ``"8/255"`` or a float in [0, 1] pixel units.

    Args:
        epsilon: the headline budget (L∞ per pixel, or the L2 radius of the whole image).
        step_size: PGD step α; None for ε/4 (2/255 at 8/255).
        restarts: random restarts of the PGD-family attacks.
        cw_steps: steps of `cw`; adaptive_steps: steps of `pgd-mi` and `pgd-feature`.
        mi_weight: w of pgd-mi's CE + w·nHSIC(features, x′); mi_compute_dtype: precision of its estimate
            (`"auto"`, `"float64"`, `"float32"`, as the training penalty's).
        autoattack_version: "standard", "plus", or "custom" (the components in `autoattack_attacks`).
        square_queries: query budget of the stand-alone Square attack.
        seed: seed of every attack's random start.
        norm: the threat model, "Linf" or "L2".
        attacks: the attack names (`DEFAULT_ATTACKS` when not given).
        epsilon_sweep: extra budgets at which `sweep_attack` runs (the accuracy-vs-ε curve and the ε
            checks); () for none; None for the norm's default (`DEFAULT_EPSILON_SWEEP`,
            `DEFAULT_L2_EPSILON_SWEEP`).
    """

    epsilon: float | str = 8 / 255
    step_size: float | str | None = None
    restarts: int = 1
    cw_steps: int = 30
    adaptive_steps: int = 100
    mi_weight: float = 1e-5
    autoattack_version: str = "standard"
    autoattack_attacks: tuple[str, ...] = STANDARD_AUTOATTACK  # for version="custom"
    square_queries: int = 5000
    seed: int = 0
    norm: str = "Linf"
    mi_compute_dtype: str = "auto"
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    epsilon_sweep: tuple[float, ...] | None = None
    sweep_attack: str = "pgd-20"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        self.epsilon = parse_budget(self.epsilon, norm=self.norm)
        if self.step_size is None:
            self.step_size = self.epsilon / 4
        self.step_size = parse_budget(self.step_size, "step_size", norm=self.norm)
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}.")
        for key in ("cw_steps", "adaptive_steps", "square_queries"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}.")
        if self.mi_weight < 0:
            raise ValueError(f"mi_weight must be >= 0, got {self.mi_weight}.")
        estimator_hyperparameters("hsic_cca", compute_dtype=self.mi_compute_dtype, prefix="mi_")
        if self.autoattack_version not in ("standard", "plus", "custom"):
            raise ValueError(
                f"autoattack_version must be 'standard', 'plus' or 'custom' (with autoattack_attacks), "
                f"got {self.autoattack_version!r}. ('rand' is for randomised defences, which MIMIR models are not.)"
            )
        self.autoattack_attacks = _names(self.autoattack_attacks)
        self.attacks = _names(self.attacks)
        if self.epsilon_sweep is None:
            self.epsilon_sweep = DEFAULT_L2_EPSILON_SWEEP if self.norm == "L2" else DEFAULT_EPSILON_SWEEP
        sweep = (self.epsilon_sweep,) if isinstance(self.epsilon_sweep, (str, int, float)) else self.epsilon_sweep
        self.epsilon_sweep = tuple(parse_budget(value, "epsilon_sweep value", norm=self.norm) for value in sweep)

    @property
    def step_ratio(self) -> float:
        return (self.step_size / self.epsilon) if self.epsilon > 0 else 0.25


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """A list of names as a tuple; a string splits at commas and spaces (``"clean, pgd-20"``)."""
    if isinstance(value, str):
        return tuple(name for name in value.replace(",", " ").split() if name)
    return tuple(value)


@dataclass(frozen=True)
class AttackSpec:
    """One fully specified attack: what `robustness.json` records about it."""

    name: str
    kind: str  # clean | pgd | cw | autoattack | square | pgd-mi | pgd-feature
    epsilon: float
    steps: int | None = None
    step_size: float | None = None
    restarts: int = 1
    seed: int = 0
    library: str = "mimir_hf"
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    norm: str = "Linf"

    @property
    def white_box(self) -> bool:
        return self.kind in ("pgd", "cw", "pgd-mi", "pgd-feature")


_NAME = re.compile(r"^(?P<base>[a-z\-]+?)(?:-(?P<steps>\d+))?(?:@eps=(?P<eps>[0-9./]+))?$")
_BASES = {"clean", "pgd", "cw", "autoattack", "square", "pgd-mi", "pgd-feature"}


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name.split("@")[0], DEFAULT_ATTACKS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown attack {name!r}.{hint} Known attacks: clean, pgd-<k> (e.g. pgd-20), cw, cw-<k>, autoattack, "
        "square, pgd-mi, pgd-feature; any of them may end in @eps=<v>/255."
    )


def parse_attack_name(name: str, settings: AttackSettings) -> AttackSpec:
    """Turn a name such as ``pgd-20`` or ``cw@eps=4/255`` into an `AttackSpec` (ValueError if unknown)."""
    text = name.strip().lower()
    match = _NAME.match(text)
    if match is None or match.group("base") not in _BASES:
        raise _unknown(name)
    base, steps_text, eps_text = match.group("base"), match.group("steps"), match.group("eps")
    norm = settings.norm
    epsilon = settings.epsilon if eps_text is None else parse_budget(eps_text, f"epsilon in {name!r}", norm=norm)
    step_size = settings.step_size if eps_text is None else epsilon * settings.step_ratio
    steps = int(steps_text) if steps_text is not None else None
    suffix = "" if eps_text is None else f"@eps={format_epsilon(epsilon, norm)}"
    common = {"epsilon": epsilon, "seed": settings.seed, "norm": norm}

    if base == "clean":
        if steps is not None or eps_text is not None:
            raise _unknown(name)
        return AttackSpec("clean", "clean", epsilon=0.0, steps=0, step_size=0.0, restarts=1, seed=settings.seed, norm=norm)
    if base == "pgd":
        if steps is None:
            raise ValueError(f"Attack {name!r} needs a step count, e.g. 'pgd-20' or 'pgd-100'.")
        return AttackSpec(f"pgd-{steps}{suffix}", "pgd", steps=steps, step_size=step_size, restarts=settings.restarts, **common)
    if base == "cw":
        k = settings.cw_steps if steps is None else steps
        label = "cw" if steps is None else f"cw-{steps}"
        return AttackSpec(f"{label}{suffix}", "cw", steps=k, step_size=step_size, restarts=settings.restarts, **common)
    if base in ("pgd-mi", "pgd-feature"):
        k = settings.adaptive_steps if steps is None else steps
        label = base if steps is None else f"{base}-{steps}"
        options: dict[str, Any] = {}
        if base == "pgd-mi":
            options["mi_weight"] = settings.mi_weight
            if settings.mi_compute_dtype != "auto":  # "auto" ran before it could be chosen: earlier reports and
                options["mi_compute_dtype"] = settings.mi_compute_dtype  # resumable states stay valid
        return AttackSpec(
            f"{label}{suffix}", base, steps=k, step_size=step_size, restarts=settings.restarts, options=options, **common
        )
    if steps is not None:
        raise _unknown(name)
    if base == "autoattack":
        version = settings.autoattack_version
        options = {"version": version}
        if version == "custom":
            options["attacks"] = list(settings.autoattack_attacks)
        return AttackSpec(f"autoattack{suffix}", "autoattack", library="autoattack", options=options, **common)
    return AttackSpec(
        f"square{suffix}", "square", steps=settings.square_queries, library="autoattack",
        options={"queries": settings.square_queries}, **common,
    )



def plan_attacks(settings: AttackSettings) -> list[AttackSpec]:
    """The specs an evaluation runs: `settings.attacks`, then `sweep_attack` at each budget of the ε-sweep
    that no listed attack covers. Errors for unknown names or bad budgets come here, before anything is
    loaded. `clean` always runs first (robust accuracy counts only clean-correct points)."""
    specs = [parse_attack_name(name, settings) for name in settings.attacks]
    if settings.epsilon_sweep:
        base = parse_attack_name(settings.sweep_attack, settings)
        if base.kind == "clean":
            raise ValueError("sweep_attack must be an attack, not 'clean'.")
        for eps in settings.epsilon_sweep:
            if abs(eps - settings.epsilon) <= 1e-9:
                if all(s.name != base.name for s in specs):
                    specs.append(base)
            else:
                name = f"{base.name.split('@')[0]}@eps={format_epsilon(eps, settings.norm)}"
                specs.append(parse_attack_name(name, settings))
    unique: dict[str, AttackSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    clean = unique.pop("clean", None) or parse_attack_name("clean", settings)
    return [clean, *unique.values()]
