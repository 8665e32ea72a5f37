r"""KeOps path of :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` in any dimension.

The same design as :class:`~gpytorch_so3.kernels.keops.KeOpsSO3AnisotropicKernel` (and gpytorch's own
``gpytorch.kernels.keops`` kernels): centre and whiten once, ``z = (x - mean) R diag(1/l)``, then hand the whitened
points to linear_operator's ``KernelLinearOperator`` with the parameter-free covariance function of
:mod:`gpytorch_so3.kernels.keops`, which is already dimension-generic (it sums squared differences over the last
axis). Gradients reach the rotation and the length-scales through ``z``. Nothing here imports pykeops: the guarded
import, the size rule and the fallback live in :mod:`gpytorch_so3.kernels.keops`.
"""

from __future__ import annotations

import warnings

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior
from linear_operator.operators import KernelLinearOperator
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3.exceptions import KeOpsFallbackWarning
from gpytorch_so3.kernels import keops as _keops
from gpytorch_so3.kernels.base import validate_inputs
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel

__all__ = ["KeOpsRotatedAnisotropicKernel"]

_FALLBACK_WARNED = False


def _warn_fallback() -> None:
    global _FALLBACK_WARNED
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn(
            "pykeops is not installed (or failed to import): KeOpsRotatedAnisotropicKernel uses the dense "
            "RotatedAnisotropicKernel path, which builds N x M kernel matrices. Install the extra "
            "`pip install gpytorch-so3[keops]` for large inputs. This warning is shown once per process.",
            KeOpsFallbackWarning,
            stacklevel=3,
        )


class KeOpsRotatedAnisotropicKernel(RotatedAnisotropicKernel):
    r"""The rotated anisotropic kernel in ``dim`` dimensions with KeOps matrix-vector products for large inputs.

    Same parameters, values and gradients as :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel`;
    for large inputs it returns a ``KernelLinearOperator`` whose products with vectors KeOps computes in
    ``O(N M)`` time and ``O(N + M)`` memory. ``use_keops`` (``None``: automatic size rule, ``True``: always,
    ``False``: never) works as in :class:`~gpytorch_so3.kernels.keops.KeOpsSO3AnisotropicKernel`; ``diag=True``
    is always dense. Without pykeops one :class:`~gpytorch_so3.exceptions.KeOpsFallbackWarning` per process and the
    dense path.

    Example:
        >>> k = KeOpsRotatedAnisotropicKernel(4, nu=2.5, use_keops=False)
        >>> k(torch.rand(6, 4)).to_dense().shape
        torch.Size([6, 6])
    """

    def __init__(
        self,
        dim: int,
        nu: float | None = None,
        *,
        use_keops: bool | None = None,
        lengthscale_prior: Prior | None = None,
        lengthscale_constraint: Interval | None = None,
        rotation_prior: Prior | None = None,
        batch_shape: torch.Size | None = None,
        active_dims: tuple[int, ...] | None = None,
        eps: float = 1e-6,
    ) -> None:
        """Build the kernel.

        Args:
            dim: number of input dimensions ``d >= 2``.
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5 (Matern smoothness).
            use_keops: ``None`` (automatic, gpytorch's size rule), ``True`` (always) or ``False`` (never).
            lengthscale_prior: prior on the ``batch_shape x 1 x dim`` principal length-scales.
            lengthscale_constraint: constraint of the length-scales (default: ``Positive()``).
            rotation_prior: prior on the ``batch_shape x dim (dim - 1) / 2`` so(d) coordinates.
            batch_shape: batch shape of the hyperparameters (default: none).
            active_dims: ``dim`` input columns the kernel acts on.
            eps: gpytorch's lower bound on the length-scale (passed to ``Kernel``).

        Raises:
            TypeError: ``use_keops`` is not ``None`` or a bool.
        """
        if use_keops is not None and not isinstance(use_keops, bool):
            raise TypeError(f"use_keops must be None (automatic), True or False; got {use_keops!r}")
        super().__init__(
            dim,
            nu,
            lengthscale_prior=lengthscale_prior,
            lengthscale_constraint=lengthscale_constraint,
            rotation_prior=rotation_prior,
            batch_shape=batch_shape,
            active_dims=active_dims,
            eps=eps,
        )
        self.use_keops = use_keops
        if not _keops.keops_available() and use_keops is not False:
            _warn_fallback()

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params):
        r"""Covariance (correlation) of ``dim``-D inputs, symbolic for large inputs.

        Args:
            x1: ``batch_shape x n x dim`` inputs.
            x2: ``batch_shape x m x dim`` inputs.
            diag: return only the diagonal (dense).
            last_dim_is_batch: not supported (raises ``ValueError``).
            **params: passed to the dense path.

        Returns:
            ``batch_shape x n x m``: a ``KernelLinearOperator`` backed by KeOps for large inputs, a dense tensor
            otherwise; ``batch_shape x n`` with ``diag=True``.
        """
        if last_dim_is_batch:
            raise ValueError(f"{type(self).__name__} does not support last_dim_is_batch=True")
        if diag or not _keops._use_keops(x1.shape[-2], x2.shape[-2], self.use_keops):
            return super().forward(x1, x2, diag=diag, **params)
        validate_inputs(type(self).__name__, x1, x2, None, self._param_dtype(), dim=self.dim)
        mean = x1.mean(dim=-2, keepdim=True)
        A = self.whitening_matrix
        z1 = F.whiten(x1 - mean, A).contiguous()  # contiguous: KeOps needs it (gpytorch issue #1543)
        z2 = z1 if x2 is x1 else F.whiten(x2 - mean, A).contiguous()
        return KernelLinearOperator(z1, z2, covar_func=_keops._covar_func, nu=self.nu, use_keops=self.use_keops)

    def extra_repr(self) -> str:
        """Dimension, base, batch shape and the ``use_keops`` mode."""
        return f"{super().extra_repr()}, use_keops={self.use_keops}"
