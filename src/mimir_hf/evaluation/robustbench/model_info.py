"""RobustBench's ModelInfo, built from a robustness report: one builder for the adversarial and the
corruptions leaderboards, which differ only in the robust accuracy and ε."""

from __future__ import annotations

from typing import Any

from ..robustness_report import RobustnessReport
from .arguments import RobustBenchArguments
from .datasets import model_info_dataset
from .protocol import NOT_AN_ENTRY, corruptions_problems, protocol_problems

__all__ = ["USER_FIELDS", "build_corruptions_model_info", "build_model_info"]

USER_FIELDS = ("link", "name", "authors", "venue", "additional_data", "reported")
"""What only the authors know: left null unless given, and listed for the user."""
_MODEL_TYPES = {"vit": "ViT", "beit": "BEiT", "vit_mae": "ViT (MAE)", "deit": "DeiT", "swin": "Swin"}


def _percent(fraction: float) -> str:
    return f"{100 * float(fraction):.2f}"


def _architecture(config: dict[str, Any] | None) -> str:
    if not config:
        return "unknown"
    kind = _MODEL_TYPES.get(str(config.get("model_type")), str(config.get("model_type") or "unknown"))
    parts = []
    for key, label in (("hidden_size", "width"), ("num_hidden_layers", "depth"), ("patch_size", "patch")):
        if config.get(key) is not None:
            parts.append(f"{label} {config[key]}")
    return f"{kind} ({', '.join(parts)})" if parts else kind


def _model_info(
    report: RobustnessReport,
    arguments: RobustBenchArguments,
    model_config: dict[str, Any] | None,
    problems: list[str],
    eps: str | None,
    robust: dict[str, str],
) -> tuple[dict[str, Any], list[str], list[str]]:
    clean = report.attacks.get("clean")
    if clean is None:
        raise ValueError("A RobustBench entry needs the clean accuracy; the report has no 'clean' entry. Evaluate with "
                         "--protocol robustbench (or attacks clean + autoattack).")
    info = {
        "link": arguments.paper_link,
        "name": arguments.paper_title,
        "authors": arguments.paper_authors,
        "additional_data": arguments.additional_data,
        "number_forward_passes": 1,  # a stock transformers classifier: one deterministic forward pass
        "dataset": model_info_dataset(report.dataset),
        "venue": arguments.venue,
        "architecture": arguments.architecture or _architecture(model_config),
        "eps": eps,
        "clean_acc": _percent(clean.accuracy),
        "reported": arguments.reported_accuracy,
        **robust,
        "footnote": f"{NOT_AN_ENTRY}: " + "; ".join(problems) + "." if problems else None,
    }
    return info, [key for key in USER_FIELDS if info[key] is None], problems


def build_model_info(
    report: RobustnessReport, arguments: RobustBenchArguments | None = None, model_config: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The ModelInfo dict, the fields left for the user, and the protocol problems (empty for a real entry)."""
    autoattack = report.attacks.get("autoattack")
    if autoattack is None:
        raise ValueError("A RobustBench entry needs the clean and AutoAttack accuracies; evaluate with "
                         "--protocol robustbench (or attacks clean + autoattack).")
    return _model_info(report, arguments or RobustBenchArguments(), model_config, protocol_problems(report),
                       eps=report.threat_model.epsilon_text, robust={"autoattack_acc": _percent(autoattack.accuracy)})


def build_corruptions_model_info(
    corruptions: dict[str, Any],
    report: RobustnessReport,
    arguments: RobustBenchArguments | None = None,
    model_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The corruptions leaderboard's ModelInfo: the corrupted accuracy from corruptions.json's content, the clean
    accuracy from the report of the clean test set."""
    return _model_info(report, arguments or RobustBenchArguments(), model_config,
                       corruptions_problems(corruptions, report), eps=None,
                       robust={"corruptions_acc": _percent(corruptions["mean_accuracy"])})
