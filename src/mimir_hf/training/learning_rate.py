"""The learning-rate scaling rule both stages share: lr = base lr × effective batch / 256.

MAE, MIMIR and their finetuning scripts state a *base* learning rate and scale it with the batch,
unless an absolute one is given (`if args.lr is None: args.lr = args.blr * eff_batch_size / 256`).
`learning_rate` therefore defaults to `None` here, so an explicit value can be told apart from
the stock default and always wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

__all__ = ["DEFAULT_LEARNING_RATE", "ScaledLearningRateArguments", "scaled_learning_rate"]

DEFAULT_LEARNING_RATE = 5e-5
"""transformers' own default, used when neither `learning_rate` nor `base_learning_rate` is set."""


def scaled_learning_rate(base_learning_rate: float, effective_batch_size: int) -> float:
    """`base_learning_rate × effective_batch_size / 256` (Goyal et al.'s linear rule, as MAE uses it)."""
    if base_learning_rate <= 0:
        raise ValueError(f"base_learning_rate must be > 0, got {base_learning_rate}.")
    if effective_batch_size <= 0:
        raise ValueError(f"The effective batch size must be > 0, got {effective_batch_size}.")
    return base_learning_rate * effective_batch_size / 256


@dataclass
class ScaledLearningRateArguments(TrainingArguments):
    """`TrainingArguments` whose learning rate may be given as a base rate per 256 images.

    The effective batch is `per-device batch × devices × gradient_accumulation_steps`, i.e. what
    one optimizer step sees, so a config keeps its meaning on any number of GPUs.
    """

    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Absolute peak learning rate. Wins over base_learning_rate when given. Unset: "
            f"base_learning_rate × effective batch / 256, or {DEFAULT_LEARNING_RATE} if that is unset too."
        },
    )
    base_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate per 256 images: learning_rate = base_learning_rate × effective batch / 256, where "
            "effective batch = per-device batch × devices × gradient_accumulation_steps. Ignored when "
            "learning_rate is given."
        },
    )

    def __post_init__(self) -> None:
        self._explicit_learning_rate = self.learning_rate
        if self.learning_rate is not None and self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}.")
        if self.base_learning_rate is not None and self.base_learning_rate <= 0:
            raise ValueError(f"base_learning_rate must be > 0, got {self.base_learning_rate}.")
        super().__post_init__()
        if self.learning_rate is not None:
            self._learning_rate_rule = f"learning_rate = {self.learning_rate:.3g}, given explicitly" + (
                f" (base_learning_rate {self.base_learning_rate:.3g} not applied)" if self.base_learning_rate is not None else ""
            )
        elif self.base_learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATE
            self._learning_rate_rule = f"learning_rate = {DEFAULT_LEARNING_RATE:.3g} (transformers' default)"
        else:
            self.learning_rate = scaled_learning_rate(self.base_learning_rate, self.effective_batch_size)
            self._learning_rate_rule = (
                f"learning_rate = base {self.base_learning_rate:.3g} × effective batch {self.effective_batch_size} "
                f"/ 256 = {self.learning_rate:.3g}"
            )

    @property
    def explicit_learning_rate(self) -> float | None:
        """The `learning_rate` given, or None when it was derived: what `recipe_config.yaml` records, so that a
        replay at another batch size derives it again instead of keeping this run's value."""
        return getattr(self, "_explicit_learning_rate", self.learning_rate)

    def learning_rate_rule(self) -> str:
        """How `learning_rate` was set; the trainers log it when training starts (not at parse time,
        so that a recipe that stops on a user error prints that error alone)."""
        return getattr(self, "_learning_rate_rule", f"learning_rate = {self.learning_rate}")

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step over all processes."""
        return self.train_batch_size * self.gradient_accumulation_steps * self.world_size
