r"""Built-in data: seeded synthetic 3-D Gaussian-process fields with a known rotated anisotropy.

The fields are drawn *exactly* from the GP with the SO(3) anisotropic kernel

.. math::
    f \sim \mathcal{GP}\big(0,\ \sigma_f^2\, \kappa_\nu(r)\big), \qquad
    r^2 = (x - x')^\top R\, \mathrm{diag}(l)^{-2} R^\top (x - x'),

(a joint Cholesky factor over the training *and* test points, in float64), observed with Gaussian noise of
standard deviation ``noise_std``. The covariance is computed by :func:`gpytorch_so3.functional.covariance`, the
same code path as the kernels, so data and models share one definition of the metric: column ``i`` of
``rotation_matrix`` is the principal direction with length-scale ``lengthscale[i]``.

They serve the tests, the CLI demo, the notebooks and the benchmarks. The real drill-hole example,
:func:`load_oilsands` (pygeostat's oil-sands data, vendored), and :func:`hole_folds` are at the end.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3
from gpytorch_so3.exceptions import deprecated_alias

__all__ = [
    "DEFAULT_FIELD_LENGTHSCALE",
    "MAX_FIELD_POINTS",
    "SyntheticField",
    "make_axis_aligned_field",
    "make_rotated_field",
]

#: Default principal length-scales of the synthetic fields (unit-cube units): ratios 2.7 and 2.5 between
#: neighbouring axes, so all three principal directions are identifiable from a few hundred points.
DEFAULT_FIELD_LENGTHSCALE = (0.15, 0.4, 1.0)
#: Largest ``n_train + n_test``: the dense ``n x n`` float64 covariance and its Cholesky factor take
#: ``2 * 8 n^2`` bytes (about 1 GB at this limit) and ``n^3 / 3`` flops.
MAX_FIELD_POINTS = 8000
# Diagonal jitter (relative to the unit correlation) tried in turn until the Cholesky factorisation succeeds.
# It adds white noise of variance `signal_std^2 * jitter` to the field; at 1e-10 (enough for the default
# Matern-2.5 fields) that is 2.5e7 times smaller than the default noise variance 0.05^2.
_JITTERS = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6)
# Rows per block when filling the covariance matrix (bounds the memory of the explicit pairwise differences).
_BLOCK_ELEMENTS = 2_000_000


@dataclass(eq=False)
class SyntheticField:
    r"""A synthetic GP field with known anisotropy, split into training and held-out points.

    All tensors have the dtype requested from the generator (they are computed in float64 and then cast).

    Attributes:
        train_X: ``n_train x 3`` training inputs, uniform in ``domain^3``.
        train_Y: ``n_train x 1`` noisy observations ``f(x) + noise_std * eps``.
        test_X: ``n_test x 3`` held-out inputs, drawn independently of ``train_X``.
        test_Y: ``n_test x 1`` noisy held-out observations (independent noise of the same ``noise_std``).
        lengthscale: ``(3,)`` principal length-scales ``l``; ``lengthscale[i]`` goes with column ``i`` of
            ``rotation_matrix`` (not sorted; see :meth:`canonical`).
        rotation: ``(3,)`` axis-angle vector ``w`` with ``rotation_matrix = so3.exp_map(w)``.
        rotation_matrix: ``(3, 3)`` rotation ``R``; the metric is ``R diag(l)^-2 R^T``.
        noise_std: observation noise standard deviation.
        signal_std: standard deviation ``sigma_f`` of the field (the kernel's output-scale is ``sigma_f^2``).
        nu: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5.
        seed: the seed that generated everything (rotation if random, inputs, field, noise).
        test_F: ``n_test x 1`` noiseless field values at ``test_X``.
        train_F: ``n_train x 1`` noiseless field values at ``train_X``.
        domain: ``(low, high)``: inputs are uniform on ``[low, high]^3``.
        jitter: diagonal jitter (relative to ``signal_std^2``) used in the Cholesky factorisation; the field
            is exactly a draw from the GP plus white noise of variance ``signal_std^2 * jitter``.

    Example:
        >>> field = make_rotated_field(n_train=20, n_test=5, seed=1)
        >>> field.train_X.shape, field.test_F.shape, field.nu, field.noise_std
        (torch.Size([20, 3]), torch.Size([5, 1]), 2.5, 0.05)
        >>> torch.linalg.eigvalsh(field.metric).rsqrt()  # the metric's principal length-scales
        tensor([1.0000, 0.4000, 0.1500], dtype=torch.float64)
    """

    train_X: Tensor
    train_Y: Tensor
    test_X: Tensor
    test_Y: Tensor
    lengthscale: Tensor
    rotation: Tensor
    rotation_matrix: Tensor
    noise_std: float
    signal_std: float
    nu: float | None
    seed: int
    test_F: Tensor
    train_F: Tensor
    domain: tuple[float, float]
    jitter: float

    def canonical(self) -> tuple[Tensor, Tensor]:
        """The true ``(lengthscale, R)`` in canonical form, comparable with fitted kernels' ``canonical()``.

        Returns:
            ``(lengthscale (3,), R (3, 3))`` from :func:`gpytorch_so3.so3.canonicalize`: length-scales ascending,
            principal directions as the columns of ``R`` with the sign convention of ``canonicalize``.

        Example:
            >>> field = make_rotated_field(n_train=20, n_test=5, seed=1)
            >>> ls, R = field.canonical()
            >>> ls
            tensor([0.1500, 0.4000, 1.0000], dtype=torch.float64)
        """
        return so3.canonicalize(self.lengthscale, self.rotation_matrix)

    true_canonical = deprecated_alias(canonical, "SyntheticField.true_canonical", "SyntheticField.canonical")

    @property
    def metric(self) -> Tensor:
        """The true metric ``M = R diag(l)^-2 R^T``, ``3 x 3``."""
        return F.metric(self.lengthscale, self.rotation_matrix)


# ------------------------------------------------------------------------------------------ validation
def _check_count(name: str, n: object, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}")
    return int(n)


def _check_scalar(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'} and finite, got {value!r}")
    return v


def _check_vector(name: str, value: object) -> Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be a sequence of 3 numbers, got {value!r}") from e
    if t.shape != (3,):
        raise ValueError(f"{name} must have shape (3,), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t.clone()


def _check_domain(domain: object) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in domain)  # type: ignore[union-attr]
    except (TypeError, ValueError) as e:
        raise ValueError(f"domain must be a pair (low, high), got {domain!r}") from e
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"domain must be finite with low < high, got {domain!r}")
    return lo, hi


# ------------------------------------------------------------------------------------------ generation
def _correlation_matrix(X: Tensor, A: Tensor, nu: float | None) -> Tensor:
    """``n x n`` correlation of the SO(3) kernel by :func:`functional.covariance`, filled in row blocks."""
    n = X.shape[0]
    K = torch.empty(n, n, dtype=X.dtype)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for i in range(0, n, block):
        K[i : i + block] = F.covariance(X[i : i + block], X, A, nu)
    return K


def _cholesky_with_jitter(K: Tensor) -> tuple[Tensor, float]:
    """Lower Cholesky factor of ``K + jitter I`` for the smallest jitter in ``_JITTERS`` that works."""
    added = 0.0
    for jitter in _JITTERS:
        K.diagonal().add_(jitter - added)  # in place: no second n x n copy
        added = jitter
        L, info = torch.linalg.cholesky_ex(K)
        if int(info) == 0:
            return L, jitter
    raise RuntimeError(  # pragma: no cover - not reached for the supported kernels and sizes
        f"covariance matrix is not positive definite even with jitter {_JITTERS[-1]}; "
        "use fewer points or shorter length-scales"
    )


def _make_field(
    n_train: int,
    n_test: int,
    lengthscale: object,
    rotation: object | None,
    nu: float | None,
    noise_std: float,
    signal_std: float,
    seed: int,
    dtype: torch.dtype,
    domain: object,
) -> SyntheticField:
    n_train = _check_count("n_train", n_train, 1)
    n_test = _check_count("n_test", n_test, 0)
    if n_train + n_test > MAX_FIELD_POINTS:
        raise ValueError(
            f"n_train + n_test = {n_train + n_test} exceeds MAX_FIELD_POINTS = {MAX_FIELD_POINTS} "
            "(the exact draw needs a dense n x n Cholesky factor)"
        )
    ls = _check_vector("lengthscale", lengthscale)
    if not bool((ls > 0).all()):
        raise ValueError(f"lengthscale entries must be positive, got {ls.tolist()}")
    nu = F.check_nu(nu)
    noise_std = _check_scalar("noise_std", noise_std, positive=False)
    signal_std = _check_scalar("signal_std", signal_std, positive=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    seed = int(seed)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    lo, hi = _check_domain(domain)
    w_given = None if rotation is None else _check_vector("rotation", rotation)

    f64 = torch.float64
    g = torch.Generator().manual_seed(seed)
    # Draw order (fixed, so that a seed always gives the same data): rotation, train inputs, test inputs,
    # standard normals of the field, noise. The random rotation is drawn even when one is given, so a seed gives
    # the same inputs and the same standard normals whatever the rotation (paired rotated/axis-aligned fields).
    w_random = so3.log_map(so3.random_rotation(generator=g, dtype=f64))
    w = w_random if w_given is None else w_given
    R = so3.exp_map(w)
    train_X = lo + (hi - lo) * torch.rand(n_train, 3, generator=g, dtype=f64)
    test_X = lo + (hi - lo) * torch.rand(n_test, 3, generator=g, dtype=f64)
    X = torch.cat((train_X, test_X))
    n = X.shape[0]

    K = _correlation_matrix(X, F.so3_whitening_matrix(ls, R), nu)
    L, jitter = _cholesky_with_jitter(K)
    del K
    z = torch.randn(n, 1, generator=g, dtype=f64)
    f = signal_std * (L @ z)
    del L
    y = f + noise_std * torch.randn(n, 1, generator=g, dtype=f64)

    def out(t: Tensor) -> Tensor:
        return t.to(dtype).contiguous()

    return SyntheticField(
        train_X=out(train_X),
        train_Y=out(y[:n_train]),
        test_X=out(test_X),
        test_Y=out(y[n_train:]),
        lengthscale=out(ls),
        rotation=out(w),
        rotation_matrix=out(R),
        noise_std=noise_std,
        signal_std=signal_std,
        nu=nu,
        seed=seed,
        test_F=out(f[n_train:]),
        train_F=out(f[:n_train]),
        domain=(lo, hi),
        jitter=jitter,
    )


def make_rotated_field(
    n_train: int = 400,
    n_test: int = 400,
    *,
    lengthscale: Sequence[float] | Tensor = DEFAULT_FIELD_LENGTHSCALE,
    rotation: Sequence[float] | Tensor | None = None,
    nu: float | None = 2.5,
    noise_std: float = 0.05,
    signal_std: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    domain: tuple[float, float] = (0.0, 1.0),
) -> SyntheticField:
    r"""A GP field with rotated anisotropy, drawn exactly (joint Cholesky over train and test points).

    Inputs are uniform in the cube ``[low, high]^3`` (training and test points drawn independently); the field
    is ``f = signal_std * L z`` with ``L L^T = K + jitter I`` over all ``n_train + n_test`` points (float64,
    ``jitter`` from 1e-10 upwards until the factorisation succeeds, recorded in the result), and both
    training and test observations carry independent Gaussian noise of standard deviation ``noise_std``
    (noiseless values are kept as ``train_F``/``test_F``). Everything is reproducible from ``seed``; the
    global torch RNG is not touched. A seed gives the same inputs and the same underlying standard normals
    whatever ``rotation`` is (also in :func:`make_axis_aligned_field`), so fields that differ only in their
    rotation are paired. Cost: ``O(n^3)`` with ``n = n_train + n_test`` (about a second for
    ``n = 3000`` on 2 CPU cores).

    Args:
        n_train: number of training points (>= 1).
        n_test: number of held-out points (>= 0).
        lengthscale: the three principal length-scales (positive), in the units of ``domain``;
            ``lengthscale[i]`` goes with column ``i`` of the rotation matrix.
        rotation: axis-angle vector ``(3,)`` of the rotation, or ``None`` (default) for a Haar-uniform random
            rotation drawn from ``seed``.
        nu: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default 2.5).
        noise_std: observation noise standard deviation (>= 0; default 0.05, 5% of the default signal).
        signal_std: standard deviation of the field (> 0; default 1).
        seed: seed of a private ``torch.Generator``.
        dtype: dtype of the returned tensors, ``torch.float64`` (default) or ``torch.float32`` (the draw is
            always computed in float64, so both give the same data up to rounding).
        domain: ``(low, high)`` bounds of the cube (default the unit cube).

    Returns:
        a :class:`SyntheticField`.

    Raises:
        ValueError: for non-positive or wrongly shaped length-scales, a rotation not of shape ``(3,)``, counts
            below their minimum or above :data:`MAX_FIELD_POINTS` in total, negative noise, non-positive signal,
            an unsupported ``nu`` or an empty domain.
        TypeError: for non-integer counts or seed, or an unsupported dtype.

    Example:
        >>> field = make_rotated_field(n_train=50, n_test=20, seed=3)
        >>> field.train_X.shape, field.train_Y.shape, field.test_Y.shape
        (torch.Size([50, 3]), torch.Size([50, 1]), torch.Size([20, 1]))
        >>> bool(torch.allclose(field.rotation_matrix, so3.exp_map(field.rotation)))
        True
    """
    return _make_field(n_train, n_test, lengthscale, rotation, nu, noise_std, signal_std, seed, dtype, domain)


def make_axis_aligned_field(
    n_train: int = 400,
    n_test: int = 400,
    *,
    lengthscale: Sequence[float] | Tensor = DEFAULT_FIELD_LENGTHSCALE,
    nu: float | None = 2.5,
    noise_std: float = 0.05,
    signal_std: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    domain: tuple[float, float] = (0.0, 1.0),
) -> SyntheticField:
    """Like :func:`make_rotated_field` with rotation 0: the principal directions are the coordinate axes.

    The case where an ARD kernel is already correct; an SO(3) kernel should match it.

    Args:
        n_train: number of training points (>= 1).
        n_test: number of held-out points (>= 0).
        lengthscale: length-scales along the x, y and z axes.
        nu: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default 2.5).
        noise_std: observation noise standard deviation (>= 0).
        signal_std: standard deviation of the field (> 0).
        seed: seed of a private ``torch.Generator``.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        domain: ``(low, high)`` bounds of the cube.

    Returns:
        a :class:`SyntheticField` with ``rotation == 0`` and ``rotation_matrix == I``.

    Example:
        >>> field = make_axis_aligned_field(n_train=30, n_test=10)
        >>> field.rotation
        tensor([0., 0., 0.], dtype=torch.float64)
    """
    return _make_field(n_train, n_test, lengthscale, (0.0, 0.0, 0.0), nu, noise_std, signal_std, seed, dtype, domain)


# ------------------------------------------------------------------------------------------ real data
# The oil-sands drill holes (pygeostat 1.2.0, MIT; vendored with its notice in gpytorch_so3/data/, checksum-verified
# on load) live in gpytorch_so3._oilsands and are re-exported here, leaving the synthetic section above untouched.
from gpytorch_so3._oilsands import (  # noqa: E402
    OILSANDS_COLUMNS,
    OILSANDS_SHA256,
    DrillHoleData,
    hole_folds,
    load_oilsands,
)

__all__ += ["OILSANDS_COLUMNS", "OILSANDS_SHA256", "DrillHoleData", "hole_folds", "load_oilsands"]


# ------------------------------------------------------------------------------------------ 2-D views (issue 17)
@dataclass(frozen=True, eq=False)
class Oilsands2D:
    """A 2-D view of the oil-sands drill holes: a map of per-hole averages or a vertical section.

    Attributes:
        coordinates: ``n x 2`` in metres: (East, North) for a map, (distance along the section, Elevation) for a
            section.
        targets: ``n x 1`` values (per-hole means for a map, samples for a section).
        hole_ids: ``n`` int64 drill-hole number of each row (hold out whole holes with :func:`hole_folds`).
        counts: ``n`` int64 samples averaged into each row (all ones for a section).
        target_name: the column the targets come from.
        axis_names: names of the two coordinates.
        direction: unit (East, North) direction of the section's first axis (the map's first axis: East).
    """

    coordinates: Tensor
    targets: Tensor
    hole_ids: Tensor
    counts: Tensor
    target_name: str
    axis_names: tuple[str, str]
    direction: tuple[float, float]

    def __len__(self) -> int:
        return int(self.coordinates.shape[0])


def oilsands_map(
    target: str = "Bitumen",
    *,
    elevation_range: tuple[float, float] | None = None,
    min_samples: int = 3,
    dtype: torch.dtype = torch.float64,
) -> Oilsands2D:
    """Collar-level map of the oil-sands drill holes: the mean of ``target`` per hole at the hole's (East, North).

    The holes are vertical, so each hole is one point of a 2-D field. With ``elevation_range=(low, high)`` only the
    samples with ``low <= Elevation <= high`` are averaged (one stratigraphic slab: the layers are nearly flat);
    holes with fewer than ``min_samples`` samples there are dropped.

    Args:
        target: as :func:`load_oilsands` (missing values are dropped before averaging).
        elevation_range: ``(low, high)`` in metres, or ``None`` (the whole hole).
        min_samples: minimum number of samples averaged per hole (``>= 1``).
        dtype: floating dtype of the coordinates and targets.

    Returns:
        an :class:`Oilsands2D` with one row per kept hole, ``axis_names = ("East", "North")``.

    Raises:
        ValueError: bad ``elevation_range`` or ``min_samples``, or no hole left.

    Example:
        >>> m = oilsands_map(min_samples=1)
        >>> len(m), tuple(m.coordinates.shape), m.axis_names
        (280, (280, 2), ('East', 'North'))
        >>> len(oilsands_map(elevation_range=(200.0, 230.0)))  # holes with >= 3 samples in the slab
        274
    """
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples must be an int >= 1, got {min_samples!r}")
    data = load_oilsands(target=target, dtype=torch.float64)
    keep = torch.ones(len(data), dtype=torch.bool)
    if elevation_range is not None:
        low, high = (float(v) for v in elevation_range)
        if not low < high:
            raise ValueError(f"elevation_range must be (low, high) with low < high, got {elevation_range!r}")
        z = data.coordinates[:, 2]
        keep = (z >= low) & (z <= high)
    holes, inverse = torch.unique(data.hole_ids[keep], return_inverse=True)
    k = holes.numel()
    counts = torch.zeros(k, dtype=torch.int64).index_add_(0, inverse, torch.ones_like(inverse))
    sums = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, data.targets[keep, 0])
    xy = torch.zeros(k, 2, dtype=torch.float64).index_add_(0, inverse, data.coordinates[keep, :2])
    ok = counts >= min_samples
    if not bool(ok.any()):
        raise ValueError(f"no hole has {min_samples} or more samples in elevation_range {elevation_range!r}")
    n = counts[ok].to(torch.float64)
    return Oilsands2D(
        coordinates=(xy[ok] / n.unsqueeze(-1)).to(dtype),
        targets=(sums[ok] / n).unsqueeze(-1).to(dtype),
        hole_ids=holes[ok],
        counts=counts[ok],
        target_name=data.target_name,
        axis_names=("East", "North"),
        direction=(1.0, 0.0),
    )


def oilsands_section(
    target: str = "Bitumen",
    *,
    azimuth: float | None = None,
    half_width: float = 250.0,
    dtype: torch.dtype = torch.float64,
) -> Oilsands2D:
    """Vertical section through the oil-sands drill holes: (distance along the section, Elevation) of every sample.

    The section line passes through the centroid of the collars with direction ``(sin az, cos az)`` in
    (East, North), the azimuth ``az`` measured clockwise from North; ``azimuth=None`` takes the dominant horizontal
    direction of the collars (their leading principal axis). Holes whose collar lies within ``half_width`` metres
    of the line are projected onto it; the first coordinate is the signed distance along the line from the
    centroid.

    Args:
        target: as :func:`load_oilsands`.
        azimuth: section azimuth in degrees clockwise from North, or ``None`` (principal axis of the collars).
        half_width: corridor half-width in metres (``> 0``).
        dtype: floating dtype of the coordinates and targets.

    Returns:
        an :class:`Oilsands2D`, one row per sample, ``axis_names = ("Distance", "Elevation")``.

    Raises:
        ValueError: bad ``half_width``, or no hole in the corridor.

    Example:
        >>> s = oilsands_section(half_width=150.0)
        >>> s.axis_names, s.coordinates.shape[1], bool(s.counts.eq(1).all())
        (('Distance', 'Elevation'), 2, True)
    """
    half_width = _check_scalar("half_width", half_width, positive=True)
    data = load_oilsands(target=target, dtype=torch.float64)
    xy = data.coordinates[:, :2]
    holes, inverse = torch.unique(data.hole_ids, return_inverse=True)
    cnt = torch.zeros(holes.numel(), dtype=torch.float64).index_add_(
        0, inverse, torch.ones(len(data), dtype=torch.float64)
    )
    collars = torch.zeros(holes.numel(), 2, dtype=torch.float64).index_add_(0, inverse, xy) / cnt.unsqueeze(-1)
    centre = collars.mean(0)
    if azimuth is None:
        _, vecs = torch.linalg.eigh(torch.cov((collars - centre).T))
        u = vecs[:, -1]
        u = u if float(u[1]) >= 0 else -u  # point northwards
    else:
        a = math.radians(_check_scalar("azimuth", azimuth, positive=False))
        u = torch.tensor([math.sin(a), math.cos(a)], dtype=torch.float64)
    normal = torch.stack([-u[1], u[0]])
    across = (xy - centre) @ normal
    keep = across.abs() <= half_width
    if not bool(keep.any()):
        raise ValueError(f"no drill hole within half_width = {half_width} m of the section line")
    along = (xy[keep] - centre) @ u
    coords = torch.stack([along, data.coordinates[keep, 2]], -1)
    return Oilsands2D(
        coordinates=coords.to(dtype),
        targets=data.targets[keep].to(dtype),
        hole_ids=data.hole_ids[keep],
        counts=torch.ones(int(keep.sum()), dtype=torch.int64),
        target_name=data.target_name,
        axis_names=("Distance", "Elevation"),
        direction=(float(u[0]), float(u[1])),
    )


__all__ += ["Oilsands2D", "oilsands_map", "oilsands_section"]
