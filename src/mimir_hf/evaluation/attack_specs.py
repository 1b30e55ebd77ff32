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
from dataclasses import dataclass, field
from typing import Any

from ..attacks import NORMS
from ..validation import parse_budget  # re-exported: the evaluation's budgets are read by the same parser
from .autoattack_suite import STANDARD_AUTOATTACK

__all__ = [
    "ATTACK_NAMES",
    "DEFAULT_ATTACKS",
    "AttackSettings",
    "AttackSpec",
    "format_epsilon",
    "norm_display",
    "parse_attack_name",
    "parse_budget",
]

ATTACK_NAMES = ("clean", "pgd-<k>", "cw", "cw-<k>", "autoattack", "square", "pgd-mi", "pgd-feature")
DEFAULT_ATTACKS = ("clean", "pgd-20", "pgd-100", "cw", "autoattack", "square", "pgd-mi", "pgd-feature")
"""What a full evaluation runs when no list is given: the paper's attacks plus the adaptive ones."""


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
    """Defaults every named attack draws on (the headline threat model and the attack hyper-parameters)."""

    epsilon: float = 8 / 255
    step_size: float | None = None  # None: epsilon / 4 (2/255 at 8/255)
    restarts: int = 1
    cw_steps: int = 30
    adaptive_steps: int = 100
    mi_weight: float = 1e-5
    autoattack_version: str = "standard"
    autoattack_attacks: tuple[str, ...] = STANDARD_AUTOATTACK  # for version="custom"
    square_queries: int = 5000
    seed: int = 0
    norm: str = "Linf"  # the threat model: "Linf" or "L2"

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
        if self.autoattack_version not in ("standard", "plus", "custom"):
            raise ValueError(
                f"autoattack_version must be 'standard', 'plus' or 'custom' (with autoattack_attacks), "
                f"got {self.autoattack_version!r}. ('rand' is for randomised defences, which MIMIR models are not.)"
            )
        self.autoattack_attacks = tuple(self.autoattack_attacks)

    @property
    def step_ratio(self) -> float:
        return (self.step_size / self.epsilon) if self.epsilon > 0 else 0.25


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
        options = {"mi_weight": settings.mi_weight} if base == "pgd-mi" else {}
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

