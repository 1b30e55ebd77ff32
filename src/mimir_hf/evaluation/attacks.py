"""The named attacks of a robustness evaluation, in pixel space [0, 1], L∞ (the default) or L2.

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

import contextlib
import difflib
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks import NORMS, cross_entropy_objective, cw_margin_objective, pgd
from ..mutual_information.kernels import no_autocast
from ..validation import check_budget
from .wrapper import LogitsModel

__all__ = [
    "DEFAULT_ATTACKS",
    "ATTACK_NAMES",
    "Attack",
    "AttackSettings",
    "AttackSpec",
    "autoattack_version",
    "build_attack",
    "capture_autoattack_log",
    "format_epsilon",
    "norm_display",
    "parse_attack_name",
    "parse_budget",
]

ATTACK_NAMES = ("clean", "pgd-<k>", "cw", "cw-<k>", "autoattack", "square", "pgd-mi", "pgd-feature")
DEFAULT_ATTACKS = ("clean", "pgd-20", "pgd-100", "cw", "autoattack", "square", "pgd-mi", "pgd-feature")
"""What a full evaluation runs when no list is given: the paper's attacks plus the adaptive ones."""
_AUTOATTACK_LOGGER = "auto-attack"


def parse_budget(value: float | int | str, name: str = "epsilon", norm: str = "Linf") -> float:
    """Read a budget given as a float in [0, 1] units or as a string like ``"8/255"`` (an L2 radius may exceed 1)."""
    if isinstance(value, str):
        text = value.strip()
        numerator, slash, denominator = text.partition("/")
        try:  # "8/255", "0.5/255" (as format_epsilon writes half grey levels), "0.0314"
            number = float(Fraction(numerator.strip())) / (float(Fraction(denominator.strip())) if slash else 1.0)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{name}={value!r} is not a number or a fraction such as '8/255'.") from None
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    check_budget(number, name, norm)
    return number


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


def autoattack_version() -> str:
    try:
        import pyautoattack

        return str(getattr(pyautoattack, "__version__", "unknown"))
    except ImportError:
        return "not installed"


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
    autoattack_attacks: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")  # for version="custom"
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


# ----------------------------------------------------------------------------------------------
# running one attack on one batch


@dataclass
class Attack:
    """An `AttackSpec` bound to its implementation; `run` maps a clean batch to an adversarial one."""

    spec: AttackSpec

    def run(
        self,
        model: LogitsModel,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        details: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """`details`, when given, receives what the run found out beyond x′: AutoAttack's per-component
        results (`components`), the components it ran and why (`attacks_run`, `note`)."""
        kind = self.spec.kind
        if kind == "clean":
            return inputs
        # A robustness number must come from full-precision gradients: a bf16 attack is a weaker
        # attack and would overstate robustness. The evaluation casts the model to float32 and
        # also switches off any autocast a caller left on.
        with no_autocast(inputs.device):
            return self._run(model, inputs, labels, generator, details)

    def _run(
        self,
        model: LogitsModel,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None,
        details: dict[str, Any] | None,
    ) -> torch.Tensor:
        kind = self.spec.kind
        if kind in ("autoattack", "square"):
            return _run_autoattack(self.spec, model, inputs, labels, details)
        objective = _objective(self.spec, model, inputs, labels, details)

        def fooled(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x).argmax(dim=1) != labels

        return pgd(
            objective,
            inputs,
            epsilon=self.spec.epsilon,
            step_size=float(self.spec.step_size or 0.0),
            steps=int(self.spec.steps or 0),
            random_start=True,
            restarts=self.spec.restarts,
            model=model,
            model_mode="eval",
            is_successful=fooled,
            generator=generator,
            norm=self.spec.norm,
        )


def build_attack(name: str, settings: AttackSettings) -> Attack:
    return Attack(parse_attack_name(name, settings))


def _objective(
    spec: AttackSpec, model: LogitsModel, inputs: torch.Tensor, labels: torch.Tensor, details: dict[str, Any] | None = None
):
    """The per-sample loss the attack maximises. Run state (pgd-mi's dropped MI steps) goes into
    `details`, never into the spec, which describes the attack and is shared by every batch."""
    details = {} if details is None else details
    if spec.kind == "pgd":
        return cross_entropy_objective(model, labels)
    if spec.kind == "cw":
        return cw_margin_objective(model, labels)
    if spec.kind == "pgd-mi":
        try:
            from ..mutual_information import hsic_normalized_cca
        except ImportError as error:  # pragma: no cover - the package ships it
            raise ImportError("pgd-mi needs mimir_hf.mutual_information.hsic_normalized_cca.") from error
        weight = float(spec.options.get("mi_weight", 1e-5))

        def mi_objective(x: torch.Tensor) -> torch.Tensor:
            logits, features = model.logits_and_features(x)
            ce = F.cross_entropy(logits.float(), labels, reduction="none")
            if weight == 0 or x.shape[0] < 2:
                return ce
            try:
                hsic = hsic_normalized_cca(features.flatten(1).float(), x.flatten(1).float())
            except torch.linalg.LinAlgError:  # singular kernel: this step follows CE alone, counted
                details["mi_dropped_steps"] = details.get("mi_dropped_steps", 0) + 1
                return ce
            if not torch.isfinite(hsic):
                details["mi_dropped_steps"] = details.get("mi_dropped_steps", 0) + 1
                return ce
            # Maximising mean(CE) + w·nHSIC is, up to the factor B that sign(∇) ignores, maximising
            # Σ_i (CE_i + w·nHSIC): every sample carries the whole (batch-level) MI term.
            return ce + weight * hsic

        return mi_objective
    if spec.kind == "pgd-feature":
        with torch.no_grad():
            _, clean_features = model.logits_and_features(inputs)
        clean_features = clean_features.detach().flatten(1).float()

        def feature_objective(x: torch.Tensor) -> torch.Tensor:
            _, features = model.logits_and_features(x)
            difference = features.flatten(1).float() - clean_features
            return (difference.pow(2).sum(dim=1) + 1e-12).sqrt()

        return feature_objective
    raise ValueError(f"No objective for attack kind {spec.kind!r}.")


def _autoattack_plan(spec: AttackSpec, num_classes: int) -> tuple[str, list[str] | None, str]:
    """AutoAttack version and attack list for this model; a note when the class count forces a change."""
    if spec.kind == "square":
        return "custom", ["square"], ""
    version = spec.options.get("version", "standard")
    attacks = spec.options.get("attacks") if version == "custom" else None
    note = ""
    if num_classes < 4:
        # APGD-T and APGD-DLR need >= 4 (targeted DLR) / >= 3 logits; keep what is defined.
        planned = list(attacks) if attacks else (
            ["apgd-ce", "apgd-t", "fab-t", "square"] if version == "standard"
            else ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
        )
        dropped = [a for a in planned if a == "apgd-t" or (a == "apgd-dlr" and num_classes < 3)]
        if dropped:
            attacks = [a for a in planned if a not in dropped]
            note = f"{', '.join(dropped)} dropped: the DLR losses need more than {num_classes} classes"
            version = "custom"
    return version, attacks, note


def _build_autoattack(
    spec: AttackSpec,
    model: LogitsModel,
    version: str,
    attacks: list[str] | None,
    num_classes: int,
    device: torch.device,
) -> Any:
    """pyautoattack's `AutoAttack`, with every component set as the standard suite sets it.

    The package configures its components only for the named versions; a "custom" suite keeps the
    constructor's values (5 APGD-CE restarts, 5 FAB restarts). A custom subset of the standard
    components should cost and hit like those components do inside standard, so that a bounded run is
    comparable with (and an upper bound on the accuracy of) the full one.
    """
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError(
            "AutoAttack needs the authors' package: pip install pyautoattack (imports without torchvision)."
        ) from error
    adversary = AutoAttack(model, norm=spec.norm, eps=spec.epsilon, version=version, attacks=attacks, seed=spec.seed, device=device)
    if version == "custom":
        adversary.apgd.n_restarts = 1
        adversary.apgd_targeted.n_restarts = 1
        adversary.fab.n_restarts = 1
    targets = max(1, min(9, num_classes - 1))
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    adversary.square.n_queries = int(spec.options.get("queries", 5000)) if spec.kind == "square" else 5000
    return adversary


def _run_autoattack(
    spec: AttackSpec,
    model: LogitsModel,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    details: dict[str, Any] | None = None,
) -> torch.Tensor:
    """AutoAttack's cascade, one component at a time, so that each component's breaks and time are known.

    pyautoattack's `run_standard_evaluation` runs the components in order, each on the points no earlier
    component broke, every component seeded with the same seed; it reports only the accuracy after each
    (in its log). Running the same adversary with one component at a time on the points still standing
    is that cascade step for step, with the breaks and the time of each component measured here.
    """
    with torch.no_grad():
        num_classes = int(model(inputs[:1]).shape[1])
    version, attacks, note = _autoattack_plan(spec, num_classes)
    adversary = _build_autoattack(spec, model, version, attacks, num_classes, inputs.device)
    components = list(adversary.attacks_to_run)
    devices = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
    adversarial = inputs.detach().clone()
    standing = torch.ones(inputs.shape[0], dtype=torch.bool, device=inputs.device)
    results: dict[str, dict[str, Any]] = {}
    for component in components:
        todo = torch.nonzero(standing).flatten()
        if todo.numel() == 0:
            results[component] = {"attacked": 0, "broken": 0, "seconds": 0.0}
            continue
        adversary.attacks_to_run = [component]
        start = time.perf_counter()
        with torch.random.fork_rng(devices=devices):  # AutoAttack seeds the global RNG; leave the caller's alone
            x_adv, y_adv = adversary.run_standard_evaluation(inputs[todo], labels[todo], batch_size=int(todo.numel()))
        fooled = y_adv.to(labels.device) != labels[todo]  # its own verdict: the prediction on x′ of each point it broke
        seconds = time.perf_counter() - start
        adversarial[todo[fooled]] = x_adv[fooled].detach()
        standing[todo[fooled]] = False
        results[component] = {"attacked": int(todo.numel()), "broken": int(fooled.sum()), "seconds": seconds}
    adversary.attacks_to_run = components
    if details is not None:
        details["components"] = results
        details["attacks_run"] = components
        if note:
            details["note"] = note
    return adversarial.detach()


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


AUTOATTACK_LOG_HEADER = (
    "# pyautoattack's own log, written during a mimir_hf evaluation.\n"
    "# Each AutoAttack run is given only the images that the model classifies correctly without attack\n"
    "# (the clean-correct part of each batch), so the 'initial accuracy' it logs reads 100% by construction\n"
    "# and its 'robust accuracy' is a fraction of that subset. The accuracy over all evaluated images is\n"
    "# attacks.autoattack.accuracy in robustness.json.\n"
)


@contextlib.contextmanager
def capture_autoattack_log(path: str | Path | None) -> Iterator[list[str]]:
    """Send AutoAttack's own log (it logs through the ``auto-attack`` logger) to `path`; yield its warnings."""
    logger = logging.getLogger(_AUTOATTACK_LOGGER)
    collector = _Collector()
    handlers: list[logging.Handler] = [collector]
    if path is not None:
        with open(path, "a", encoding="utf-8") as log_file:
            log_file.write(AUTOATTACK_LOG_HEADER)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(file_handler)
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield collector.messages
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(old_level)
        logger.propagate = old_propagate
