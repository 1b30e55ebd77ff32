"""Running one named attack on one batch: the shared PGD core with the attack's objective, or
AutoAttack / Square through `evaluation.autoattack`.

Names and budgets are parsed in `evaluation.attack_specs` (re-exported here for the callers that
import them from this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks import cross_entropy_objective, cw_margin_objective, pgd
from ..mutual_information.kernels import no_autocast
from .attack_specs import (
    ATTACK_NAMES,
    DEFAULT_ATTACKS,
    AttackSettings,
    AttackSpec,
    format_epsilon,
    norm_display,
    parse_attack_name,
    parse_budget,
)
from .autoattack import autoattack_version, capture_autoattack_log, run_autoattack
from .wrapper import LogitsModel

__all__ = [
    "ATTACK_NAMES",
    "DEFAULT_ATTACKS",
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
            return run_autoattack(self.spec, model, inputs, labels, details)
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


