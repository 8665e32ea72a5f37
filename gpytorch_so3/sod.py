r"""Rotation maths on SO(d) for any ``d >= 2``: hat/vee, exponential, logarithm, Haar sampling, canonical form.

Pure functions of tensors (torch only, no gpytorch), batch-first: a vector of so(d) coordinates has shape
``(..., d (d - 1) / 2)`` and a rotation matrix ``(..., d, d)``. Every function keeps the dtype and device of its
input. For ``d = 3`` everything agrees with :mod:`gpytorch_so3.so3` (the same axis-angle vector, the same matrix,
the same canonical form); for ``d = 2`` the single coordinate is the angle of the planar rotation.

**Coordinate order** (``W = hat(w, d)`` is skew-symmetric; ``W[j, i] = +w_k`` and ``W[i, j] = -w_k`` for the
``k``-th pair ``(j, i)`` below; that generator turns axis ``i`` towards axis ``j``):

* ``d = 2``: one coordinate, the angle ``theta`` with pair ``(1, 0)``:
  ``exp_map(theta) = [[cos, -sin], [sin, cos]]``;
* ``d >= 3``: first the three coordinates of :func:`gpytorch_so3.so3.hat` on axes 0, 1, 2 (pairs ``(2, 1)``,
  ``(0, 2)``, ``(1, 0)``: ``w = (x, y, z)`` is the axis-angle vector), then for each further axis
  ``j = 3, ..., d - 1`` the pairs ``(j, 0), (j, 1), ..., (j, j - 1)``. The coordinates are nested: the first
  ``d (d - 1) / 2`` coordinates of so(d + 1) act on the first ``d`` axes exactly as so(d) does (``d >= 3``).

:func:`coordinate_pairs` returns the list. The columns of a rotation matrix are the principal directions of a
kernel metric ``M = R diag(l)^-2 R^T`` (column ``i`` goes with ``l[i]``).

**Exponential.** ``d = 2``: closed form; ``d = 3``: Rodrigues (:func:`gpytorch_so3.so3.exp_map`, Taylor branches at
0); ``d >= 4``: ``torch.linalg.matrix_exp`` of the skew matrix (scaling and squaring of a Taylor polynomial, exact
to rounding for the small norms of kernel rotations, orthogonal to ~``1e-15`` / ``1e-6`` in float64 / float32 for
``|w| <= 10``; smooth, with finite gradients everywhere including ``w = 0``). A Cayley map would be orthogonal by
construction but is not the exponential (it would change the meaning of ``w`` and the prior densities).

**Logarithm.** The principal logarithm is unique for rotations without eigenvalue ``-1`` (all planar rotation
angles ``< pi``): the exponential is injective on the set of skew matrices with spectral norm ``< pi`` (the
injectivity radius of SO(d) with the bi-invariant metric, in these coordinates ``|w| < pi`` for ``d = 2, 3``; for
``d >= 4`` the condition is on the largest planar angle, ``||hat(w)||_2 < pi``). See :func:`log_map` for the
construction.
"""

from __future__ import annotations

import functools
import itertools
import math  # noqa: F401 - used by the doctests

import torch
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3._validation import check_dim, check_float_dtype, raise_if_not_rotations

__all__ = [
    "canonicalize",
    "coordinate_pairs",
    "exp_map",
    "hat",
    "log_map",
    "nearest_signed_permutation",
    "num_coordinates",
    "random_rotation",
    "signed_permutations",
    "vee",
]

# Below this planar angle `log_map` (d >= 4) uses the series 1 + t^2/6 + 7 t^4/360 of t / sin(t): truncation error
# ~ t^6 / 200 < 1e-20 there, and no 0/0 at t = 0.
_LOG_SERIES_THRESHOLD = 1e-3


def _check_dim(dim: object) -> int:
    return check_dim(dim, note=" (SO(1) is trivial)")


def num_coordinates(dim: int) -> int:
    """Number ``d (d - 1) / 2`` of so(d) coordinates.

    Args:
        dim: the dimension ``d >= 2``.

    Returns:
        ``d (d - 1) // 2``.

    Example:
        >>> [num_coordinates(d) for d in (2, 3, 4, 6, 10)]
        [1, 3, 6, 15, 45]
    """
    dim = _check_dim(dim)
    return dim * (dim - 1) // 2


def coordinate_pairs(dim: int) -> tuple[tuple[int, int], ...]:
    """Index pairs ``(j, i)`` of the so(d) coordinates: coordinate ``k`` is ``W[j, i] = -W[i, j]``.

    Args:
        dim: the dimension ``d >= 2``.

    Returns:
        ``d (d - 1) / 2`` pairs, in coordinate order (see the module docstring).

    Example:
        >>> coordinate_pairs(2)
        ((1, 0),)
        >>> coordinate_pairs(4)  # so3's (x, y, z) on axes 0-2, then axis 3 against axes 0, 1, 2
        ((2, 1), (0, 2), (1, 0), (3, 0), (3, 1), (3, 2))
    """
    return _coordinate_pairs(_check_dim(dim))  # checked before the cache: it would take 3.0 for a cached 3


@functools.lru_cache(maxsize=64)
def _coordinate_pairs(dim: int) -> tuple[tuple[int, int], ...]:
    if dim == 2:
        return ((1, 0),)
    pairs = [(2, 1), (0, 2), (1, 0)]
    for j in range(3, dim):
        pairs.extend((j, i) for i in range(j))
    return tuple(pairs)


def _basis(dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(m, d, d)`` generators ``E_k`` with ``hat(w) = sum_k w_k E_k``."""
    pairs = coordinate_pairs(dim)
    E = torch.zeros(len(pairs), dim, dim, dtype=dtype, device=device)
    for k, (j, i) in enumerate(pairs):
        E[k, j, i] = 1.0
        E[k, i, j] = -1.0
    return E


def _check_tensor(name: str, t: Tensor) -> None:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")


def _check_coords(w: Tensor, dim: int) -> int:
    """Check ``w`` against so(``dim``); return ``dim`` as a Python int."""
    _check_tensor("w", w)
    dim = _check_dim(dim)
    m = dim * (dim - 1) // 2
    if w.dim() < 1 or w.shape[-1] != m:
        raise ValueError(
            f"w must have shape (..., {m}) for so({dim}) (d (d - 1) / 2 coordinates), got {tuple(w.shape)}"
        )
    return dim


def _check_square(name: str, R: Tensor) -> int:
    _check_tensor(name, R)
    if R.dim() < 2 or R.shape[-1] != R.shape[-2] or R.shape[-1] < 2:
        raise ValueError(f"{name} must have shape (..., d, d) with d >= 2, got {tuple(R.shape)}")
    return R.shape[-1]


def hat(w: Tensor, dim: int) -> Tensor:
    r"""Skew-symmetric matrix of so(d) coordinates (order: :func:`coordinate_pairs`).

    For ``dim = 3`` this is :func:`gpytorch_so3.so3.hat` (``hat(w) @ v == cross(w, v)``).

    Args:
        w: ``(..., d (d - 1) / 2)`` coordinates.
        dim: the dimension ``d >= 2``.

    Returns:
        ``(..., d, d)`` skew-symmetric matrices.

    Example:
        >>> hat(torch.tensor([0.5]), 2)
        tensor([[ 0.0000, -0.5000],
                [ 0.5000,  0.0000]])
        >>> torch.equal(hat(torch.tensor([1.0, 2.0, 3.0]), 3), so3.hat(torch.tensor([1.0, 2.0, 3.0])))
        True
    """
    dim = _check_coords(w, dim)
    E = _basis(dim, w.dtype, w.device)
    return torch.einsum("...k,kij->...ij", w, E)


def vee(W: Tensor) -> Tensor:
    r"""Inverse of :func:`hat`: the so(d) coordinates of the skew-symmetric part ``(W - W^T) / 2``.

    Args:
        W: ``(..., d, d)`` matrices (``d`` is read from the shape).

    Returns:
        ``(..., d (d - 1) / 2)`` coordinates.

    Example:
        >>> w = torch.arange(1.0, 7.0)
        >>> torch.equal(vee(hat(w, 4)), w)
        True
    """
    d = _check_square("W", W)
    pairs = coordinate_pairs(d)
    rows = torch.tensor([p[0] for p in pairs], device=W.device)
    cols = torch.tensor([p[1] for p in pairs], device=W.device)
    return 0.5 * (W[..., rows, cols] - W[..., cols, rows])


def exp_map(w: Tensor, dim: int) -> Tensor:
    r"""Rotation matrix ``R = exp(hat(w))`` of so(d) coordinates.

    ``d = 2``: ``[[cos t, -sin t], [sin t, cos t]]``; ``d = 3``: Rodrigues' formula (:func:`gpytorch_so3.so3.exp_map`,
    equal to ``scipy.spatial.transform.Rotation.from_rotvec(w).as_matrix()``); ``d >= 4``:
    ``torch.linalg.matrix_exp(hat(w, d))``. Differentiable, with finite values and gradients everywhere
    (including ``w = 0``, and ``|w| = pi`` for ``d <= 3``).

    Args:
        w: ``(..., d (d - 1) / 2)`` coordinates (not reduced modulo ``2 pi``).
        dim: the dimension ``d >= 2``.

    Returns:
        ``(..., d, d)`` rotation matrices.

    Example:
        >>> exp_map(torch.tensor([math.pi / 2], dtype=torch.float64), 2).round(decimals=6) + 0.0
        tensor([[ 0., -1.],
                [ 1.,  0.]], dtype=torch.float64)
        >>> R = exp_map(torch.randn(15, dtype=torch.float64), 6)
        >>> torch.allclose(R @ R.mT, torch.eye(6, dtype=torch.float64)), round(float(torch.linalg.det(R)), 6)
        (True, 1.0)
    """
    dim = _check_coords(w, dim)
    if dim == 2:
        c, s = torch.cos(w[..., 0]), torch.sin(w[..., 0])
        return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)
    if dim == 3:
        return so3.exp_map(w)
    return torch.linalg.matrix_exp(hat(w, dim))


def _log_normal_matrix(R: Tensor) -> Tensor:
    r"""Principal logarithm of rotations through the commuting symmetric and skew parts (no gradient).

    ``R = Q blockdiag(rot(theta_k), 1) Q^T`` gives ``S = (R + R^T)/2 = Q blockdiag(cos theta_k I_2, 1) Q^T`` and
    ``K = (R - R^T)/2 = Q blockdiag(sin theta_k J, 0) Q^T``; they commute, and on each eigenspace of ``S`` the
    logarithm is ``(theta / sin theta) K``. With ``S = V diag(c_i) V^T`` (``eigh``), ``s_i = |K v_i| = sin theta_i``
    and ``theta_i = atan2(s_i, c_i)`` (well conditioned for every angle, unlike ``arccos(c_i)``), ``log R = V
    diag(theta_i / s_i) V^T K``. Eigenvectors of (nearly) equal ``c_i`` may mix, but only within one planar angle, so
    ``theta_i / s_i`` is unaffected. Error ``~ eps / (pi - theta_max)``: accurate away from a half-turn. The result is
    symmetrised to a skew matrix, ``(F K + K F) / 2``.
    """
    S = 0.5 * (R + R.mT)
    K = 0.5 * (R - R.mT)
    c, V = torch.linalg.eigh(S)
    s = torch.linalg.vector_norm(K @ V, dim=-2)  # |K v_i|, (..., d)
    theta = torch.atan2(s, c)
    small = theta < _LOG_SERIES_THRESHOLD
    t2 = theta * theta
    ratio = torch.where(small, 1.0 + t2 / 6.0 + 7.0 * t2 * t2 / 360.0, theta / s.clamp_min(torch.finfo(s.dtype).tiny))
    F = (V * ratio.unsqueeze(-2)) @ V.mT
    W = F @ K
    return 0.5 * (W - W.mT)


def _exp_jacobian(w: Tensor, dim: int) -> Tensor:
    """``(..., d*d, m)``: derivative of ``vec(exp_map(w))`` w.r.t. ``w`` by the block-matrix identity.

    ``exp([[W, E], [0, W]])`` has the directional derivative ``D exp_W[E]`` as its upper-right block.
    """
    m = num_coordinates(dim)
    W = hat(w, dim)
    E = _basis(dim, w.dtype, w.device)
    big = torch.zeros(*w.shape[:-1], m, 2 * dim, 2 * dim, dtype=w.dtype, device=w.device)
    big[..., :dim, :dim] = W.unsqueeze(-3)
    big[..., dim:, dim:] = W.unsqueeze(-3)
    big[..., :dim, dim:] = E
    D = torch.linalg.matrix_exp(big)[..., :dim, dim:]  # (..., m, d, d)
    return D.flatten(-2).mT


class _LogMapSOd(torch.autograd.Function):
    """Principal log on SO(d), ``d >= 4``, with the gradient of the inverse of ``exp_map`` (implicit function).

    ``eigh``'s own backward has ``1 / (lambda_i - lambda_j)`` terms, infinite at the always-paired eigenvalues of
    ``S``; instead, ``d w = J^+ d R`` with ``J = d vec(exp(hat(w))) / d w`` (full column rank inside the injectivity
    radius), so ``grad_R = J (J^T J)^{-1} grad_w``: exact along SO(d) (tangent perturbations of ``R``).
    """

    @staticmethod
    def forward(ctx, R: Tensor) -> Tensor:
        w = vee(_log_normal_matrix(R))
        ctx.save_for_backward(w)
        ctx.dim = R.shape[-1]
        return w

    @staticmethod
    def backward(ctx, grad_w: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        dim = ctx.dim
        J = _exp_jacobian(w, dim)
        gram = J.mT @ J
        y = torch.linalg.solve(gram, grad_w.unsqueeze(-1))
        return (J @ y).squeeze(-1).unflatten(-1, (dim, dim))


def _check_rotation(R: Tensor) -> None:
    """``ValueError`` unless ``R`` ``(..., d, d)`` holds rotations (the d-dimensional ``so3.check_rotation``).

    Finite, ``R^T R = I`` and ``det R = +1`` within :func:`gpytorch_so3.so3.rotation_tolerance`.
    """
    if R.device.type == "meta" or R.numel() == 0:
        return
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    with torch.no_grad():
        Rd = R.detach()
        finite = torch.isfinite(Rd).flatten(-2).all(-1)
        orth = (Rd.mT @ Rd - eye).abs().flatten(-2).amax(-1)
        det = torch.linalg.det(torch.where(finite[..., None, None], Rd, eye))
        raise_if_not_rotations("R", R, finite, orth, det, so3.rotation_tolerance(R.dtype))


def log_map(R: Tensor, *, check: bool = True) -> Tensor:
    r"""so(d) coordinates of a rotation: the principal logarithm, inverse of :func:`exp_map`.

    * ``d = 2``: ``theta = atan2(R[1, 0], R[0, 0])`` in ``(-pi, pi]``;
    * ``d = 3``: :func:`gpytorch_so3.so3.log_map` (quaternion-based; ``|w| <= pi``, stable near 0 and pi);
    * ``d >= 4``: ``log R = F K`` with ``S, K`` the symmetric and skew parts of ``R`` and ``F = f(S)``,
      ``f = theta / sin(theta)`` per eigenvector of ``S`` (``eigh``; ``theta = atan2(|K v|, c)``, see
      ``_log_normal_matrix``). Accurate near the identity (relative accuracy of ``K``); every planar angle is
      returned in ``[0, pi]``. The logarithm is unique only inside the injectivity radius (all planar angles
      ``< pi``); within ``delta`` of an angle ``pi`` the error grows like ``eps / delta``, and at exactly ``pi`` the
      value is finite but not a logarithm. Gradients: the inverse-function derivative along SO(d) (custom
      backward).

    The input is validated first, as :func:`gpytorch_so3.so3.log_map` does: a reflection (``det = -1``), a scaled,
    singular, non-orthogonal or non-finite matrix raises ``ValueError`` instead of returning a meaningless vector;
    ``check=False`` skips the test for rotations known to be exact.

    Args:
        R: ``(..., d, d)`` rotation matrices (``d`` is read from the shape).
        check: validate that ``R`` holds rotations (default True).

    Returns:
        ``(..., d (d - 1) / 2)`` coordinates with ``exp_map(log_map(R), d) == R``.

    Raises:
        ValueError: ``R`` has the wrong shape or, with ``check``, is not a rotation.

    Example:
        >>> w = torch.tensor([0.3, -0.2, 0.1, 0.5, 0.0, -0.4], dtype=torch.float64)
        >>> log_map(exp_map(w, 4)).round(decimals=12) + 0.0
        tensor([ 0.3000, -0.2000,  0.1000,  0.5000,  0.0000, -0.4000],
               dtype=torch.float64)
        >>> log_map(exp_map(torch.tensor([4.0]), 2))  # 4 rad is 4 - 2 pi
        tensor([-2.2832])
    """
    d = _check_square("R", R)
    if d == 3:
        return so3.log_map(R, check=check)
    if check:
        _check_rotation(R)
    if d == 2:
        return torch.atan2(R[..., 1, 0], R[..., 0, 0]).unsqueeze(-1)
    return _LogMapSOd.apply(R)


def random_rotation(
    dim: int,
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Haar-uniform random rotation matrices in SO(d).

    QR decomposition of a standard Gaussian matrix ``G = Q U`` with the sign fix ``Q <- Q diag(sign(diag U))`` is
    Haar on O(d) (Mezzadri 2007, "How to generate random matrices from the classical compact groups"); then the
    first column of the matrices with ``det = -1`` is negated. Right multiplication by ``diag(-1, 1, ..., 1)`` maps
    the ``det = -1`` coset onto SO(d) and preserves the Haar measure, so the result is Haar on SO(d).

    Args:
        dim: the dimension ``d >= 2``.
        shape: batch shape, as ints or one tuple (``random_rotation(4)`` gives one ``4 x 4`` matrix).
        generator: optional ``torch.Generator`` for reproducibility.
        dtype: floating dtype (default: ``torch.get_default_dtype()``).
        device: device (default: the generator's device, else CPU).

    Returns:
        ``(*shape, d, d)`` rotation matrices.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> R = random_rotation(5, 100, generator=g, dtype=torch.float64)
        >>> R.shape, bool(torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=torch.float64)))
        (torch.Size([100, 5, 5]), True)
    """
    dim = _check_dim(dim)
    size = so3.parse_shape(shape)
    check_float_dtype(dtype, where="random_rotation: ")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    G = torch.randn(*size, dim, dim, generator=generator, dtype=dtype, device=device)
    Q, U = torch.linalg.qr(G)
    sign = torch.sign(U.diagonal(dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)  # probability 0, but keep Q orthogonal
    Q = Q * sign.unsqueeze(-2)
    neg = torch.linalg.det(Q) < 0
    flip = torch.ones(*size, dim, dtype=dtype, device=device)
    flip[..., 0] = torch.where(neg, -1.0, 1.0).to(dtype)
    return Q * flip.unsqueeze(-2)


def canonicalize(lengthscale: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    r"""Canonical representative of ``(lengthscale, R)`` modulo the signed permutations with ``det = +1``.

    ``M = R diag(l)^-2 R^T`` is unchanged by ``(l, R) -> (l P, R P)`` for the ``2^(d-1) d!`` signed permutation
    matrices ``P`` with determinant +1. The canonical form sorts the length-scales ascending (stable), permutes the
    columns of ``R`` alike, flips the first ``d - 1`` columns so that their largest-magnitude entry is positive, and
    the last column so that ``det = +1``. For ``d = 3`` this is :func:`gpytorch_so3.so3.canonicalize`. The metric is
    unchanged.

    Args:
        lengthscale: ``(..., d)`` principal length-scales (column ``i`` of ``R`` goes with entry ``i``).
        R: ``(..., d, d)`` rotation matrices; batch shapes must broadcast with ``lengthscale``.

    Returns:
        ``(lengthscale, R)``: ascending length-scales ``(..., d)`` and canonical rotations ``(..., d, d)``.

    Example:
        >>> l, R = canonicalize(torch.tensor([2.0, 1.0]), torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
        >>> l, R + 0.0
        (tensor([1., 2.]), tensor([[1., 0.],
                [0., 1.]]))
    """
    d = _check_square("R", R)
    _check_tensor("lengthscale", lengthscale)
    if lengthscale.dim() < 1 or lengthscale.shape[-1] != d:
        raise ValueError(
            f"lengthscale must have shape (..., {d}) to match R of shape {tuple(R.shape)}, "
            f"got {tuple(lengthscale.shape)}"
        )
    if d == 3:
        return so3.canonicalize(lengthscale, R)
    batch = torch.broadcast_shapes(lengthscale.shape[:-1], R.shape[:-2])
    lengthscale = lengthscale.expand(*batch, d)
    R = R.expand(*batch, d, d)
    ls, order = lengthscale.sort(dim=-1, stable=True)
    cols = R.gather(-1, order[..., None, :].expand(*batch, d, d))
    big = cols.abs().argmax(-2, keepdim=True)  # (..., 1, d): row of the largest entry of each column
    sign = torch.sign(cols.gather(-2, big))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    cols = cols * sign
    det_sign = torch.sign(torch.linalg.det(cols))
    last = torch.where(det_sign < 0, -1.0, 1.0).to(cols.dtype)
    fix = torch.ones(*batch, 1, d, dtype=cols.dtype, device=cols.device)
    fix[..., 0, -1] = last
    return ls, cols * fix


@functools.lru_cache(maxsize=16)
def _signed_permutations_cpu(dim: int) -> Tensor:
    perms = torch.tensor(list(itertools.permutations(range(dim))))
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=dim)), dtype=torch.float64)
    P = torch.eye(dim, dtype=torch.float64)[perms].mT  # (d!, d, d): column j is e_{perm[j]}
    P = (P.unsqueeze(1) * signs.unsqueeze(0).unsqueeze(-2)).reshape(-1, dim, dim)
    P = P[torch.linalg.det(P) > 0]
    first = (P == torch.eye(dim, dtype=P.dtype)).all((-2, -1))
    return torch.cat((P[first], P[~first])).contiguous()  # the identity first


def signed_permutations(dim: int, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    r"""The ``2^(d-1) d!`` signed permutation matrices with determinant +1, ``(2^(d-1) d!, d, d)``.

    They are the symmetries of the kernel metric: ``(l, R) -> (l |P|, R P)`` leaves ``M = R diag(l)^-2 R^T``
    unchanged (column ``j`` of ``P`` is ``+-e_{pi(j)}``, so column ``j`` of ``R P`` is column ``pi(j)`` of ``R`` up to
    sign and goes with length-scale ``l[pi(j)]``). The first matrix is the identity. Cached per ``dim``; 23,040
    matrices for ``d = 6``, ~1.9e9 for ``d = 10`` (use them for small ``d`` only).

    Example:
        >>> P = signed_permutations(3)
        >>> P.shape, bool(torch.equal(P[0], torch.eye(3, dtype=torch.float64)))
        (torch.Size([24, 3, 3]), True)
    """
    P = _signed_permutations_cpu(_check_dim(dim))
    return P.to(dtype=torch.get_default_dtype() if dtype is None else dtype, device=device)


def nearest_signed_permutation(R: Tensor) -> Tensor:
    r"""A signed permutation ``P`` (``det P = +1``) with large ``trace(R P)``, in any dimension; ``(..., d, d)``.

    ``trace(R P) = sum_j s_j R[j, pi(j)]`` for ``P[pi(j), j] = s_j``. The permutation maximising
    ``sum_j |R[j, pi(j)]|`` (an assignment problem, ``scipy.optimize.linear_sum_assignment``, ``O(d^3)``) with signs
    ``s_j = sign R[j, pi(j)]`` maximises the trace over *all* signed permutations; when that ``P`` has ``det = -1``,
    the sign of the term of smallest magnitude is flipped (the best ``det = +1`` choice with that permutation; a
    different permutation can occasionally do better, which only enumerating :func:`signed_permutations` settles).
    ``R P`` is then the representative of ``R``'s frame nearest to the identity in Frobenius norm: the start the
    package uses when ``2^(d-1) d!`` matrices are too many to enumerate.

    Args:
        R: rotation matrices ``(..., d, d)`` (any square matrices work; only ``|R|`` and signs are used).

    Returns:
        ``P`` with ``R``'s dtype and device: column ``j`` is ``+-e_{pi(j)}``.

    Example:
        >>> R = exp_map(torch.tensor([0.1, 0.2, 0.3, 0.1, 0.2, 0.3], dtype=torch.float64), 4)
        >>> P = signed_permutations(4, dtype=torch.float64)[5]
        >>> bool(torch.equal(nearest_signed_permutation(R @ P.mT), P))  # undoes a frame permutation
        True
    """
    from scipy.optimize import linear_sum_assignment

    d = _check_square("R", R)
    flat = R.detach().reshape(-1, d, d).to("cpu", torch.float64)
    perm = torch.stack([torch.as_tensor(linear_sum_assignment(-r.abs().numpy())[1]) for r in flat])
    P = torch.nn.functional.one_hot(perm, d).to(torch.float64).mT  # column j is e_{perm[j]}
    diag = torch.diagonal(flat @ P, dim1=-2, dim2=-1)
    P = P * torch.where(diag < 0, -1.0, 1.0).to(torch.float64).unsqueeze(-2)
    neg = torch.linalg.det(P) < 0
    weakest = diag.abs().argmin(-1)
    flip = torch.where(neg.unsqueeze(-1) & (torch.arange(d) == weakest.unsqueeze(-1)), -1.0, 1.0).to(torch.float64)
    return (P * flip.unsqueeze(-2)).reshape(R.shape).to(R)
