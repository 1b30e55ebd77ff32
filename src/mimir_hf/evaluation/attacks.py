"""Running one named attack on one batch: the shared PGD core with the attack's objective, or
AutoAttack / Square through `evaluation.autoattack`. Names and budgets are parsed in
`evaluation.attack_specs`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks import cross_entropy_objective, cw_margin_objective, pgd
from ..mutual_information import MutualInformationPenalty
from ..mutual_information.kernels import no_autocast
from .attack_specs import AttackSettings, AttackSpec, parse_attack_name
from .autoattack import run_autoattack
from .wrapper import LogitsModel

__all__ = ["Attack", "build_attack"]


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
        return _mi_objective(spec, model, labels, details)
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


def _mi_objective(spec: AttackSpec, model: LogitsModel, labels: torch.Tensor, details: dict[str, Any]):
    """CE + w·nHSIC(encoder features, x′), the MI term estimated by the training penalty itself, so the
    attack uses the estimator, the precision and the failure handling MIMIR trains with.

    A step whose estimate the penalty drops (a singular kernel) follows CE alone rather than the
    penalty's stand-in zero, whose backward through a failed solve may carry NaN; the drops are
    counted in `details["mi_dropped_steps"]`.
    """
    weight = float(spec.options.get("mi_weight", 1e-5))
    penalty = MutualInformationPenalty("hsic_cca", compute_dtype=str(spec.options.get("mi_compute_dtype", "auto")))

    def mi_objective(x: torch.Tensor) -> torch.Tensor:
        logits, features = model.logits_and_features(x)
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        if weight == 0 or x.shape[0] < 2:
            return ce
        mi, dropped = penalty(features.flatten(1).float(), x.flatten(1).float())
        if bool(dropped):
            details["mi_dropped_steps"] = penalty.num_dropped
            return ce
        # Maximising mean(CE) + w·nHSIC is, up to the factor B that sign(∇) ignores, maximising
        # Σ_i (CE_i + w·nHSIC): every sample carries the whole (batch-level) MI term.
        return ce + weight * mi

    return mi_objective
