"""Mutual-information estimators for MIMIR's information-bottleneck penalty.

MIMIR penalises λ · nHSIC(Z, X′) between the encoder's latent and the adversarial input so that
the representation keeps as little of the perturbation as possible. This package holds that
estimator (`hsic_normalized_cca`), two alternatives (`hsic_biased`, `renyi_mutual_information`)
and the wrapper a training step calls (`MutualInformationPenalty`), which never lets a numerical
failure turn into a NaN loss or a silent skip.
"""

from .hsic import hsic_biased, hsic_normalized_cca, normalized_kernel_operator
from .kernels import centered_gaussian_kernel, gaussian_kernel, pairwise_squared_distances
from .penalty import ESTIMATORS, Estimator, MIPenaltyResult, MutualInformationPenalty, estimator_hyperparameters
from .renyi import matrix_renyi_entropy, renyi_mutual_information, trace_normalized_gram

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "MIPenaltyResult",
    "MutualInformationPenalty",
    "centered_gaussian_kernel",
    "estimator_hyperparameters",
    "gaussian_kernel",
    "hsic_biased",
    "hsic_normalized_cca",
    "matrix_renyi_entropy",
    "normalized_kernel_operator",
    "pairwise_squared_distances",
    "renyi_mutual_information",
    "trace_normalized_gram",
]
