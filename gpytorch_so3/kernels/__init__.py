"""Kernels: the SO(3) anisotropic kernel and the full-SPD baseline."""

from gpytorch_so3.kernels.base import Anisotropic3DKernel
from gpytorch_so3.kernels.full_spd_kernel import FullSPDKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = ["Anisotropic3DKernel", "FullSPDKernel", "SO3AnisotropicKernel"]
