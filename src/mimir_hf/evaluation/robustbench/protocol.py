"""RobustBench's protocol: the arguments that would break it (refused before the run) and the reasons a
finished evaluation is not a leaderboard number (written into the entry, never hidden)."""

from __future__ import annotations

import logging
from typing import Any

from ..attack_specs import format_epsilon, parse_budget
from ..robustness_report import RobustnessReport
from .datasets import CIFAR_C_IMAGES_PER_PAIR, ROBUSTBENCH_EPSILONS, ROBUSTBENCH_NUM_IMAGES, robustbench_dataset

__all__ = ["NOT_AN_ENTRY", "check_protocol_arguments", "corruptions_problems", "protocol_problems"]

logger = logging.getLogger(__name__)

NOT_AN_ENTRY = "NOT A ROBUSTBENCH ENTRY"


def check_protocol_arguments(eval_args: Any, data_args: Any) -> None:
    """Refuse settings that contradict RobustBench's protocol (an explicit value is never silently replaced)."""
    attacks = [a.lower() for a in eval_args.attacks]
    if "clean" not in attacks or "autoattack" not in attacks:
        raise ValueError(
            f"--protocol robustbench measures clean accuracy and AutoAttack; --attacks {' '.join(eval_args.attacks)} "
            "lacks one. Use --attacks clean autoattack (other attacks may be added)."
        )
    if eval_args.autoattack_version != "standard":
        raise ValueError(
            f"--protocol robustbench runs AutoAttack 'standard'; got --autoattack_version {eval_args.autoattack_version}."
        )
    dataset = robustbench_dataset(data_args.dataset)
    if dataset is None:
        logger.warning(
            "%s is not a RobustBench data set: the ModelInfo JSON is written for the pipeline's sake and marked '%s'.",
            data_args.dataset, NOT_AN_ENTRY,
        )
        return
    norm = getattr(eval_args, "norm", "Linf")
    budget = ROBUSTBENCH_EPSILONS.get((dataset, norm))
    if budget is None:
        raise ValueError(f"RobustBench has no {norm} leaderboard for {dataset}.")
    if abs(parse_budget(eval_args.epsilon, norm=norm) - budget) > 1e-6:
        shown = format_epsilon(budget, norm)
        raise ValueError(f"RobustBench's {dataset} {norm} budget is {shown}; got --epsilon {eval_args.epsilon}. Pass "
                         f"--epsilon {shown}.")
    if data_args.max_eval_samples is not None:
        raise ValueError(
            f"RobustBench evaluates {ROBUSTBENCH_NUM_IMAGES[dataset]} {dataset} images; --max_eval_samples "
            f"{data_args.max_eval_samples} would make a subset. Drop it (or use --protocol custom for a first look)."
        )


def protocol_problems(report: RobustnessReport) -> list[str]:
    """Why this report is not a RobustBench leaderboard number ([] when it is)."""
    problems = []
    dataset = robustbench_dataset(report.dataset)
    threat = report.threat_model
    if dataset is None:
        problems.append(f"{report.dataset!r} is not a RobustBench data set (CIFAR-10, CIFAR-100, ImageNet)")
    else:
        expected = ROBUSTBENCH_NUM_IMAGES[dataset]
        if report.num_samples != expected:
            problems.append(f"{report.num_samples} images evaluated; RobustBench uses {expected}")
        budget = ROBUSTBENCH_EPSILONS.get((dataset, threat.norm))
        if budget is None:
            problems.append(f"RobustBench has no {threat.norm} leaderboard for {dataset}")
        elif abs(threat.epsilon - budget) > 1e-6:
            problems.append(f"ε = {threat.epsilon_text}; RobustBench's {dataset} {threat.norm} budget is "
                            f"{format_epsilon(budget, threat.norm)}")
    autoattack = report.attacks.get("autoattack")
    if autoattack is None:
        problems.append("no AutoAttack result")
    elif not autoattack.standard_autoattack:
        ran = autoattack.attacks_run or autoattack.requested_components
        problems.append(f"AutoAttack ran {', '.join(ran) if ran else autoattack.version} ({autoattack.version}), "
                        "not the full standard suite")
    if tuple(threat.input_range) != (0.0, 1.0):
        problems.append("inputs are not [0, 1] pixels")
    if report.failed_checks:
        problems.append(f"gradient-masking check(s) failed: {', '.join(c.name for c in report.failed_checks)}")
    return problems


def corruptions_problems(corruptions: dict[str, Any], report: RobustnessReport) -> list[str]:
    """Why corruptions.json (with the clean accuracy from `report`) is not a CIFAR-10-C/100-C leaderboard entry:
    anything but the full set (15 corruptions × 5 severities × 10,000 images, clean accuracy on the full test set)."""
    from ..corruptions import CIFAR10C_CORRUPTIONS

    dataset = robustbench_dataset(report.dataset)
    problems = []
    if dataset not in ("cifar10", "cifar100"):
        problems.append(f"{report.dataset!r} is not CIFAR-10/100 (RobustBench's CIFAR corruption leaderboards)")
    elif report.num_samples != ROBUSTBENCH_NUM_IMAGES[dataset]:
        problems.append(f"clean accuracy on {report.num_samples} images; RobustBench uses {ROBUSTBENCH_NUM_IMAGES[dataset]}")
    missing_pairs = [
        f"{c}@{s}" for c in CIFAR10C_CORRUPTIONS for s in range(1, 6)
        if corruptions.get("num_images", {}).get(c, {}).get(str(s)) != CIFAR_C_IMAGES_PER_PAIR
    ]
    if missing_pairs:
        problems.append(f"{len(missing_pairs)} of the 75 corruption × severity pairs lack their 10,000 images "
                        f"(e.g. {', '.join(missing_pairs[:3])})")
    return problems
