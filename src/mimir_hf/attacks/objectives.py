"""Per-sample objectives for attacking classifiers, each a closure the PGD core maximises.

They take a `logits_fn` (pixels in [0, 1] → logits) rather than a transformers model so that
the same objective serves a `ViTForImageClassification`, a wrapped normalising model, or the
toy linear models the property tests use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .pgd import Objective

__all__ = ["LogitsFn", "cross_entropy_objective", "cw_margin_objective", "kl_objective", "margin"]

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Carlini–Wagner margin: the best wrong logit minus the true logit (> 0 means misclassified)."""
    logits = logits.float()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return others.amax(dim=1) - true


def cross_entropy_objective(logits_fn: LogitsFn, labels: torch.Tensor) -> Objective:
    """The PGD-AT / PGD-k objective: per-sample cross-entropy of the true label.

    `labels` are integer classes (B,) or class probabilities (B, K): the soft targets of a Mixup /
    CutMix batch, for which the attack maximises −Σ_k t_k log p_k (Singh et al.'s APGD-AT does).
    """

    def objective(x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_fn(x).float(), labels, reduction="none")

    return objective


def cw_margin_objective(logits_fn: LogitsFn, labels: torch.Tensor) -> Objective:
    """CW-L∞: PGD on the margin loss, which does not saturate the way softmax cross-entropy does."""

    def objective(x: torch.Tensor) -> torch.Tensor:
        return margin(logits_fn(x), labels)

    return objective


def kl_objective(logits_fn: LogitsFn, clean_logits: torch.Tensor) -> Objective:
    """TRADES' inner maximisation: KL(p(x) ‖ p(x′)), with p(x) fixed."""
    clean_probs = F.softmax(clean_logits.detach().float(), dim=1)

    def objective(x: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits_fn(x).float(), dim=1)
        return F.kl_div(log_probs, clean_probs, reduction="none").sum(dim=1)

    return objective
