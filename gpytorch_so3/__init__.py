"""gpytorch-so3: rotated-anisotropy (Lie-algebraic SO(3)) kernels for GPyTorch and BoTorch."""

from importlib.metadata import PackageNotFoundError, version

from gpytorch_so3 import datasets, functional, priors, so3
from gpytorch_so3.fit import fit_map
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel

try:
    __version__ = version("gpytorch-so3")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "FullSPDKernel",
    "SO3AnisotropicKernel",
    "__version__",
    "datasets",
    "fit_map",
    "functional",
    "priors",
    "so3",
]
