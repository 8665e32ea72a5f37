"""Slow, independent references (numpy/scipy, explicit loops) for the tests.

Nothing here imports ``gpytorch_so3``: every formula is written out again so that a bug in the package cannot
hide in its own reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

#: Per-dtype tolerances for comparisons of O(1) quantities computed in a handful of flops.
TOLS = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float64: {"rtol": 1e-12, "atol": 1e-13},
}


def to_np(t) -> np.ndarray:
    """A float64 numpy copy of a tensor (or array-like)."""
    if torch.is_tensor(t):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def scipy_exp(w) -> np.ndarray:
    """``Rotation.from_rotvec(w).as_matrix()`` for ``(..., 3)`` -> ``(..., 3, 3)``, float64."""
    w = to_np(w)
    batch = w.shape[:-1]
    return Rotation.from_rotvec(w.reshape(-1, 3)).as_matrix().reshape(*batch, 3, 3)


def scipy_log(R) -> np.ndarray:
    """``Rotation.from_matrix(R).as_rotvec()`` for ``(..., 3, 3)`` -> ``(..., 3)``, float64."""
    R = to_np(R)
    batch = R.shape[:-2]
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(*batch, 3)


def so3_metric(lengthscale, w) -> np.ndarray:
    """``R diag(l)^-2 R^T`` with ``R`` from scipy, for one ``(3,)`` lengthscale and one ``(3,)`` rotation."""
    R = scipy_exp(np.asarray(to_np(w)).reshape(3))
    ell = to_np(lengthscale).reshape(3)
    D = np.zeros((3, 3))
    for i in range(3):
        D[i, i] = 1.0 / (ell[i] * ell[i])
    return R @ D @ R.T


def base_kernel(r: float, nu: float | None) -> float:
    """gpytorch's RBF / Matern correlation at unit length-scale as a function of the distance ``r`` (scalar)."""
    if nu is None:
        return math.exp(-0.5 * r * r)
    if nu == 0.5:
        return math.exp(-r)
    if nu == 1.5:
        s = math.sqrt(3.0) * r
        return (1.0 + s) * math.exp(-s)
    if nu == 2.5:
        s = math.sqrt(5.0) * r
        return (1.0 + s + s * s / 3.0) * math.exp(-s)
    raise ValueError(nu)


def gram(x1, x2, M, nu: float | None, diag: bool = False) -> np.ndarray:
    """Double python loop: ``K[i, j] = base(sqrt((x1_i - x2_j)^T M (x1_i - x2_j)))``, float64.

    Args:
        x1: ``n x 3``.
        x2: ``m x 3``.
        M: ``3 x 3`` metric.
        nu: ``None`` or 0.5, 1.5, 2.5.
        diag: only ``K[i, i]`` (``n == m``).
    """
    x1, x2, M = to_np(x1), to_np(x2), to_np(M)
    n, m = x1.shape[0], x2.shape[0]
    if diag:
        out = np.empty(n)
        for i in range(n):
            d = x1[i] - x2[i]
            out[i] = base_kernel(math.sqrt(max(float(d @ M @ d), 0.0)), nu)
        return out
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            d = x1[i] - x2[j]
            r2 = 0.0
            for a in range(3):
                for b in range(3):
                    r2 += d[a] * M[a, b] * d[b]
            out[i, j] = base_kernel(math.sqrt(max(r2, 0.0)), nu)
    return out


def batched_gram(x1, x2, metrics, nu: float | None) -> np.ndarray:
    """:func:`gram` over leading batch dimensions (all arrays already broadcast to a common batch shape)."""
    x1, x2, metrics = to_np(x1), to_np(x2), to_np(metrics)
    batch = x1.shape[:-2]
    out = np.empty((*batch, x1.shape[-2], x2.shape[-2]))
    for idx in np.ndindex(*batch):
        out[idx] = gram(x1[idx], x2[idx], metrics[idx], nu)
    return out


def signed_permutations(det: int = 1, dim: int = 3) -> list[np.ndarray]:
    """The ``dim x dim`` signed permutation matrices with the given determinant (``2^(d-1) d!`` of each sign).

    Column ``j`` is ``+-e_{perm[j]}``.
    """
    import itertools

    out = []
    for perm in itertools.permutations(range(dim)):
        for signs in itertools.product((1.0, -1.0), repeat=dim):
            P = np.zeros((dim, dim))
            for col, row in enumerate(perm):
                P[row, col] = signs[col]
            if round(np.linalg.det(P)) == det:
                out.append(P)
    return out


def map_loss(model) -> float:
    """gpytorch's own type-II MAP objective of a model (negative log marginal likelihood plus priors, per point, as
    ``fit_map_info_.best_loss``), evaluated in train mode; the model is left in eval mode."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with torch.no_grad():
        val = -mll(model(*model.train_inputs), model.train_targets).sum().item()
    model.eval()
    return val
