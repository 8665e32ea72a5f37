"""gpytorch-so3: rotated-anisotropy (Lie-algebraic SO(3)) kernels for GPyTorch and BoTorch."""

from importlib.metadata import PackageNotFoundError, version

from gpytorch_so3 import botorch_utils, datasets, functional, geo, plot, priors, so3
from gpytorch_so3.botorch_utils import IsotropicNormalize, check_input_scaling, to_physical_units
from gpytorch_so3.fit import fit_map
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP, SO3PyroModel
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.nuts import fit_nuts
from gpytorch_so3.summary import PosteriorSummary, summarize_posterior

try:
    __version__ = version("gpytorch-so3")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "FullSPDKernel",
    "IsotropicNormalize",
    "PosteriorSummary",
    "SO3AnisotropicKernel",
    "SO3FullyBayesianGP",
    "SO3PyroModel",
    "__version__",
    "botorch_utils",
    "check_input_scaling",
    "datasets",
    "fit_map",
    "fit_nuts",
    "functional",
    "geo",
    "plot",
    "priors",
    "so3",
    "summarize_posterior",
    "to_physical_units",
]
