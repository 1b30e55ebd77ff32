"""L∞ attacks in pixel space, all built on one PGD core."""

from .objectives import LogitsFn, cross_entropy_objective, cw_margin_objective, kl_objective, margin
from .pgd import NORMS, GAUSSIAN_START_STD, Objective, frozen_parameters, pgd, preserve_mode, project_l2, project_linf

__all__ = [
    "NORMS",
    "GAUSSIAN_START_STD",
    "LogitsFn",
    "Objective",
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
