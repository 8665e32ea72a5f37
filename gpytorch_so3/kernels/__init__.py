"""Kernels: the SO(3) and SO(d) rotated anisotropic kernels and the full-SPD baseline."""

from gpytorch_so3.kernels.base import Anisotropic3DKernel, AnisotropicKernel
from gpytorch_so3.kernels.full_spd_kernel import FullSPDKernel
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = [
    "Anisotropic3DKernel",
    "AnisotropicKernel",
    "FullSPDKernel",
    "RotatedAnisotropicKernel",
    "SO3AnisotropicKernel",
]
