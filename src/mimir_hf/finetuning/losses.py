"""The outer-minimisation losses of adversarial training, on logits.

Each takes logits already computed by the trainer (clean and/or adversarial, in train mode) and
returns a scalar mean over the batch, so that gradient accumulation only has to divide by the
number of micro-batches. Probabilities are computed in float32 even under autocast.

- PGD-AT (Madry et al., 2018): cross-entropy on the adversarial batch.
- TRADES (Zhang et al., 2019): clean cross-entropy + β · KL(p(x) ‖ p(x′)), the KL averaged over
  the batch (`batchmean`), with x′ found by maximising that same KL.
- Soft-target cross-entropy: −Σ_k t_k log p_k(x), for the class probabilities t that Mixup /
  CutMix produce (label smoothing already folded into t). For a one-hot t it is the usual
  cross-entropy, for the smoothed one-hot it is the label-smoothed one.
- MART (Wang et al., 2020): a boosted cross-entropy on x′ (the usual term plus −log(1 − p_k(x′))
  for the strongest wrong class k) + β · KL(p(x) ‖ p(x′)) weighted per sample by 1 − p_y(x), which
  puts the consistency term's weight on the examples the model gets wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mart_loss", "plain_loss", "pgd_at_loss", "soft_target_cross_entropy", "trades_loss"]

_TINY = 1e-12


def plain_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on clean inputs (the `"none"` control)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def pgd_at_loss(adversarial_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """PGD-AT: cross-entropy (optionally label-smoothed) of the adversarial batch."""
    return F.cross_entropy(adversarial_logits.float(), labels, label_smoothing=label_smoothing)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch mean of −Σ_k t_k log softmax(z)_k (torch's cross-entropy with class-probability targets)."""
    if targets.shape != logits.shape or not targets.is_floating_point():
        raise ValueError(
            f"Soft targets must be class probabilities shaped like the logits {tuple(logits.shape)}; got "
            f"{tuple(targets.shape)} {targets.dtype}. Integer labels go to pgd_at_loss / plain_loss."
        )
    return F.cross_entropy(logits.float(), targets.float())


def _kl_per_sample(clean_logits: torch.Tensor, adversarial_logits: torch.Tensor) -> torch.Tensor:
    """KL(p(x) ‖ p(x′)) per sample, gradients flowing through both arguments."""
    clean_probs = F.softmax(clean_logits.float(), dim=1)
    adversarial_log_probs = F.log_softmax(adversarial_logits.float(), dim=1)
    return F.kl_div(adversarial_log_probs, clean_probs, reduction="none").sum(dim=1)


def trades_loss(
    clean_logits: torch.Tensor,
    adversarial_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """TRADES: CE(f(x), y) + β · mean_i KL(p(x_i) ‖ p(x′_i))."""
    natural = F.cross_entropy(clean_logits.float(), labels, label_smoothing=label_smoothing)
    return natural + beta * _kl_per_sample(clean_logits, adversarial_logits).mean()


def mart_loss(
    clean_logits: torch.Tensor,
    adversarial_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """MART: BCE(p(x′), y) + β · mean_i KL(p(x_i) ‖ p(x′_i)) · (1 − p_y(x_i))."""
    adversarial_logits = adversarial_logits.float()
    adversarial_probs = F.softmax(adversarial_logits, dim=1)
    # the strongest wrong class of each adversarial example
    wrong = adversarial_probs.masked_fill(F.one_hot(labels, adversarial_probs.shape[1]).bool(), float("-inf"))
    strongest_wrong = wrong.argmax(dim=1)
    boosted = F.cross_entropy(adversarial_logits, labels, label_smoothing=label_smoothing) + F.nll_loss(
        torch.log(1.0 - adversarial_probs + _TINY), strongest_wrong
    )
    clean_probs = F.softmax(clean_logits.float(), dim=1)
    true_probs = clean_probs.gather(1, labels[:, None]).squeeze(1)
    consistency = (_kl_per_sample(clean_logits, adversarial_logits) * (1.0 - true_probs)).mean()
    return boosted + beta * consistency
