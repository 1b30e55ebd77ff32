"""L∞ attacks in pixel space: one PGD core, and APGD (its self-tuning-step variant) on the same pieces."""

from .apgd import APGD_MOMENTUM, APGDTrace, apgd, apgd_checkpoint_iterations
from .objectives import LogitsFn, cross_entropy_objective, cw_margin_objective, kl_objective, margin
from .pgd import NORMS, GAUSSIAN_START_STD, Objective, frozen_parameters, pgd, preserve_mode, project_l2, project_linf

__all__ = [
    "APGD_MOMENTUM",
    "APGDTrace",
    "NORMS",
    "GAUSSIAN_START_STD",
    "LogitsFn",
    "Objective",
    "apgd",
    "apgd_checkpoint_iterations",
    "cross_entropy_objective",
    "cw_margin_objective",
    "frozen_parameters",
    "kl_objective",
    "margin",
    "pgd",
    "preserve_mode",
    "project_l2",
    "project_linf",
]
