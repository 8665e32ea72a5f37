r"""KeOps path of the SO(3) kernel: whiten once, then a symbolic (never materialised) kernel matrix.

The design follows gpytorch's own ``gpytorch.kernels.keops`` kernels (``keops_kernel.py``, ``rbf_kernel.py``,
``matern_kernel.py``): :meth:`KeOpsSO3AnisotropicKernel.forward` centres and whitens the inputs once,
``z = (x - mean) R diag(1/l)`` (the same :func:`gpytorch_so3.functional.whiten` call as the dense path),
and hands the whitened points to linear_operator's ``KernelLinearOperator`` with the module-level
:func:`_covar_func`. That function builds a KeOps ``LazyTensor`` formula of the *isotropic* unit-length-scale
correlation of ``z``; it closes over no parameter, so gradients reach the rotation and the length-scales
through ``z`` (a covariance function that closes over parameters does not backpropagate: linear_operator
PR #62). Matrix-vector products then cost ``O(N M)`` time and ``O(N + M)`` memory: an ``N x M`` matrix is
never allocated.

This is the only module of the package that imports ``pykeops``, and only when the KeOps path is about to run
(the first block large enough for it, or ``use_keops=True``): importing this module, building the kernel or using
it on small inputs never imports pykeops. Without pykeops the kernel emits one
:class:`~gpytorch_so3.exceptions.KeOpsFallbackWarning` (per process), the first time it would have used KeOps, and
computes exactly what :class:`~gpytorch_so3.SO3AnisotropicKernel` computes. (gpytorch itself imports pykeops in
``gpytorch.kernels.keops`` when it is installed, which prints pykeops' "[KeOps] Warning : CUDA libraries not
found" on CPU-only machines; set the environment variable ``KEOPS_VERBOSE=0`` to silence pykeops.)
"""

from __future__ import annotations

import math
import warnings

from gpytorch import settings
from linear_operator.operators import KernelLinearOperator
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3.exceptions import KeOpsFallbackWarning
from gpytorch_so3.kernels.base import validate_inputs
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

# pykeops is imported on first use of the KeOps path (see `_keops_lazy_tensor`), never at module import: importing
# it compiles nothing but prints messages ("[KeOps] Warning : CUDA libraries not found ...") and takes ~0.1 s.
# `LazyTensor` is None until then; tests may set it (with `_HAS_KEOPS = True`) to a mock.
LazyTensor = None
#: None: not tried yet; True/False: whether ``from pykeops.torch import LazyTensor`` succeeded.
_HAS_KEOPS: bool | None = None

__all__ = [
    "KeOpsMixin",
    "KeOpsRotatedAnisotropicKernel",
    "KeOpsSO3AnisotropicKernel",
    "check_use_keops",
    "keops_available",
]

# KeOps has no clamp with a usable derivative (gpytorch's KeOps Matern notes that clamp gives NaNs), so the
# Matern branches take sqrt(r^2 + eps): finite values and a zero derivative at r = 0 (d r^2 / dz = 0 there).
# The shift of r is at most sqrt(eps) = 1e-10, far below float32 resolution of the correlation. Same value as
# gpytorch.kernels.keops.MaternKernel.
_KEOPS_SQRT_EPS = 1e-20

# Set once the fallback warning has been emitted, so that a process sees it once.
_FALLBACK_WARNED = False


def _keops_lazy_tensor():
    """Pykeops' ``LazyTensor`` class, imported on the first call; None (and one warning) if it cannot be imported."""
    global LazyTensor, _HAS_KEOPS
    if _HAS_KEOPS is None:
        try:
            from pykeops.torch import LazyTensor as _LazyTensor
        except ImportError:  # pragma: no cover - depends on the environment
            _HAS_KEOPS = False
        else:
            LazyTensor, _HAS_KEOPS = _LazyTensor, True
    return LazyTensor if _HAS_KEOPS else None


def keops_available() -> bool:
    """Whether ``pykeops`` can be imported (the KeOps path can run); imports it on the first call.

    Returns:
        ``True`` if ``pykeops.torch.LazyTensor`` is importable.

    Example:
        >>> isinstance(keops_available(), bool)
        True
    """
    return _keops_lazy_tensor() is not None


def _use_keops(n1: int, n2: int, use_keops: bool | None) -> bool:
    """Decide whether an ``n1 x n2`` block is computed symbolically by KeOps.

    ``use_keops=None`` (automatic) extends gpytorch's rule: KeOps when ``gpytorch.settings.use_keops`` is on and
    either both sides have at least ``t = gpytorch.settings.max_cholesky_size`` rows (gpytorch's rule) or the
    block has at least ``t^2`` entries. The second clause is ours: it keeps a tall block such as the cross-covariance
    of a prediction chunk with ``10^5`` training points (``4096 x 10^5``, 1.6 GB in float32) symbolic, so dense
    blocks never hold more than ``t^2`` entries. ``True`` forces KeOps. In both modes a block with a single row on
    either side is dense: linear_operator evaluates diagonals and single entries as batches of ``1 x 1`` blocks
    and preconditioners row by row, for which a KeOps reduction only adds overhead (this matters under
    ``max_cholesky_size(0)``, where gpytorch's own rule sends every block to KeOps). ``False`` never uses KeOps.
    pykeops is imported only when this returns True for the first time; if it cannot be imported, one
    :class:`~gpytorch_so3.exceptions.KeOpsFallbackWarning` is emitted per process and the block is dense.
    """
    if use_keops is False or n1 < 2 or n2 < 2:
        return False
    if use_keops is not True:
        t = settings.max_cholesky_size.value()
        if not (settings.use_keops.on() and ((n1 >= t and n2 >= t) or n1 * n2 >= t * t)):
            return False
    # KeOps would be used: only now import pykeops; without it, say so once and take the dense path.
    if _keops_lazy_tensor() is None:
        _warn_fallback()
        return False
    return True


def _correlation_formula(sq_dist, nu: float | None):
    """Base correlation of squared distances, written with operations that KeOps lazy tensors support.

    The same forms as :func:`gpytorch_so3.functional.base_correlation` (gpytorch's RBF and Matern at unit
    length-scale); only the square root is guarded by ``+ eps`` instead of a clamp.
    """
    if nu is None:
        # Written as gpytorch.kernels.keops.RBFKernel writes it (-r^2 / 2 with an integer divisor, a KeOps rational
        # constant), so both compile to the same KeOps formula.
        return (-sq_dist / 2).exp()
    r = (sq_dist + _KEOPS_SQRT_EPS).sqrt()
    exp_component = (-math.sqrt(2.0 * nu) * r).exp()
    if nu == 0.5:
        return exp_component
    if nu == 1.5:
        return (math.sqrt(3.0) * r + 1.0) * exp_component
    if nu == 2.5:
        return (math.sqrt(5.0) * r + (5.0 / 3.0) * sq_dist + 1.0) * exp_component
    raise ValueError(f"nu must be None, 0.5, 1.5 or 2.5; got {nu!r}")


def _covar_func(z1: Tensor, z2: Tensor, nu: float | None = None, use_keops: bool | None = None, **params):
    """Correlation matrix of *whitened* inputs, symbolic (KeOps) for large blocks and dense for small ones.

    Module level and parameter free on purpose: ``KernelLinearOperator`` differentiates through ``z1``/``z2``.

    Args:
        z1: ``batch_shape x n x 3`` whitened inputs.
        z2: ``batch_shape x m x 3`` whitened inputs.
        nu: ``None`` (RBF) or 0.5, 1.5, 2.5.
        use_keops: ``None`` (automatic), ``True`` (force) or ``False`` (never); see :func:`_use_keops`.
        **params: ignored (``KernelLinearOperator`` passes its keyword arguments through).

    Returns:
        ``batch_shape x n x m``: a KeOps ``LazyTensor`` or a dense tensor.
    """
    if _use_keops(z1.shape[-2], z2.shape[-2], use_keops):
        sq_dist = ((LazyTensor(z1[..., :, None, :]) - LazyTensor(z2[..., None, :, :])) ** 2).sum(-1)
        return _correlation_formula(sq_dist, nu)
    # Small blocks (rows of a preconditioner, diagonals, single entries): explicit differences are exact and
    # O(n m) memory, which is small here; the values are those of the dense kernel.
    sq_dist = ((z1.unsqueeze(-2) - z2.unsqueeze(-3)) ** 2).sum(-1)
    return F.base_correlation(sq_dist, nu)


def _warn_fallback() -> None:
    global _FALLBACK_WARNED
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn(
            "The KeOps kernels fall back to the dense path: pykeops is not installed (or failed to "
            "import), so kernel matrices are built as dense N x M tensors (memory O(N M)). Install the extra "
            "`pip install 'gpytorch-so3[keops]'` for large inputs, or pass use_keops=False to choose the dense "
            "path explicitly. This warning is shown once per process.",
            KeOpsFallbackWarning,
            stacklevel=4,
        )


def check_use_keops(use_keops: object) -> bool | None:
    """Validate the ``use_keops`` option of the KeOps kernels: ``None`` (automatic), ``True`` or ``False``.

    Example:
        >>> check_use_keops(None), check_use_keops(False)
        (None, False)
    """
    if use_keops is not None and not isinstance(use_keops, bool):
        raise TypeError(f"use_keops must be None (automatic), True or False; got {use_keops!r}")
    return use_keops


class KeOpsMixin:
    r"""The KeOps path of a whitened-distance kernel (any ``dim``): symbolic ``KernelLinearOperator`` for large inputs.

    Mixed in before an :class:`~gpytorch_so3.kernels.base.AnisotropicKernel` subclass (which provides
    ``whitening_matrix``, ``nu``, ``dim`` and the dense ``forward``); the subclass sets ``self.use_keops`` with
    :func:`check_use_keops`. Centre and whiten once, exactly as the dense path does, then hand the whitened points to
    the parameter-free :func:`_covar_func` (dimension-generic), so gradients reach the parameters through ``z``.
    """

    use_keops: bool | None = None

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params):
        r"""Covariance (correlation) of ``dim``-D inputs, symbolic for large inputs.

        Args:
            x1: ``batch_shape x n x dim`` inputs.
            x2: ``batch_shape x m x dim`` inputs.
            diag: return only the diagonal (dense, ``batch_shape x n``; requires ``n == m``).
            last_dim_is_batch: not supported (raises ``ValueError``).
            **params: passed to the dense path.

        Returns:
            ``batch_shape x n x m``: a ``KernelLinearOperator`` backed by KeOps for large inputs, a dense tensor
            otherwise; ``batch_shape x n`` with ``diag=True``.
        """
        if last_dim_is_batch:
            raise ValueError(f"{type(self).__name__} does not support last_dim_is_batch=True")
        if diag or not _use_keops(x1.shape[-2], x2.shape[-2], self.use_keops):
            return super().forward(x1, x2, diag=diag, **params)
        # Same checks as the dense path (ScaleKernel calls forward directly, bypassing __call__): a NaN row would
        # otherwise only surface as a NaN deep inside CG.
        validate_inputs(type(self).__name__, x1, x2, None, self._param_dtype(), dim=self.dim)
        mean = x1.mean(dim=-2, keepdim=True)
        A = self.whitening_matrix
        # contiguous(): KeOps needs contiguous inputs (gpytorch issue #1543: zero gradients otherwise).
        z1 = F.whiten(x1 - mean, A).contiguous()
        z2 = z1 if x2 is x1 else F.whiten(x2 - mean, A).contiguous()
        return KernelLinearOperator(z1, z2, covar_func=_covar_func, nu=self.nu, use_keops=self.use_keops)

    def extra_repr(self) -> str:
        """The base kernel's description and the ``use_keops`` mode."""
        return f"{super().extra_repr()}, use_keops={self.use_keops}"


class KeOpsSO3AnisotropicKernel(KeOpsMixin, SO3AnisotropicKernel):
    r"""The SO(3) anisotropic kernel with KeOps matrix-vector products for large inputs.

    Same parameters, values and gradients as :class:`~gpytorch_so3.SO3AnisotropicKernel`
    (``k(x, x') = \kappa_\nu(|(x - x') R\, \mathrm{diag}(l)^{-1}|)``), but for large inputs it returns a
    ``KernelLinearOperator`` whose products with vectors are computed by KeOps in ``O(N M)`` time and
    ``O(N + M)`` memory, as gpytorch's ``gpytorch.kernels.keops`` kernels do. Use it with gpytorch's
    iterative solvers (CG/Lanczos: ``gpytorch.settings.max_cholesky_size``) to train exact GPs on
    ``10^5``-point data sets; see :mod:`gpytorch_so3.large` for the training recipe and chunked prediction.

    When KeOps is used (``use_keops``):

    * ``None`` (default): automatically, when ``gpytorch.settings.use_keops`` is on and both inputs have at
      least ``t = gpytorch.settings.max_cholesky_size`` rows (gpytorch's rule; ``t`` is 800 in gpytorch, but
      ``import botorch`` raises it to 4096 process-wide) or the block has at least
      ``t^2`` entries (so that tall test-vs-train blocks stay symbolic too); smaller blocks take the dense path;
    * ``True``: for every block with more than one row on each side (e.g. to test the KeOps path on small data);
    * ``False``: never (the dense path; useful for timing comparisons).

    ``diag=True`` always uses the dense ``O(N)`` diagonal. Without ``pykeops`` one
    :class:`~gpytorch_so3.exceptions.KeOpsFallbackWarning` is emitted per process, the first time a block would
    have used KeOps (never with ``use_keops=False``), and the dense path is used. Tensors follow the inputs'
    device and dtype (KeOps runs on CPU and CUDA).

    Example:
        >>> import torch, gpytorch
        >>> k = gpytorch.kernels.ScaleKernel(KeOpsSO3AnisotropicKernel(nu=2.5))
        >>> x = torch.rand(5000, 3)
        >>> K = k(x)  # lazy; KeOps inside: 5000 >= max_cholesky_size (800; 4096 after `import botorch`)
        >>> K.shape
        torch.Size([5000, 5000])
    """

    def __init__(self, nu: float | None = None, *, use_keops: bool | None = None, **kwargs) -> None:
        """Build the kernel.

        Args:
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5 (Matern smoothness).
            use_keops: ``None`` (automatic, gpytorch's size rule), ``True`` (always) or ``False`` (never).
            **kwargs: the keyword arguments of :class:`~gpytorch_so3.SO3AnisotropicKernel` (``lengthscale_prior``,
                ``lengthscale_constraint``, ``rotation_prior``, ``batch_shape``, ``active_dims``, ``eps``); an
                unknown name is a ``TypeError``.

        Raises:
            TypeError: ``use_keops`` is not ``None`` or a bool, or an unknown keyword.
        """
        use_keops = check_use_keops(use_keops)
        super().__init__(nu, **kwargs)
        self.use_keops = use_keops


class KeOpsRotatedAnisotropicKernel(KeOpsMixin, RotatedAnisotropicKernel):
    r"""The rotated anisotropic kernel in ``dim`` dimensions with KeOps matrix-vector products for large inputs.

    Same parameters, values and gradients as :class:`~gpytorch_so3.RotatedAnisotropicKernel`; ``use_keops`` and the
    fallback (one :class:`~gpytorch_so3.exceptions.KeOpsFallbackWarning` per process, the first time a block would
    have used KeOps, then the dense path) work as in :class:`KeOpsSO3AnisotropicKernel`; ``diag=True`` is dense.

    Example:
        >>> import torch
        >>> k = KeOpsRotatedAnisotropicKernel(4, nu=2.5, use_keops=False)
        >>> k(torch.rand(6, 4)).to_dense().shape
        torch.Size([6, 6])
    """

    def __init__(self, dim: int, nu: float | None = None, *, use_keops: bool | None = None, **kwargs) -> None:
        """Build the kernel.

        Args:
            dim: number of input dimensions ``d >= 2``.
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5 (Matern smoothness).
            use_keops: ``None`` (automatic, gpytorch's size rule), ``True`` (always) or ``False`` (never).
            **kwargs: the keyword arguments of :class:`~gpytorch_so3.RotatedAnisotropicKernel`.

        Raises:
            TypeError: ``use_keops`` is not ``None`` or a bool, or an unknown keyword.
        """
        use_keops = check_use_keops(use_keops)
        super().__init__(dim, nu, **kwargs)
        self.use_keops = use_keops
