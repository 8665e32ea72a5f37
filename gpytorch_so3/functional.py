r"""Parameter-free covariance maths shared by every code path (dense kernel, KeOps, Pyro model).

A stationary anisotropic kernel with metric ``M = A A^T`` is an isotropic kernel of *whitened* inputs
``z = x A``: ``(x - x')^T M (x - x') = |z - z'|^2``. For the SO(3) kernel ``A = R diag(1/l)`` (columns of
``R`` scaled by the inverse length-scales); for the full-SPD baseline ``A = L``. Whitening costs one
``3 x 3`` matmul per point, after which gpytorch's own distance code (or KeOps) does the pairwise work.

No function here holds parameters or closes over them: linear_operator's ``KernelLinearOperator`` and KeOps
need covariance functions of tensors only (linear_operator PR #62).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gpytorch_so3.exceptions import deprecated_alias
from gpytorch_so3.so3 import canonicalize
from gpytorch_so3.sod import canonicalize as _canonicalize_sod

__all__ = [
    "SQRT_CLAMP",
    "SUPPORTED_NU",
    "base_correlation",
    "check_nu",
    "covariance",
    "metric",
    "metric_to_canonical",
    "metric_to_principal",
    "so3_whitening_matrix",
    "whiten",
]

#: Smoothness values of the supported base kernels (``None`` is the squared exponential / RBF).
SUPPORTED_NU = (None, 0.5, 1.5, 2.5)

#: Squared distances are clamped at this value before ``sqrt``, as gpytorch's ``dist`` does, so that
#: ``d sqrt(r2) / d r2`` stays finite on the diagonal (``r2 = 0``) and the Matern branches match gpytorch to the bit.
SQRT_CLAMP = 1e-30
_SQRT_CLAMP = SQRT_CLAMP  # deprecated private alias (other modules still use it; removed at integration)


def check_nu(nu: float | None) -> float | None:
    """Validate a smoothness parameter; returns it as a float (or None).

    Args:
        nu: ``None`` (squared exponential / RBF) or a Matern smoothness 0.5, 1.5, 2.5 (int or float).

    Returns:
        ``None`` or the smoothness as a float.

    Raises:
        ValueError: any other value.

    Example:
        >>> check_nu(None), check_nu(2.5)
        (None, 2.5)
    """
    if nu is None:
        return None
    if isinstance(nu, bool) or not isinstance(nu, int | float) or float(nu) not in (0.5, 1.5, 2.5):
        raise ValueError(f"nu must be None (squared exponential) or one of 0.5, 1.5, 2.5; got {nu!r}")
    return float(nu)


def so3_whitening_matrix(lengthscale: Tensor, R: Tensor) -> Tensor:
    """``A = R diag(1 / lengthscale)``: the whitening matrix of the SO(3) metric.

    Args:
        lengthscale: ``(..., 3)`` principal length-scales.
        R: ``(..., 3, 3)`` rotations; column ``i`` goes with ``lengthscale[..., i]``.

    Returns:
        ``(..., 3, 3)`` matrix ``A`` with ``A A^T = R diag(l^-2) R^T``.

    Example:
        >>> from gpytorch_so3.so3 import exp_map
        >>> R = exp_map(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))  # 90 degrees about z
        >>> so3_whitening_matrix(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), R).round(decimals=4) + 0.0
        tensor([[ 0.0000, -0.5000,  0.0000],
                [ 1.0000,  0.0000,  0.0000],
                [ 0.0000,  0.0000,  0.2500]], dtype=torch.float64)
    """
    return R / lengthscale.unsqueeze(-2)


def whiten(x: Tensor, A: Tensor) -> Tensor:
    """Whitened inputs ``z = x A``.

    Args:
        x: ``(..., n, 3)`` inputs (centre them first for accuracy: the metric is translation invariant).
        A: ``(..., 3, 3)`` whitening matrix (broadcast against the batch dimensions of ``x``).

    Returns:
        ``(..., n, 3)`` whitened inputs, so that ``|z_i - z_j|^2 = (x_i - x_j)^T A A^T (x_i - x_j)``.

    Example:
        >>> A = so3_whitening_matrix(torch.tensor([1.0, 2.0, 4.0]), torch.eye(3))  # axis-aligned
        >>> whiten(torch.tensor([[2.0, 2.0, 2.0], [0.0, 4.0, 8.0]]), A)  # coordinates in length-scale units
        tensor([[2.0000, 1.0000, 0.5000],
                [0.0000, 2.0000, 2.0000]])
    """
    # Broadcast-multiply-and-sum rather than `x @ A`: an (n x 3) @ (3 x 3) product is too small for BLAS, whose
    # threaded dispatch (forward, and x^T @ grad for A's gradient) took ~50 ms per call on a loaded 2-core machine
    # in benchmarks/bench_kernel.py; the elementwise form is ATen-only, O(9 n), and broadcasts like matmul.
    return (x.unsqueeze(-1) * A.unsqueeze(-3)).sum(-2)


def metric(lengthscale: Tensor, R: Tensor) -> Tensor:
    """``M = R diag(lengthscale^-2) R^T``.

    Args:
        lengthscale: ``(..., d)`` principal length-scales (``d = 3`` here; any ``d`` works).
        R: ``(..., d, d)`` rotations.

    Returns:
        ``(..., d, d)`` symmetric positive-definite metric.

    Example:
        >>> from gpytorch_so3.so3 import exp_map
        >>> R = exp_map(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))  # x -> y, y -> -x
        >>> M = metric(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), R)
        >>> M.diagonal()  # the short axis (l = 1) now points along y
        tensor([0.2500, 1.0000, 0.0625], dtype=torch.float64)
    """
    A = so3_whitening_matrix(lengthscale, R)
    return A @ A.transpose(-1, -2)


def metric_to_canonical(M: Tensor) -> tuple[Tensor, Tensor]:
    """Canonical principal length-scales and directions of an SPD metric (inverse of :func:`metric`).

    Args:
        M: ``(..., d, d)`` symmetric positive-definite metrics (``d = 3`` here; any ``d >= 2`` works).

    Returns:
        ``(lengthscale, R)``: ascending length-scales ``(..., d)`` (``eigval^-1/2``) and canonical rotations
        ``(..., d, d)`` (see :func:`gpytorch_so3.so3.canonicalize`, :func:`gpytorch_so3.sod.canonicalize` in
        ``d`` dimensions) with ``M = R diag(l^-2) R^T``.

    Example:
        >>> M = torch.diag(torch.tensor([0.25, 1.0, 0.0625], dtype=torch.float64))
        >>> lengthscale, R = metric_to_canonical(M)
        >>> lengthscale
        tensor([1., 2., 4.], dtype=torch.float64)
        >>> R.abs()  # principal directions as columns (signs canonical): y, x, z
        tensor([[0., 1., 0.],
                [1., 0., 0.],
                [0., 0., 1.]], dtype=torch.float64)
        >>> torch.allclose(metric(lengthscale, R), M)
        True
    """
    evals, evecs = torch.linalg.eigh(0.5 * (M + M.transpose(-1, -2)))
    ls = evals.clamp_min(torch.finfo(M.dtype).tiny).rsqrt()
    return canonicalize(ls, evecs) if M.shape[-1] == 3 else _canonicalize_sod(ls, evecs)


metric_to_principal = deprecated_alias(
    metric_to_canonical, "functional.metric_to_principal", "functional.metric_to_canonical"
)


def base_correlation(sq_dist: Tensor, nu: float | None) -> Tensor:
    r"""Isotropic base correlation at unit length-scale as a function of the squared distance.

    Exactly gpytorch's forms: RBF ``exp(-r^2 / 2)``; Matern ``exp(-sqrt(2 nu) r) p(r)`` with ``p = 1``,
    ``1 + sqrt(3) r`` and ``1 + sqrt(5) r + 5 r^2 / 3`` for ``nu = 0.5, 1.5, 2.5``.

    Args:
        sq_dist: squared distances of whitened inputs (any shape).
        nu: ``None`` (RBF) or 0.5, 1.5, 2.5.

    Returns:
        correlations, same shape as ``sq_dist``.

    Example:
        >>> r2 = torch.tensor([0.0, 1.0, 4.0])
        >>> base_correlation(r2, None)  # exp(-r^2 / 2)
        tensor([1.0000, 0.6065, 0.1353])
        >>> base_correlation(r2, 2.5)  # (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)
        tensor([1.0000, 0.5240, 0.1387])
    """
    if nu is None:
        return torch.exp(-0.5 * sq_dist)
    r = sq_dist.clamp_min(SQRT_CLAMP).sqrt()
    exp_component = torch.exp(-math.sqrt(2.0 * nu) * r)
    if nu == 0.5:
        return exp_component
    if nu == 1.5:
        return (1.0 + math.sqrt(3.0) * r) * exp_component
    if nu == 2.5:
        return (1.0 + math.sqrt(5.0) * r + (5.0 / 3.0) * sq_dist) * exp_component
    raise ValueError(f"nu must be None, 0.5, 1.5 or 2.5; got {nu!r}")


def covariance(x1: Tensor, x2: Tensor, A: Tensor, nu: float | None, diag: bool = False) -> Tensor:
    """Dense correlation matrix of the anisotropic kernel with whitening matrix ``A`` (unit output-scale).

    A reference implementation for small inputs (explicit differences, ``O(n m)`` memory); the kernels use
    gpytorch's distance code on the same whitened inputs.

    Args:
        x1: ``(..., n, 3)`` inputs.
        x2: ``(..., m, 3)`` inputs (``m == n`` if ``diag``).
        A: ``(..., 3, 3)`` whitening matrix.
        nu: ``None`` or 0.5, 1.5, 2.5.
        diag: return only the diagonal ``k(x1_i, x2_i)``.

    Returns:
        ``(..., n, m)`` or, with ``diag``, ``(..., n)``.

    Example:
        >>> A = so3_whitening_matrix(torch.tensor([0.5, 1.0, 2.0]), torch.eye(3))
        >>> x1 = torch.zeros(1, 3); x2 = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 2.0]])
        >>> covariance(x1, x2, A, nu=None)  # r = 1, 0.25, 1 length-scales away
        tensor([[0.6065, 0.9692, 0.6065]])
        >>> covariance(x2, x2, A, nu=2.5, diag=True)
        tensor([1., 1., 1.])
    """
    z1, z2 = whiten(x1, A), whiten(x2, A)
    if diag:
        sq = ((z1 - z2) ** 2).sum(-1)
    else:
        sq = ((z1.unsqueeze(-2) - z2.unsqueeze(-3)) ** 2).sum(-1)
    return base_correlation(sq, nu)


def base_correlation_derivative(sq_dist: Tensor, nu: float | None) -> Tensor:
    r"""Derivative of :func:`base_correlation` with respect to the squared distance, elementwise.

    RBF ``-exp(-r^2 / 2) / 2``; Matern ``-(1/2) e^{-r} / r``, ``-(3/2) e^{-sqrt(3) r}`` and
    ``-(5/6) (1 + sqrt(5) r) e^{-sqrt(5) r}`` for ``nu = 0.5, 1.5, 2.5`` (``r = sqrt(sq_dist)``, clamped below as in
    :func:`base_correlation`). For ``nu = 0.5`` it diverges as ``r -> 0``; callers multiply it by ``d r^2 / d z``,
    which vanishes for coincident points, so mask pairs with ``sq_dist == 0`` (the diagonal) first.

    Args:
        sq_dist: squared distances of whitened inputs (any shape).
        nu: ``None`` (RBF) or 0.5, 1.5, 2.5.

    Returns:
        ``d base_correlation / d sq_dist``, same shape as ``sq_dist``.

    Example:
        >>> r2 = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
        >>> (g,) = torch.autograd.grad(base_correlation(r2, 2.5).sum(), r2)  # autograd reference
        >>> torch.allclose(base_correlation_derivative(r2.detach(), 2.5), g)
        True
        >>> base_correlation_derivative(torch.tensor([0.0]), None)  # -exp(0) / 2
        tensor([-0.5000])
    """
    if nu is None:
        return -0.5 * torch.exp(-0.5 * sq_dist)
    r = sq_dist.clamp_min(_SQRT_CLAMP).sqrt()
    if nu == 0.5:
        return -0.5 * torch.exp(-r) / r
    if nu == 1.5:
        return -1.5 * torch.exp(-math.sqrt(3.0) * r)
    if nu == 2.5:
        return -(5.0 / 6.0) * (1.0 + math.sqrt(5.0) * r) * torch.exp(-math.sqrt(5.0) * r)
    raise ValueError(f"nu must be None, 0.5, 1.5 or 2.5; got {nu!r}")


__all__ += ["base_correlation_derivative"]
