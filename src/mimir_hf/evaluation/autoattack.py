"""AutoAttack and Square from the authors' own package (`pyautoattack`), never a re-implementation.

The adapter runs the components one at a time on the points still standing, which is the
package's own cascade step for step, and records what each broke and its time; the package's log
is captured into `autoattack.log` with a header that explains its "initial accuracy".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .attack_specs import AttackSpec
from .autoattack_suite import PLUS_AUTOATTACK, STANDARD_AUTOATTACK
from .wrapper import LogitsModel

__all__ = ["AUTOATTACK_LOG_HEADER", "autoattack_version", "capture_autoattack_log", "component_results", "run_autoattack"]

_AUTOATTACK_LOGGER = "auto-attack"


def autoattack_version() -> str:
    try:
        import pyautoattack

        return str(getattr(pyautoattack, "__version__", "unknown"))
    except ImportError:
        return "not installed"


def _autoattack_plan(spec: AttackSpec, num_classes: int) -> tuple[str, list[str] | None, str]:
    """AutoAttack version and attack list for this model; a note when the class count forces a change."""
    if spec.kind == "square":
        return "custom", ["square"], ""
    version = spec.options.get("version", "standard")
    attacks = spec.options.get("attacks") if version == "custom" else None
    note = ""
    if num_classes < 4:
        # APGD-T and APGD-DLR need >= 4 (targeted DLR) / >= 3 logits; keep what is defined.
        planned = list(attacks) if attacks else list(STANDARD_AUTOATTACK if version == "standard" else PLUS_AUTOATTACK)
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


def run_autoattack(
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


def component_results(details: list[dict[str, Any]], clean_count: int, n: int) -> list[dict[str, Any]]:
    """AutoAttack's cascade, per component over all images, from the per-batch `details` that `run_autoattack`
    filled: points attacked and broken, time, and the accuracy over all `n` images after the component."""
    order: list[str] = []
    totals: dict[str, dict[str, float]] = {}
    for batch in details:
        for name, values in (batch.get("components") or {}).items():
            if name not in totals:
                order.append(name)
                totals[name] = {"attacked": 0, "broken": 0, "seconds": 0.0}
            for key in totals[name]:
                totals[name][key] += values[key]
    standing = clean_count
    rows = []
    for name in order:
        standing -= int(totals[name]["broken"])
        rows.append({
            "name": name,
            "attacked": int(totals[name]["attacked"]),
            "broken": int(totals[name]["broken"]),
            "robust_accuracy_after": standing / n if n else float("nan"),
            "wall_time_seconds": round(float(totals[name]["seconds"]), 3),
        })
    return rows


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
