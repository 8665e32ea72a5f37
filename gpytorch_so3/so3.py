r"""Rotation maths on SO(3): hat/vee, Rodrigues' exponential, logarithm, Haar sampling, canonical form.

Everything here is a pure function of tensors (no gpytorch), batch-first: an axis-angle vector has shape
``(..., 3)`` and a rotation matrix ``(..., 3, 3)``. Every function keeps the dtype and device of its input
and is differentiable with finite values and gradients at ``w = 0`` and at ``|w| = pi``.

Conventions (equal to :mod:`scipy.spatial.transform.Rotation`):

* ``hat(w) @ v == cross(w, v)``;
* ``exp_map(w) == Rotation.from_rotvec(w).as_matrix()``: a right-handed rotation by ``|w|`` radians about
  ``w / |w|``;
* the columns of a rotation matrix are the principal directions of the kernel metric
  ``M = R diag(l)^-2 R^T``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gpytorch_so3._validation import check_float_dtype, check_int, raise_if_not_rotations

__all__ = [
    "HORIZONTAL_TOL",
    "angle_between_axes",
    "azimuth_dip",
    "canonicalize",
    "check_rotation",
    "direction_from_azimuth_dip",
    "exp_map",
    "hat",
    "log_map",
    "parse_shape",
    "quaternion_to_matrix",
    "random_rotation",
    "rotation_angle",
    "rotation_tolerance",
    "safe_norm",
    "sinc",
    "vee",
]

# Below this |w| the series of sin(t)/t is used: the truncation error t^6/5040 < 1e-18 is far below float64
# resolution, while the closed form would be 0/0 at t = 0 (and its autograd NaN, pytorch issue #16317).
_SINC_TAYLOR_THRESHOLD = 1e-3


def _check_last_dims(name: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not (t.is_floating_point()):
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    k = len(shape)
    if t.dim() < k or tuple(t.shape[-k:]) != shape:
        want = "(..., " + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")


def sinc(t: Tensor) -> Tensor:
    """``sin(t) / t`` with the value 1 and finite derivatives at ``t = 0`` (unnormalised sinc).

    Unlike ``torch.sinc`` (normalised, ``sin(pi t) / (pi t)``) this is the unnormalised sinc of Rodrigues'
    formula; below ``|t| = 1e-3`` its Taylor series is used, so value and gradient are finite at 0.

    Args:
        t: any shape.

    Returns:
        ``sin(t) / t``, same shape.

    Example:
        >>> sinc(torch.tensor([0.0, math.pi / 2]))
        tensor([1.0000, 0.6366])
    """
    small = t.abs() < _SINC_TAYLOR_THRESHOLD
    # Double `where`: the unused branch must not see t = 0 either, or its NaN gradient leaks through.
    t_safe = torch.where(small, torch.ones_like(t), t)
    t2 = t * t
    taylor = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
    return torch.where(small, taylor, torch.sin(t_safe) / t_safe)


def safe_norm(w: Tensor) -> Tensor:
    """``|w|`` over the last dimension whose gradient is 0 (not NaN) at ``w = 0``.

    Args:
        w: ``(..., k)`` vectors.

    Returns:
        ``(...)`` Euclidean norms.

    Example:
        >>> w = torch.zeros(3, requires_grad=True)
        >>> safe_norm(w).backward()
        >>> w.grad
        tensor([0., 0., 0.])
    """
    sq = (w * w).sum(-1)
    zero = sq == 0
    return torch.where(zero, torch.zeros_like(sq), torch.where(zero, torch.ones_like(sq), sq).sqrt())


# Deprecated private names, kept while other modules move to the public ones (to be removed by the integrator).
_sinc = sinc
_safe_norm = safe_norm


def hat(w: Tensor) -> Tensor:
    r"""Skew-symmetric matrix of an axis-angle vector, so that ``hat(w) @ v == cross(w, v)``.

    Args:
        w: ``(..., 3)`` vectors.

    Returns:
        ``(..., 3, 3)`` skew-symmetric matrices.

    Example:
        >>> hat(torch.tensor([1.0, 2.0, 3.0]))
        tensor([[ 0., -3.,  2.],
                [ 3.,  0., -1.],
                [-2.,  1.,  0.]])
    """
    _check_last_dims("w", w, (3,))
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack(
        (
            torch.stack((o, -z, y), -1),
            torch.stack((z, o, -x), -1),
            torch.stack((-y, x, o), -1),
        ),
        -2,
    )


def vee(W: Tensor) -> Tensor:
    r"""Inverse of :func:`hat`: the vector of the skew-symmetric part of ``W``.

    For a skew-symmetric ``W`` this is exact; for a general matrix it returns the vector of
    ``(W - W^T) / 2``.

    Args:
        W: ``(..., 3, 3)`` matrices.

    Returns:
        ``(..., 3)`` vectors.

    Example:
        >>> vee(hat(torch.tensor([1.0, 2.0, 3.0])))
        tensor([1., 2., 3.])
    """
    _check_last_dims("W", W, (3, 3))
    return 0.5 * torch.stack(
        (W[..., 2, 1] - W[..., 1, 2], W[..., 0, 2] - W[..., 2, 0], W[..., 1, 0] - W[..., 0, 1]),
        -1,
    )


def exp_map(w: Tensor) -> Tensor:
    r"""Rotation matrix of an axis-angle vector by Rodrigues' formula.

    .. math::
        R = \exp(\hat w) = I + \frac{\sin\theta}{\theta}\,\hat w + \frac{1 - \cos\theta}{\theta^2}\,\hat w^2,
        \qquad \theta = |w|.

    The second coefficient is evaluated as ``0.5 * sinc(theta / 2)**2`` (no cancellation in ``1 - cos``), and
    ``sinc`` switches to its Taylor series near 0, so values and gradients are finite everywhere,
    including ``w = 0`` and ``|w| = pi``.

    Args:
        w: ``(..., 3)`` axis-angle vectors (any length; not reduced modulo ``2 pi``).

    Returns:
        ``(..., 3, 3)`` rotation matrices, equal to ``scipy.spatial.transform.Rotation.from_rotvec(w).as_matrix()``.

    Example:
        >>> R = exp_map(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
        >>> torch.allclose(R @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        ...                torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
        True
    """
    _check_last_dims("w", w, (3,))
    theta = safe_norm(w)[..., None, None]
    K = hat(w)
    a = sinc(theta)
    b = 0.5 * sinc(0.5 * theta) ** 2
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    return eye + a * K + b * (K @ K)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrix of a (not necessarily normalised) quaternion ``(w, x, y, z)`` (scalar first).

    Args:
        q: ``(..., 4)`` quaternions; normalised internally.

    Returns:
        ``(..., 3, 3)`` rotation matrices.

    Example:
        >>> q = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # 90 degrees about z, not normalised
        >>> quaternion_to_matrix(q).round(decimals=6) + 0.0
        tensor([[ 0., -1.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    _check_last_dims("q", q, (4,))
    q = q / q.norm(dim=-1, keepdim=True)
    r, i, j, k = q.unbind(-1)
    two = 2.0
    return torch.stack(
        (
            torch.stack((1 - two * (j * j + k * k), two * (i * j - k * r), two * (i * k + j * r)), -1),
            torch.stack((two * (i * j + k * r), 1 - two * (i * i + k * k), two * (j * k - i * r)), -1),
            torch.stack((two * (i * k - j * r), two * (j * k + i * r), 1 - two * (i * i + j * j)), -1),
        ),
        -2,
    )


def _matrix_to_quaternion(R: Tensor) -> Tensor:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (Shepperd's method).

    Of the four algebraically equal formulas the one with the largest square root is used, so the divisor
    is at least 1/2 and the result is accurate for every rotation, including half-turns, where the
    trace-based formula divides by ``sin(theta) = 0`` (the failure mode of naive log maps).
    """
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    d21, d02, d10 = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    s01, s02, s12 = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    # 4 * (squared component) for w, x, y, z; clamped so that the unused branches stay finite (their
    # gradients are multiplied by 0 in the selection below, but a NaN would still poison them).
    diag = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    roots = diag.clamp_min(0.1).sqrt()  # chosen branch has diag >= 1, so the clamp never touches it
    rw, rx, ry, rz = roots.unbind(-1)
    cands = torch.stack(
        (
            torch.stack((rw * rw, d21, d02, d10), -1) / (2 * rw[..., None]),
            torch.stack((d21, rx * rx, s01, s02), -1) / (2 * rx[..., None]),
            torch.stack((d02, s01, ry * ry, s12), -1) / (2 * ry[..., None]),
            torch.stack((d10, s02, s12, rz * rz), -1) / (2 * rz[..., None]),
        ),
        -2,
    )  # each row is (w, x, y, z)
    idx = diag.argmax(-1)
    q = cands.gather(-2, idx[..., None, None].expand(*idx.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotation_tolerance(dtype: torch.dtype) -> float:
    """Default tolerance of :func:`check_rotation` for a dtype: ``max(sqrt(eps), 1e-5)``.

    ``3.5e-4`` for float32 and ``1e-5`` for float64: far above the rounding of rotations computed in that dtype
    (``exp_map``, products of a few rotations, eigenvectors) and of rotations read from text files with six
    decimals (entries off by ``5e-7``, ``R^T R - I`` by up to ``3e-6``), far below anything that is not a rotation.

    Args:
        dtype: a floating dtype.

    Returns:
        the tolerance.

    Example:
        >>> rotation_tolerance(torch.float32) > rotation_tolerance(torch.float64)
        True
    """
    return max(math.sqrt(torch.finfo(dtype).eps), 1e-5)


def check_rotation(R: Tensor, name: str = "R", atol: float | None = None) -> None:
    r"""Raise ``ValueError`` unless every matrix of ``R`` is a rotation: finite, ``R^T R = I`` and ``det R = +1``.

    Checked up to ``atol`` (default :func:`rotation_tolerance` of ``R``'s dtype) in the largest entry of
    ``R^T R - I`` and in ``|det R - 1|``. Gradients are not tracked. Meta tensors (no values) pass.

    Args:
        R: ``(..., 3, 3)`` matrices.
        name: what to call ``R`` in the message.
        atol: tolerance (default: dtype-aware, see :func:`rotation_tolerance`).

    Raises:
        TypeError: ``R`` is not a floating-point tensor.
        ValueError: wrong shape, or some matrix is not a rotation (reflections, scaled or singular matrices);
            the message names the first offending batch index and the deviation.

    Example:
        >>> check_rotation(exp_map(torch.tensor([0.1, 0.2, 0.3])))  # passes silently
        >>> check_rotation(torch.diag(torch.tensor([1.0, 1.0, -1.0])))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: R is not a rotation matrix: det = -1 (a reflection), max |R^T R - I| = 0; expected ...
    """
    _check_last_dims(name, R, (3, 3))
    if R.device.type == "meta" or R.numel() == 0:
        return
    tol = rotation_tolerance(R.dtype) if atol is None else float(atol)
    with torch.no_grad():
        Rd = R.detach()
        finite = torch.isfinite(Rd).flatten(-2).all(-1)
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        # Elementwise products instead of batched 3 x 3 matmul/LU (too small for BLAS/LAPACK to pay off):
        # (R^T R)_ij = sum_k R_ki R_kj, det R = c0 . (c1 x c2). NaN compares False below, so it is caught too.
        gram = (Rd.unsqueeze(-1) * Rd.unsqueeze(-2)).sum(-3)
        orth = (gram - eye).abs().flatten(-2).amax(-1)
        det = (Rd[..., 0] * torch.linalg.cross(Rd[..., 1], Rd[..., 2], dim=-1)).sum(-1)
        raise_if_not_rotations(name, R, finite, orth, det, tol)


def log_map(R: Tensor, *, check: bool = True) -> Tensor:
    r"""Axis-angle vector of a rotation matrix: the inverse of :func:`exp_map` on ``|w| <= pi``.

    Computed through the unit quaternion ``(cos(theta/2), sin(theta/2) u)`` of ``R`` (Shepperd's method) and
    ``theta = 2 atan2(|v|, w)``, which is well conditioned near 0 and near pi. At exactly ``theta = pi`` the
    sign of the axis is arbitrary (both vectors give the same rotation).

    The input is validated first (:func:`check_rotation`): a reflection, a scaled, singular or non-orthogonal
    matrix raises ``ValueError`` instead of returning a meaningless vector. ``check=False`` skips the test (it
    costs about as much as the logarithm itself) for rotations known to be exact.

    Args:
        R: ``(..., 3, 3)`` rotation matrices.
        check: validate that ``R`` holds rotations (default True).

    Returns:
        ``(..., 3)`` axis-angle vectors with norm in ``[0, pi]``.

    Raises:
        ValueError: ``R`` has the wrong shape or, with ``check``, is not a rotation (see :func:`check_rotation`).

    Example:
        >>> w = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
        >>> log_map(exp_map(w))
        tensor([ 0.3000, -0.2000,  0.1000], dtype=torch.float64)
        >>> # 4 rad about z is the same rotation as 4 - 2 pi: the principal-ball representative is returned
        >>> log_map(exp_map(torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64))).round(decimals=4) + 0.0
        tensor([ 0.0000,  0.0000, -2.2832], dtype=torch.float64)
    """
    if check:
        check_rotation(R)
    else:
        _check_last_dims("R", R, (3, 3))
    q = _matrix_to_quaternion(R)
    qw, v = q[..., 0], q[..., 1:]
    vn = safe_norm(v)
    small = vn < _SINC_TAYLOR_THRESHOLD
    vn_safe = torch.where(small, torch.ones_like(vn), vn)
    # theta / |v| = 2 atan2(|v|, qw) / |v|; for small |v| (then qw ~ 1): 2/qw * (1 - |v|^2 / (3 qw^2)).
    qw_safe = torch.where(small, qw, torch.ones_like(qw))
    factor = torch.where(
        small,
        2.0 / qw_safe * (1.0 - vn * vn / (3.0 * qw_safe * qw_safe)),
        2.0 * torch.atan2(vn_safe, qw) / vn_safe,
    )
    return v * factor[..., None]


def rotation_angle(R: Tensor) -> Tensor:
    """Rotation angle ``theta in [0, pi]`` of rotation matrices ``(..., 3, 3) -> (...)``.

    Args:
        R: ``(..., 3, 3)`` rotation matrices.

    Returns:
        ``(...)`` angles in radians.

    Example:
        >>> rotation_angle(exp_map(torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]])))  # 4 rad = 2 pi - 2.2832
        tensor([2.0000, 2.2832])
    """
    return safe_norm(log_map(R, check=False))


def parse_shape(shape: tuple) -> torch.Size:
    """A batch shape given as ``*ints`` or one sequence (``random_rotation(2, 3)`` or ``random_rotation((2, 3))``).

    Example:
        >>> parse_shape((2, 3)), parse_shape(((2, 3),))
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """
    if len(shape) == 1 and isinstance(shape[0], Sequence | torch.Size):
        shape = tuple(shape[0])
    try:  # a non-integer entry is a TypeError (check_int's message); numpy integers are accepted
        return torch.Size(tuple(check_int("shape entries", s, 0, where="random_rotation: ") for s in shape))
    except ValueError:
        raise ValueError(f"random_rotation: shape entries must be non-negative ints, got {shape!r}") from None


def random_rotation(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Haar-uniform random rotation matrices.

    A standard normal 4-vector normalised to the unit sphere is a uniform unit quaternion, and the double
    cover ``S^3 -> SO(3)`` pushes the uniform measure on ``S^3`` to the Haar measure on SO(3).

    Args:
        shape: batch shape, as ints or one tuple (``random_rotation()`` gives one ``3 x 3`` matrix).
        generator: optional ``torch.Generator`` for reproducibility.
        dtype: floating dtype (default: ``torch.get_default_dtype()``).
        device: device (default: the generator's device, else CPU).

    Returns:
        ``(*shape, 3, 3)`` rotation matrices.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> R = random_rotation(5, generator=g, dtype=torch.float64)
        >>> R.shape, bool(torch.allclose(torch.linalg.det(R), torch.ones(5, dtype=torch.float64)))
        (torch.Size([5, 3, 3]), True)
    """
    size = parse_shape(shape)
    check_float_dtype(dtype, where="random_rotation: ")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    q = torch.randn(*size, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


def canonicalize(lengthscale: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    r"""The canonical representative of ``(lengthscale, R)`` under the 24-fold symmetry of the metric.

    ``M = R diag(l)^-2 R^T`` is unchanged when the columns of ``R`` (with the entries of ``l``) are permuted and
    sign-flipped with determinant +1. The canonical form sorts the length-scales ascending, permutes the
    columns of ``R`` alike, flips columns 1 and 2 so that their largest-magnitude entry is positive and sets
    column 3 to column 1 x column 2 (so ``det = +1``). The metric is unchanged.

    Args:
        lengthscale: ``(..., 3)`` principal length-scales (column ``i`` of ``R`` goes with entry ``i``).
        R: ``(..., 3, 3)`` rotation matrices; batch shapes must broadcast with ``lengthscale``.

    Returns:
        ``(lengthscale, R)``: ascending length-scales ``(..., 3)`` and canonical rotations ``(..., 3, 3)``.

    Example:
        >>> l, R = canonicalize(torch.tensor([3.0, 1.0, 2.0]), torch.eye(3))
        >>> l
        tensor([1., 2., 3.])
        >>> R
        tensor([[0., 0., 1.],
                [1., 0., 0.],
                [0., 1., 0.]])
    """
    _check_last_dims("lengthscale", lengthscale, (3,))
    _check_last_dims("R", R, (3, 3))
    batch = torch.broadcast_shapes(lengthscale.shape[:-1], R.shape[:-2])
    lengthscale = lengthscale.expand(*batch, 3)
    R = R.expand(*batch, 3, 3)
    ls, order = lengthscale.sort(dim=-1, stable=True)
    cols = R.gather(-1, order[..., None, :].expand(*batch, 3, 3))
    c1, c2 = cols[..., 0], cols[..., 1]

    def _sign(c: Tensor) -> Tensor:
        big = c.abs().argmax(-1, keepdim=True)
        s = torch.sign(c.gather(-1, big))
        return torch.where(s == 0, torch.ones_like(s), s)

    c1 = c1 * _sign(c1)
    c2 = c2 * _sign(c2)
    c3 = torch.linalg.cross(c1, c2, dim=-1)
    return ls, torch.stack((c1, c2, c3), -1)


def angle_between_axes(u: Tensor, v: Tensor, degrees: bool = True) -> Tensor:
    """Angle between two undirected axes (``u`` and ``-u`` are the same axis), in ``[0, 90]`` degrees.

    Args:
        u: ``(..., 3)`` direction vectors (need not be unit length).
        v: ``(..., 3)`` direction vectors.
        degrees: return degrees (default) or radians.

    Returns:
        ``(...)`` angles.

    Example:
        >>> x = torch.tensor([1.0, 0.0, 0.0])
        >>> angle_between_axes(x, torch.tensor([-1.0, 1.0, 0.0])), angle_between_axes(x, -x)
        (tensor(45.), tensor(0.))
    """
    _check_last_dims("u", u, (3,))
    _check_last_dims("v", v, (3,))
    c = (u * v).sum(-1).abs() / (u.norm(dim=-1) * v.norm(dim=-1))
    # atan2 form is accurate for nearly parallel axes, where acos of a rounded cosine loses half the digits.
    s = torch.linalg.cross(u, v, dim=-1).norm(dim=-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    ang = torch.atan2(s, c)
    return ang * (180.0 / math.pi) if degrees else ang


# ----------------------------------------------------------------------------------------------- azimuth/dip
# The geoscience reading of an axis, here (not in gpytorch_so3.geo) because every layer reports directions this way.
#: Axes with ``|u_z|`` below this are treated as horizontal (their two opposite azimuths are equivalent).
HORIZONTAL_TOL = 1e-9


def azimuth_dip(u: Tensor) -> tuple[Tensor, Tensor]:
    """Azimuth and dip (degrees) of axes given as vectors ``(..., 3)`` in (East, North, Up) coordinates.

    The axis is oriented downward (``u_z <= 0``); the azimuth is clockwise from North (+y) in ``[0, 360)``
    and the dip (plunge) the angle below the horizontal in ``[0, 90]``. For a horizontal axis
    (``|u_z| < 1e-9 |u|``) the two opposite azimuths are equivalent and the one in ``[0, 180)`` is returned.
    The azimuth of a vertical axis is undefined; 0 is returned.

    Args:
        u: ``(..., 3)`` directions (need not be unit length; ``u`` and ``-u`` give the same answer).

    Returns:
        ``(azimuth, dip)``, each ``(...)``, in the dtype of ``u``.

    Raises:
        ValueError: if the last dimension is not 3 or a vector is zero.

    Example:
        >>> az, dip = azimuth_dip(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
        >>> az.tolist(), dip.tolist()
        ([0.0, 90.0, 0.0], [0.0, 0.0, 90.0])
    """
    if not torch.is_tensor(u):
        u = torch.as_tensor(u, dtype=torch.get_default_dtype())
    if u.dim() < 1 or u.shape[-1] != 3:
        raise ValueError(f"azimuth_dip expects vectors of shape (..., 3), got {tuple(u.shape)}")
    if not u.is_floating_point():
        u = u.to(torch.get_default_dtype())
    norm = u.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("azimuth_dip: zero vector has no direction")
    u = u / norm
    horizontal = u[..., 2].abs() < HORIZONTAL_TOL
    # Orient downward; horizontal axes are handled by the modulo below, so rounding of u_z cannot flip them.
    u = torch.where((u[..., 2] > 0)[..., None], -u, u)
    az = torch.rad2deg(torch.atan2(u[..., 0], u[..., 1])) % 360.0
    az = torch.where(horizontal, az % 180.0, az)
    vertical = torch.hypot(u[..., 0], u[..., 1]) < HORIZONTAL_TOL
    az = torch.where(vertical, torch.zeros_like(az), az)
    az = torch.where(az >= 360.0, az - 360.0, az)  # (-tiny) % 360 rounds to 360.0 in floating point
    dip = torch.rad2deg(torch.asin(u[..., 2].abs().clamp(max=1.0)))
    return az + 0.0, dip + 0.0  # "+ 0.0" turns -0.0 (from atan2 of signed zeros) into 0.0


def direction_from_azimuth_dip(azimuth: Tensor | float, dip: Tensor | float) -> Tensor:
    """Unit vector ``(..., 3)`` (East, North, Up) pointing along an azimuth and dip given in degrees.

    The inverse of :func:`azimuth_dip`: ``u = (cos(dip) sin(az), cos(dip) cos(az), -sin(dip))``.

    Args:
        azimuth: degrees clockwise from North, any shape.
        dip: degrees below the horizontal, broadcastable with ``azimuth``.

    Returns:
        ``(..., 3)`` unit vectors.

    Example:
        >>> direction_from_azimuth_dip(90.0, 0.0)
        tensor([1.0000e+00, 6.1232e-17, -0.0000e+00], dtype=torch.float64)
    """
    az = torch.as_tensor(azimuth, dtype=torch.float64) if not torch.is_tensor(azimuth) else azimuth
    dp = torch.as_tensor(dip, dtype=az.dtype, device=az.device) if not torch.is_tensor(dip) else dip.to(az)
    if not az.is_floating_point():
        az = az.to(torch.get_default_dtype())
        dp = dp.to(az)
    az, dp = torch.deg2rad(az), torch.deg2rad(dp)
    return torch.stack((torch.cos(dp) * torch.sin(az), torch.cos(dp) * torch.cos(az), -torch.sin(dp)), -1)
