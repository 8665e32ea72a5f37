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
:func:`load_oilsands` (pygeostat's oil-sands data, vendored), and :func:`hole_folds` are at the end, followed by
larger real 3-D data read offline from published wheels (not bundled; see :data:`REAL_DATA_FILES`):
:func:`load_location_plot`, :func:`load_reservoir_data`, :func:`load_claudius`, :func:`load_channels`, and
:func:`load_vti`, a reader of VTK XML ImageData files that needs neither VTK nor PyVista.
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
from gpytorch_so3._validation import check_int
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
    n_train = check_int("n_train", n_train, 1)
    n_test = check_int("n_test", n_test, 0)
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
        TypeError: ``min_samples`` is not an int (numpy integers are accepted).
        ValueError: bad ``elevation_range`` or ``min_samples``, or no hole left.

    Example:
        >>> m = oilsands_map(min_samples=1)
        >>> len(m), tuple(m.coordinates.shape), m.axis_names
        (280, (280, 2), ('East', 'North'))
        >>> len(oilsands_map(elevation_range=(200.0, 230.0)))  # holes with >= 3 samples in the slab
        274
    """
    min_samples = check_int("min_samples", min_samples, 1)
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


# ------------------------------------------------------------------------------------------ larger real data (issue 16)
# Four larger real 3-D data sets, read offline from the published wheels of their packages (never vendored: each
# file is 0.5-3.5 MB, above the ~300 kB we bundle; all four are MIT-licensed, see REAL_DATA_FILES). A file is found,
# in this order, in ``source`` (a wheel, the bare file or a directory holding either), in the installed package
# (located with importlib.util.find_spec, which does not run the package's __init__: importing pyvista would
# import VTK, and pygeostat imports numba and matplotlib), and in the directories of $GPYTORCH_SO3_DATA.
import base64 as _base64  # noqa: E402
import csv as _csv  # noqa: E402
import hashlib as _hashlib  # noqa: E402
import importlib.metadata as _metadata  # noqa: E402
import importlib.util as _importlib_util  # noqa: E402
import io as _io  # noqa: E402
import lzma as _lzma  # noqa: E402
import os as _os  # noqa: E402
import zipfile as _zipfile  # noqa: E402
import zlib as _zlib  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from xml.etree import ElementTree as _ElementTree  # noqa: E402

import numpy as _np  # noqa: E402

#: Environment variable: directories (separated by ``os.pathsep``) searched for the wheels of
#: :data:`REAL_DATA_FILES` (``pip download --no-deps pygeostat==1.2.0 -d DIR``) or for the bare data files.
REAL_DATA_ENV = "GPYTORCH_SO3_DATA"


@dataclass(frozen=True)
class RealDataFile:
    """Provenance of one real data file read from a published wheel (see :data:`REAL_DATA_FILES`).

    Attributes:
        distribution: the PyPI distribution that ships the file.
        version: the version whose file the loaders expect (its SHA-256 is :attr:`sha256`).
        package: the import name whose directory holds the file once the distribution is installed.
        wheel: the wheel's file name on PyPI (``pip download --no-deps`` saves it under this name).
        member: the file's path inside the wheel (and under ``site-packages``).
        sha256: SHA-256 of the file (it matches the wheel's ``RECORD`` entry).
        size: the file's size in bytes.
        licence: the distribution's licence (from the wheel's metadata and licence file).
        copyright: the copyright line of that licence file.

    Example:
        >>> f = REAL_DATA_FILES["channels"]
        >>> f.distribution, f.version, f.licence
        ('pyvista', '0.49.1', 'MIT')
        >>> f.download_command("wheels")
        'pip download --no-deps pyvista==0.49.1 -d wheels'
    """

    distribution: str
    version: str
    package: str
    wheel: str
    member: str
    sha256: str
    size: int
    licence: str
    copyright: str

    @property
    def filename(self) -> str:
        """The file's base name (what to look for in a directory)."""
        return self.member.rsplit("/", 1)[-1]

    def download_command(self, directory: str = ".") -> str:
        """The ``pip download`` command that fetches the wheel (about 0.5-3 MB, no dependencies) into ``directory``."""
        return f"pip download --no-deps {self.distribution}=={self.version} -d {directory}"


_PYGEOSTAT = {
    "distribution": "pygeostat",
    "version": "1.2.0",
    "package": "pygeostat",
    "wheel": "pygeostat-1.2.0-py3-none-any.whl",
    "licence": "MIT",
    "copyright": "Copyright (c) 2025 Center for Computational Geostatistics",
}
#: The larger real data sets: provenance, checksums and licences (checked in the wheels on 2026-11-30).
REAL_DATA_FILES: dict[str, RealDataFile] = {
    "location_plot": RealDataFile(
        **_PYGEOSTAT,
        member="pygeostat/data/example_data/location_plot.dat",
        sha256="89be2725c7416671f6115fce945bfe20c6097638e32fa4ed7ec9ab371577c638",
        size=3_483_946,
    ),
    "reservoir_data": RealDataFile(
        **_PYGEOSTAT,
        member="pygeostat/data/example_data/reservoir_data.dat",
        sha256="31cd9bea1b84e235b07957e181dd6745e452343826b3599c6704c38d82d6cb97",
        size=1_880_647,
    ),
    "claudius": RealDataFile(
        distribution="LoopStructural",
        version="1.9.0",
        package="LoopStructural",
        wheel="loopstructural-1.9.0-py3-none-any.whl",
        member="LoopStructural/datasets/data/claudius.csv",
        sha256="c172d70899fb027d34b515bde50a32c0602ce488c464df532f9bd50f1604b545",
        size=1_347_580,
        licence="MIT",
        copyright="Copyright (c) 2020 Lachlan Grose",
    ),
    "channels": RealDataFile(
        distribution="pyvista",
        version="0.49.1",
        package="pyvista",
        wheel="pyvista-0.49.1-py3-none-any.whl",
        member="pyvista/examples/channels.vti",
        sha256="21b7873cc9b555286565c59a84c65c1bbf8b3b7e6332027e82d81bf51268f41d",
        size=522_284,
        licence="MIT",
        copyright="Copyright (c) 2017-2026 The PyVista Developers",
    ),
}

#: Columns of pygeostat's ``location_plot.dat``, in order.
LOCATION_PLOT_COLUMNS = (
    "HoleID",
    "X",
    "Y",
    "Elevation",
    "from",
    "to",
    "RockType",
    "Prop1-Phi",
    "Prop2-Vsh",
    "Prop3-Kv",
    "Prop4-Kh",
    "Prop5-Sw",
)
#: Columns of pygeostat's ``reservoir_data.dat``, in order.
RESERVOIR_DATA_COLUMNS = (
    "HoleID",
    "Easting",
    "Northing",
    "From",
    "To",
    "Elevation",
    "Lithofacies",
    "Phi",
    "Vsh",
    "Kv",
    "Sw",
)
#: Numeric columns of LoopStructural's ``claudius.csv`` kept by :func:`load_claudius` (the file also has an
#: unnamed row index and ``feature_name``, which is ``"strati"`` on every row).
CLAUDIUS_COLUMNS = ("X", "Y", "Z", "val", "nx", "ny", "nz")
_CLAUDIUS_HEADER = ("", "X", "Y", "Z", "val", "feature_name", "nx", "ny", "nz")


def _file_error(name: str) -> FileNotFoundError:
    f = REAL_DATA_FILES[name]
    return FileNotFoundError(
        f"{f.filename} ({f.distribution} {f.version}, {f.licence}) not found. Get the wheel (no install, "
        f"no dependencies): `{f.download_command('DIR')}`, then pass source='DIR' (or the wheel's path) or set "
        f"{REAL_DATA_ENV}=DIR; or install the package: `pip install {f.distribution}=={f.version}` "
        "(or the extra gpytorch-so3[realdata])"
    )


def _read_from(path: _Path, f: RealDataFile) -> bytes | None:
    """The file's bytes from a wheel, the bare file or a directory holding either; ``None`` if not there."""
    if path.is_dir():
        wheels = [c for c in path.iterdir() if c.name.lower() == f.wheel.lower()]  # PyPI spells names differently
        for candidate in (*wheels, path / f.filename, path / f.member):
            if candidate.is_file():
                return _read_from(candidate, f)
        return None
    if not path.is_file():
        return None
    if _zipfile.is_zipfile(path):
        with _zipfile.ZipFile(path) as z:
            try:
                return z.read(f.member)
            except KeyError:
                raise ValueError(f"{path} is a zip file but does not contain {f.member} (expected {f.wheel})") from None
    return path.read_bytes()


def _installed_file(f: RealDataFile) -> _Path | None:
    """Path of the file inside the installed package, found without importing the package (or ``None``)."""
    try:
        spec = _importlib_util.find_spec(f.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        p = _Path(location).joinpath(*f.member.split("/")[1:])
        if p.is_file():
            return p
    return None


def _real_bytes(name: str, source: str | _os.PathLike | None, verify: bool) -> tuple[bytes, str]:
    """The bytes of ``REAL_DATA_FILES[name]`` and where they came from (see the section comment for the order)."""
    if not isinstance(verify, bool):
        raise TypeError(f"verify must be a bool, got {type(verify).__name__}")
    f = REAL_DATA_FILES[name]
    raw: bytes | None = None
    origin = ""
    if source is not None:
        if not isinstance(source, (str, _os.PathLike)):
            raise TypeError(f"source must be None or a path (str or os.PathLike), got {type(source).__name__}")
        p = _Path(source)
        if not p.exists():
            raise FileNotFoundError(f"source {str(p)!r} does not exist; {_file_error(name)}")
        raw, origin = _read_from(p, f), str(p)
        if raw is None:
            raise FileNotFoundError(f"neither {f.wheel} nor {f.filename} in directory {str(p)!r}; {_file_error(name)}")
    else:
        installed = _installed_file(f)
        if installed is not None:
            raw, origin = installed.read_bytes(), str(installed)
            try:
                origin += f" (installed {f.distribution} {_metadata.version(f.distribution)})"
            except _metadata.PackageNotFoundError:
                pass
        else:
            for d in filter(None, _os.environ.get(REAL_DATA_ENV, "").split(_os.pathsep)):
                raw = _read_from(_Path(d), f) if _Path(d).is_dir() else None
                if raw is not None:
                    origin = d
                    break
        if raw is None:
            raise _file_error(name)
    if verify:
        digest = _hashlib.sha256(raw).hexdigest()
        if digest != f.sha256:
            raise OSError(
                f"{f.filename} from {origin} is not the {f.distribution} {f.version} file: SHA-256 {digest}, expected "
                f"{f.sha256}. Use that version (`{f.download_command('DIR')}`) or pass verify=False to read "
                "another copy in the same format"
            )
    return raw, origin


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    return dtype


def _parse_gslib(raw: bytes, origin: str, expected: tuple[str, ...]) -> tuple[str, _np.ndarray]:
    """Title and ``n x ncol`` float64 rows of a GSLIB/GeoEAS file whose column names must equal ``expected``."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"{origin}: not a GSLIB/GeoEAS text file (non-ASCII byte at {e.start})") from None
    lines = text.splitlines()
    try:
        ncol = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise ValueError(
            f"{origin}: not a GSLIB/GeoEAS file: line 2 must start with the number of columns, got "
            f"{lines[1] if len(lines) > 1 else 'nothing'!r}"
        ) from None
    names = tuple(line.strip() for line in lines[2 : 2 + ncol])
    if names != expected:
        raise ValueError(f"{origin}: expected the {len(expected)} columns {expected}, got {ncol}: {names}")
    body = lines[2 + ncol :]
    tokens = " ".join(body).split()
    try:
        values = _np.array(tokens, dtype=_np.float64)
    except ValueError:
        bad = next(i for i, line in enumerate(body) for t in line.split() if not _is_float(t))
        raise ValueError(f"{origin}: non-numeric value on line {3 + ncol + bad}: {body[bad].strip()!r}") from None
    if values.size == 0 or values.size % ncol:
        bad = next((i for i, line in enumerate(body) if line.strip() and len(line.split()) != ncol), None)
        where = "no data rows" if bad is None else f"line {3 + ncol + bad} has {len(body[bad].split())} values"
        raise ValueError(f"{origin}: every data row must have {ncol} values; {where}")
    rows = values.reshape(-1, ncol)
    if not _np.isfinite(rows).all():
        raise ValueError(f"{origin}: non-finite values in the data rows")
    return lines[0].strip(), rows


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _pick_target(target: object, choices: dict[str, str]) -> str:
    if not isinstance(target, str) or target.strip().lower() not in choices:
        names = ", ".join(dict.fromkeys(choices.values()))
        raise ValueError(f"unknown target {target!r}; choose one of {names}")
    return choices[target.strip().lower()]


def _drill_holes(
    rows: _np.ndarray, columns: tuple[str, ...], xyz: _np.ndarray, column: str, title: str, dtype: torch.dtype
) -> DrillHoleData:
    t = torch.as_tensor(rows, dtype=dtype)
    return DrillHoleData(
        coordinates=torch.as_tensor(xyz, dtype=dtype),
        targets=t[:, columns.index(column)].unsqueeze(-1).clone(),
        hole_ids=torch.as_tensor(rows[:, 0], dtype=torch.int64),
        target_name=column,
        columns=columns,
        table=t,
        title=title,
    )


_LOCATION_TARGETS = {
    **{c.lower(): c for c in LOCATION_PLOT_COLUMNS[6:]},
    **{c.split("-")[1].lower(): c for c in LOCATION_PLOT_COLUMNS[7:]},
}
_RESERVOIR_TARGETS = {c.lower(): c for c in RESERVOIR_DATA_COLUMNS[6:]}


def load_location_plot(
    target: str = "Phi",
    *,
    source: str | _os.PathLike | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float64,
) -> DrillHoleData:
    r"""Pygeostat's ``location_plot.dat``: 22,517 half-metre samples of five reservoir properties in 220 vertical wells.

    The file (pygeostat 1.2.0, MIT; see :data:`REAL_DATA_FILES`) is not bundled: it is read from ``source``, an
    installed ``pygeostat``, or ``$GPYTORCH_SO3_DATA``. Columns (:data:`LOCATION_PLOT_COLUMNS`): ``HoleID, X, Y,
    Elevation, from, to, RockType, Prop1-Phi, Prop2-Vsh, Prop3-Kv, Prop4-Kh, Prop5-Sw``. The wells are vertical
    (``X``, ``Y`` constant per hole) on a 10 m grid (nearest collar 10-150 m away) over 970 m x 1,040 m; each
    sample is a 0.5 m interval from elevation ``from`` down to ``to`` (311.5-387 m). The file's ``Elevation`` column
    equals ``from + to`` on every row, i.e. *twice* the interval's mid-elevation (values 623.5-773.5), so the
    vertical coordinate returned here is the midpoint ``(from + to) / 2`` (the elevations then span the same
    range as :func:`load_reservoir_data`'s). Units are not stated in the file; metres are assumed throughout.
    Phi (porosity), Vsh (shale volume) and Sw (water saturation) are fractions; Kv and Kh (vertical and
    horizontal permeability, presumably mD) are strongly skewed (0.0001-13,000: model their logarithm);
    RockType is a code 1-5. There are no missing values.

    Args:
        target: ``"Phi"`` (default), ``"Vsh"``, ``"Kv"``, ``"Kh"``, ``"Sw"`` (or the file's names
            ``"Prop1-Phi"`` ...) or ``"RockType"`` (case-insensitive).
        source: a path to the pygeostat 1.2.0 wheel, to ``location_plot.dat`` itself or to a directory holding
            either; ``None`` (default): the installed package, then the directories in ``$GPYTORCH_SO3_DATA``.
        verify: check the file's SHA-256 against pygeostat 1.2.0's (default); ``False`` reads any file in this
            format (the column names are always checked).
        dtype: floating dtype of the returned tensors (``hole_ids`` are int64).

    Returns:
        a :class:`DrillHoleData`: ``coordinates`` ``n x 3`` (X, Y, mid-elevation) in metres, ``targets`` ``n x 1``,
        ``hole_ids`` (220 wells), ``table`` ``n x 12`` with all columns as in the file.

    Raises:
        FileNotFoundError: the file is in none of the places searched (the message gives the ``pip download``
            command).
        OSError: ``verify`` and the checksum differs from pygeostat 1.2.0's.
        ValueError: unknown target, non-floating dtype, or a malformed file (wrong columns, ragged or
            non-numeric rows).

    Example:
        >>> import tempfile, pathlib
        >>> row = "3. 405. 1715. 765.5 383. 382.5 3. 0.27616 0.25081 308.23531 770.19003 0.71988"
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "location_plot.dat"
        >>> _ = path.write_text("\n".join(["data", "12", *LOCATION_PLOT_COLUMNS, row]))
        >>> data = load_location_plot("Kh", source=path, verify=False)  # a one-row file in the same format
        >>> data.coordinates.tolist(), data.targets.tolist(), data.target_name
        ([[405.0, 1715.0, 382.75]], [[770.19003]], 'Prop4-Kh')
        >>> load_location_plot(source=REAL_DATA_FILES["location_plot"].wheel).n_holes  # doctest: +SKIP
        220
    """
    column = _pick_target(target, _LOCATION_TARGETS)
    dtype = _check_dtype(dtype)
    raw, origin = _real_bytes("location_plot", source, verify)
    title, rows = _parse_gslib(raw, origin, LOCATION_PLOT_COLUMNS)
    xyz = _np.column_stack([rows[:, 1], rows[:, 2], 0.5 * (rows[:, 4] + rows[:, 5])])
    return _drill_holes(rows, LOCATION_PLOT_COLUMNS, xyz, column, title, dtype)


def load_reservoir_data(
    target: str = "Phi",
    *,
    source: str | _os.PathLike | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float64,
) -> DrillHoleData:
    r"""Pygeostat's ``reservoir_data.dat``: 11,705 one-metre samples of four reservoir properties in 230 vertical wells.

    The file (pygeostat 1.2.0, MIT; see :data:`REAL_DATA_FILES`) is not bundled; it is found as in
    :func:`load_location_plot`. Columns (:data:`RESERVOIR_DATA_COLUMNS`): ``HoleID, Easting, Northing, From, To,
    Elevation, Lithofacies, Phi, Vsh, Kv, Sw``. The wells are vertical (Easting, Northing constant per hole; nearest
    collar 9.5-124 m away) over 970 m x 1,080 m; ``From``/``To`` are depths along the hole (1 m intervals, 50-117 m)
    and ``Elevation`` (315.6-385.8 m) decreases down the hole with ``Elevation + From`` constant per well (the
    collar elevation, 423-439 m). Coordinates are (Easting, Northing, Elevation), in metres (assumed: the file
    states no units). Phi, Vsh and Sw are fractions, Kv a skewed permeability (0.0001-10,900), Lithofacies a code
    1-5; no missing values.

    Args:
        target: ``"Phi"`` (default), ``"Vsh"``, ``"Kv"``, ``"Sw"`` or ``"Lithofacies"`` (case-insensitive).
        source: as in :func:`load_location_plot` (the same pygeostat 1.2.0 wheel).
        verify: check the SHA-256 against pygeostat 1.2.0's file (default).
        dtype: floating dtype of the returned tensors.

    Returns:
        a :class:`DrillHoleData` (``table`` ``n x 11``, all columns as in the file).

    Raises:
        FileNotFoundError: the file is in none of the places searched.
        OSError: ``verify`` and the checksum differs.
        ValueError: unknown target, non-floating dtype or a malformed file.

    Example:
        >>> import tempfile, pathlib
        >>> row = "3. 405.63 2135.75 50.16 51.16 376.19 3. 0.24351 0.29707 125.12996 0.29722"
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "reservoir_data.dat"
        >>> _ = path.write_text("\n".join(["data", "11", *RESERVOIR_DATA_COLUMNS, row, row]))
        >>> data = load_reservoir_data("Sw", source=path, verify=False)
        >>> len(data), data.coordinates[0].tolist(), data.column("Kv")[0].item()
        (2, [405.63, 2135.75, 376.19], 125.12996)
    """
    column = _pick_target(target, _RESERVOIR_TARGETS)
    dtype = _check_dtype(dtype)
    raw, origin = _real_bytes("reservoir_data", source, verify)
    title, rows = _parse_gslib(raw, origin, RESERVOIR_DATA_COLUMNS)
    return _drill_holes(rows, RESERVOIR_DATA_COLUMNS, rows[:, [1, 2, 5]], column, title, dtype)


def load_claudius(
    *,
    source: str | _os.PathLike | None = None,
    verify: bool = True,
    dropna: bool = True,
    dtype: torch.dtype = torch.float64,
) -> DrillHoleData:
    r"""LoopStructural's Claudius data: 21,023 points on four horizons picked in a 3-D seismic survey (+ 25 normals).

    The file ``claudius.csv`` (LoopStructural 1.9.0, MIT; see :data:`REAL_DATA_FILES`) is not bundled; it is found
    as in :func:`load_location_plot`. Each value row is a point ``(X, Y, Z)`` on one of four interpreted horizons
    with ``val`` its stratigraphic value (0, 60, 250 or 330; 5,219-5,277 points each; ``val`` grows downwards: the
    horizons' mean Z are about -8,850, -9,070, -9,630 and -10,230), so ``val`` as a function of position is a
    layered scalar field: the implicit-modelling problem LoopStructural solves, and one with a strong, tilted
    anisotropy. X and Y are map coordinates (UTM-like eastings/northings; the picks lie on a 12.5 m x 18.77 m
    seismic bin grid over 3.6 km x 5.3 km); Z is negative downwards in the survey's vertical unit (not stated by
    LoopStructural; range -10,640 to -8,680). The file's last 25 rows carry no ``val`` but a unit normal
    ``(nx, ny, nz)`` of the layering (orientation data, mean about ``(-0.04, -0.01, -0.97)``).

    ``hole_ids`` groups the rows by map position (one id per distinct ``(X, Y)``, i.e. per seismic trace;
    there are no drill holes). 16,315 of the 18,355 traces carry a single pick, so :func:`hole_folds` on them is
    close to a random split; for spatially blocked validation build your own groups from the coordinates.

    Args:
        source: a path to the LoopStructural 1.9.0 wheel, to ``claudius.csv`` or to a directory holding either;
            ``None``: the installed package, then ``$GPYTORCH_SO3_DATA``.
        verify: check the SHA-256 against LoopStructural 1.9.0's file (default).
        dropna: drop the 25 orientation rows (no ``val``); with ``False`` they are kept with NaN targets.
        dtype: floating dtype of the returned tensors.

    Returns:
        a :class:`DrillHoleData`: ``coordinates`` ``n x 3`` (X, Y, Z), ``targets`` ``n x 1`` (``val``),
        ``table`` ``n x 7`` with the columns :data:`CLAUDIUS_COLUMNS` (NaN where the file is empty).

    Raises:
        FileNotFoundError: the file is in none of the places searched.
        OSError: ``verify`` and the checksum differs.
        ValueError: non-floating dtype or a malformed file (wrong header, ragged or non-numeric rows, missing
            coordinates).

    Example:
        >>> import tempfile, pathlib
        >>> text = "\n".join([",X,Y,Z,val,feature_name,nx,ny,nz", "0,1,2,-3,250,strati,,,", "1,1,2,-4,,strati,0,0,-1"])
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "claudius.csv"
        >>> _ = path.write_text(text)
        >>> load_claudius(source=path, verify=False).targets
        tensor([[250.]], dtype=torch.float64)
        >>> load_claudius(source=path, verify=False, dropna=False).column("nz")
        tensor([nan, -1.], dtype=torch.float64)
    """
    dtype = _check_dtype(dtype)
    if not isinstance(dropna, bool):
        raise TypeError(f"dropna must be a bool, got {type(dropna).__name__}")
    raw, origin = _real_bytes("claudius", source, verify)
    try:
        reader = _csv.reader(_io.StringIO(raw.decode("utf-8")))
        header = tuple(next(reader))
    except (UnicodeDecodeError, StopIteration, _csv.Error) as e:
        raise ValueError(f"{origin}: not a CSV file with a header ({e})") from None
    if header != _CLAUDIUS_HEADER:
        raise ValueError(f"{origin}: expected the CSV header {','.join(_CLAUDIUS_HEADER)!r}, got {','.join(header)!r}")
    keep = [_CLAUDIUS_HEADER.index(c) for c in CLAUDIUS_COLUMNS]
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(_CLAUDIUS_HEADER):
            raise ValueError(f"{origin}: line {lineno} has {len(row)} fields, expected {len(_CLAUDIUS_HEADER)}")
        try:
            rows.append([float(row[i]) if row[i].strip() else math.nan for i in keep])
        except ValueError:
            raise ValueError(f"{origin}: non-numeric value on line {lineno}: {','.join(row)!r}") from None
    table = _np.array(rows, dtype=_np.float64).reshape(-1, len(CLAUDIUS_COLUMNS))
    if table.shape[0] == 0 or not _np.isfinite(table[:, :3]).all():
        raise ValueError(f"{origin}: no data rows, or rows without finite X, Y, Z")
    _, trace = _np.unique(table[:, :2], axis=0, return_inverse=True)
    if dropna:
        ok = ~_np.isnan(table[:, 3])
        table, trace = table[ok], trace[ok]
    t = torch.as_tensor(table, dtype=dtype)
    return DrillHoleData(
        coordinates=t[:, :3].clone(),
        targets=t[:, 3:4].clone(),
        hole_ids=torch.as_tensor(trace.reshape(-1), dtype=torch.int64),
        target_name="val",
        columns=CLAUDIUS_COLUMNS,
        table=t,
        title="LoopStructural claudius.csv (horizons picked in 3-D seismic)",
    )


__all__ += [
    "CLAUDIUS_COLUMNS",
    "LOCATION_PLOT_COLUMNS",
    "REAL_DATA_ENV",
    "REAL_DATA_FILES",
    "RESERVOIR_DATA_COLUMNS",
    "RealDataFile",
    "load_claudius",
    "load_location_plot",
    "load_reservoir_data",
]


# ---------------------------------------------------------------------- VTK XML ImageData (.vti) without VTK
_VTK_TYPES = {
    "Int8": "i1",
    "UInt8": "u1",
    "Int16": "i2",
    "UInt16": "u2",
    "Int32": "i4",
    "UInt32": "u4",
    "Int64": "i8",
    "UInt64": "u8",
    "Float32": "f4",
    "Float64": "f8",
}
_VTK_DECOMPRESS = {"vtkZLibDataCompressor": _zlib.decompress, "vtkLZMADataCompressor": _lzma.decompress}


@dataclass(frozen=True, eq=False)
class GridCells:
    """Cells of a regular 3-D grid (VTK ImageData): cell-centre coordinates and one cell array.

    Attributes:
        coordinates: ``n x 3`` cell centres, ``origin + direction @ (spacing * (ijk + 0.5))``.
        targets: ``n x 1`` values of the array (codes such as facies are exact in float32 and float64).
        cell_ids: ``n`` int64 flat index ``i + nx * (j + ny * k)`` of each cell in the full grid (VTK's order, x
            fastest), ``i, j, k`` counted from the grid's first cell.
        target_name: the array's name.
        shape: ``(nx, ny, nz)`` cells of the full grid.
        origin: the grid's origin (the corner of its first cell).
        spacing: cell sizes along the grid axes.
        direction: ``3 x 3`` rows of the grid-to-world rotation (identity unless the file has ``Direction``).
    """

    coordinates: Tensor
    targets: Tensor
    cell_ids: Tensor
    target_name: str
    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]

    def __len__(self) -> int:
        return int(self.coordinates.shape[0])

    @property
    def indices(self) -> Tensor:
        """``n x 3`` int64 grid indices ``(i, j, k)`` of the cells."""
        nx, ny, _ = self.shape
        c = self.cell_ids
        return torch.stack([c % nx, (c // nx) % ny, c // (nx * ny)], -1)


def _b64_chars(n_bytes: int) -> int:
    return 4 * ((n_bytes + 2) // 3)


def _vtk_binary(data: bytes, *, encoded: bool, header: _np.dtype, compressor: str | None, where: str) -> bytes:
    """Raw bytes of one binary DataArray (header + payload; base64 or raw; blocks zlib/lzma-compressed or not).

    Layout (VTK XML format): uncompressed ``[nbytes][data]``; compressed ``[nblocks, blocksize, lastsize,
    csize_1..csize_nblocks][block_1]...``, all header integers of ``header_type``. In base64 the compressed
    header is encoded on its own, then the blocks; an uncompressed header and its data are encoded together by
    VTK (and separately by some writers: both are read).
    """
    hs = header.itemsize

    def ints(b: bytes, count: int) -> _np.ndarray:
        if len(b) < count * hs:
            raise ValueError(f"{where}: truncated binary header")
        return _np.frombuffer(b[: count * hs], dtype=header).astype(_np.int64)

    def b64(s: bytes) -> bytes:
        try:
            return _base64.b64decode(s, validate=True)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: invalid base64 data ({e})") from None

    if encoded:
        data = b"".join(data.split())
    try:
        if compressor is None:
            if not encoded:
                n = int(ints(data, 1)[0])
                out = data[hs : hs + n]
            elif data[_b64_chars(hs) - 1 : _b64_chars(hs)] == b"=":  # header encoded on its own
                n = int(ints(b64(data[: _b64_chars(hs)]), 1)[0])
                out = b64(data[_b64_chars(hs) : _b64_chars(hs) + _b64_chars(n)])
            else:
                first = b64(data[: _b64_chars(hs)])
                n = int(ints(first, 1)[0])
                out = b64(data[: _b64_chars(hs + n)])[hs : hs + n]
            if len(out) != n:
                raise ValueError(f"{where}: binary data shorter than its header says ({len(out)} < {n} bytes)")
            return out
        decompress = _VTK_DECOMPRESS[compressor]
        if encoded:
            nb = int(ints(b64(data[: _b64_chars(3 * hs)]), 3)[0])
            head_chars = _b64_chars((3 + nb) * hs)
            head = ints(b64(data[:head_chars]), 3 + nb)
            payload = b64(data[head_chars : head_chars + _b64_chars(int(head[3:].sum()))])
        else:
            nb = int(ints(data, 3)[0])
            head = ints(data, 3 + nb)
            payload = data[(3 + nb) * hs : (3 + nb) * hs + int(head[3:].sum())]
        block, last = int(head[1]), int(head[2])
        sizes = head[3:]
        if int(sizes.sum()) > len(payload):
            raise ValueError(f"{where}: compressed data shorter than its header says")
        parts, pos = [], 0
        for i, s in enumerate(sizes.tolist()):
            chunk = decompress(payload[pos : pos + s])
            expected = last if (i == nb - 1 and last) else block
            if len(chunk) != expected:
                raise ValueError(f"{where}: block {i} inflates to {len(chunk)} bytes, header says {expected}")
            parts.append(chunk)
            pos += s
        return b"".join(parts)
    except (_zlib.error, _lzma.LZMAError) as e:
        raise ValueError(f"{where}: corrupt compressed data ({e})") from None


def _parse_vti(raw: bytes, origin: str, array: str | None) -> tuple[_np.ndarray, dict]:
    """The named (or active/first) cell array of a VTK XML ImageData file, flat in VTK order, and the geometry."""
    start = raw.find(b"<AppendedData")
    xml_part = raw if start < 0 else raw[:start] + b"</VTKFile>"
    try:
        root = _ElementTree.fromstring(xml_part)
    except _ElementTree.ParseError as e:
        raise ValueError(f"{origin}: not a VTK XML file ({e})") from None
    if root.tag != "VTKFile" or root.get("type") != "ImageData":
        raise ValueError(f"{origin}: not VTK XML ImageData (.vti): root <{root.tag} type={root.get('type')!r}>")
    order = {"LittleEndian": "<", "BigEndian": ">"}.get(root.get("byte_order", "LittleEndian"))
    header_type = root.get("header_type", "UInt32")
    compressor = root.get("compressor") or None
    if order is None or header_type not in ("UInt32", "UInt64"):
        raise ValueError(f"{origin}: unsupported byte_order {root.get('byte_order')!r} or header_type {header_type!r}")
    if compressor is not None and compressor not in _VTK_DECOMPRESS:
        raise ValueError(f"{origin}: unsupported compressor {compressor!r} (supported: {', '.join(_VTK_DECOMPRESS)})")
    header = _np.dtype(order + _VTK_TYPES[header_type])
    image = root.find("ImageData")
    pieces = [] if image is None else image.findall("Piece")
    if image is None or len(pieces) != 1:
        raise ValueError(f"{origin}: expected one <ImageData> with one <Piece>, got {len(pieces)} pieces")
    try:
        extent = [int(v) for v in image.get("WholeExtent", "").split()]
        piece_extent = [int(v) for v in (pieces[0].get("Extent") or image.get("WholeExtent", "")).split()]
        org = [float(v) for v in image.get("Origin", "0 0 0").split()]
        spacing = [float(v) for v in image.get("Spacing", "1 1 1").split()]
        direction = [float(v) for v in image.get("Direction", "1 0 0 0 1 0 0 0 1").split()]
    except ValueError:
        raise ValueError(f"{origin}: non-numeric WholeExtent/Origin/Spacing/Direction") from None
    if len(extent) != 6 or piece_extent != extent or len(org) != 3 or len(spacing) != 3 or len(direction) != 9:
        raise ValueError(
            f"{origin}: need a 6-value WholeExtent equal to the piece's Extent, 3-value Origin and Spacing and a "
            f"9-value Direction; got {extent}, {piece_extent}, {org}, {spacing}, {len(direction)} values"
        )
    shape = tuple(max(extent[2 * a + 1] - extent[2 * a], 1) for a in range(3))
    n_cells = shape[0] * shape[1] * shape[2]
    cell_data = pieces[0].find("CellData")
    arrays = [] if cell_data is None else cell_data.findall("DataArray")
    names = [a.get("Name") for a in arrays]
    if array is None:
        active = None if cell_data is None else cell_data.get("Scalars")
        chosen = next((a for a in arrays if a.get("Name") == active), arrays[0] if arrays else None)
    else:
        chosen = next((a for a in arrays if a.get("Name") == array), None)
    if chosen is None:
        raise ValueError(f"{origin}: no cell array {array!r}; cell arrays: {names} (point data is not read)")
    name = chosen.get("Name") or ""
    where = f"{origin}: array {name!r}"
    vtype, fmt = chosen.get("type"), chosen.get("format", "ascii")
    if vtype not in _VTK_TYPES:
        raise ValueError(f"{where}: unsupported type {vtype!r}")
    if chosen.get("NumberOfComponents", "1") != "1":
        raise ValueError(f"{where}: has {chosen.get('NumberOfComponents')} components; only scalar arrays are read")
    dt = _np.dtype(order + _VTK_TYPES[vtype])
    if fmt == "ascii":
        try:
            values = _np.array((chosen.text or "").split(), dtype=dt)
        except ValueError:
            raise ValueError(f"{where}: non-numeric ascii data") from None
    elif fmt in ("binary", "appended"):
        if fmt == "binary":
            data, encoded = (chosen.text or "").encode("ascii"), True
        else:
            if start < 0:
                raise ValueError(f"{where}: format='appended' but the file has no <AppendedData>")
            tag_end = raw.index(b">", start)
            tag = _ElementTree.fromstring(raw[start : tag_end + 1].rstrip(b">/") + b"/>")
            encoding = tag.get("encoding", "raw")
            if encoding not in ("raw", "base64"):
                raise ValueError(f"{where}: unsupported AppendedData encoding {encoding!r}")
            underscore = raw.find(b"_", tag_end)
            if underscore < 0:
                raise ValueError(f"{where}: <AppendedData> without its leading '_'")
            data, encoded = raw[underscore + 1 + int(chosen.get("offset", "0")) :], encoding == "base64"
        values = _np.frombuffer(
            _vtk_binary(data, encoded=encoded, header=header, compressor=compressor, where=where), dtype=dt
        )
    else:
        raise ValueError(f"{where}: unsupported format {fmt!r}")
    if values.size != n_cells:
        raise ValueError(f"{where}: {values.size} values for {n_cells} cells (extent {extent})")
    geometry = {
        "shape": shape,
        "extent": extent,
        "origin": org,
        "spacing": spacing,
        "direction": direction,
        "name": name,
    }
    return values.astype(values.dtype.newbyteorder("="), copy=False), geometry


def _check_stride(stride: object) -> tuple[int, int, int]:
    message = f"stride must be a positive int or three positive ints, got {stride!r}"
    if isinstance(stride, numbers.Integral) and not isinstance(stride, bool):
        s: tuple = (stride, stride, stride)
    else:
        try:
            s = tuple(stride)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(message) from None
    if len(s) != 3:
        raise ValueError(message)
    try:  # a non-integer is a TypeError (check_int's message), one below 1 keeps the message above
        sx, sy, sz = (check_int("stride", v, 1) for v in s)
    except ValueError:
        raise ValueError(message) from None
    return sx, sy, sz


def _grid_cells(
    values: _np.ndarray, geometry: dict, stride: object, n_points: object, seed: int, dtype: torch.dtype
) -> GridCells:
    sx, sy, sz = _check_stride(stride)
    nx, ny, nz = geometry["shape"]
    flat = (
        (_np.arange(0, nz, sz, dtype=_np.int64)[:, None, None] * ny + _np.arange(0, ny, sy, dtype=_np.int64)[:, None])
        * nx
        + _np.arange(0, nx, sx, dtype=_np.int64)
    ).reshape(-1)
    if n_points is not None:
        n_points = check_int("n_points", n_points, 1)
        if n_points > flat.size:
            raise ValueError(f"n_points = {n_points} exceeds the {flat.size} cells left after stride {stride!r}")
        g = torch.Generator().manual_seed(int(seed))
        pick = torch.randperm(flat.size, generator=g)[:n_points].sort().values.numpy()
        flat = flat[pick]
    ids = torch.from_numpy(flat)
    ijk = torch.stack([ids % nx, (ids // nx) % ny, ids // (nx * ny)], -1).to(torch.float64)
    ext = torch.tensor(geometry["extent"][0::2], dtype=torch.float64)
    degenerate = torch.tensor([geometry["extent"][2 * a + 1] == geometry["extent"][2 * a] for a in range(3)])
    local = (ijk + ext + torch.where(degenerate, 0.0, 0.5)) * torch.tensor(geometry["spacing"], dtype=torch.float64)
    D = torch.tensor(geometry["direction"], dtype=torch.float64).reshape(3, 3)
    xyz = torch.tensor(geometry["origin"], dtype=torch.float64) + local @ D.T
    del ijk, local
    return GridCells(
        coordinates=xyz.to(dtype),
        targets=torch.from_numpy(values[flat]).to(dtype).unsqueeze(-1),
        cell_ids=ids,
        target_name=geometry["name"],
        shape=(nx, ny, nz),
        origin=tuple(geometry["origin"]),
        spacing=tuple(geometry["spacing"]),
        direction=tuple(tuple(geometry["direction"][3 * r : 3 * r + 3]) for r in range(3)),
    )


def load_vti(
    path: str | _os.PathLike,
    *,
    array: str | None = None,
    stride: int | Sequence[int] = 1,
    n_points: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> GridCells:
    """Read one cell array of a VTK XML ImageData file (``.vti``) as points, without VTK or PyVista.

    Supports what VTK and PyVista write for one-piece images: ``ascii``, inline ``binary`` (base64) and
    ``appended`` data (``raw`` or ``base64`` encoding), uncompressed or compressed by VTK's zlib or LZMA
    compressor, ``UInt32``/``UInt64`` headers, either byte order, and an optional ``Direction``. Scalar cell
    arrays only (point data, multi-component arrays, multi-piece files and the LZ4 compressor are refused).

    Args:
        path: the ``.vti`` file.
        array: name of the cell array; ``None``: the active scalars of ``CellData`` (else its first array).
        stride: keep every ``stride``-th cell along each axis, starting at the first (an int, or ``(sx, sy, sz)``).
        n_points: then keep this many cells drawn at random without replacement (seeded; returned in grid order).
        seed: seed of that draw.
        dtype: floating dtype of ``coordinates`` and ``targets``.

    Returns:
        a :class:`GridCells`.

    Raises:
        TypeError: ``stride`` or ``n_points`` is not an int (numpy integers are accepted).
        ValueError: not a supported ImageData file, no such array, malformed or truncated data, bad ``stride`` or
            ``n_points`` (more than the cells left), non-floating dtype.
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> vti = '''<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian">
        ...   <ImageData WholeExtent="0 2 0 1 0 1" Origin="10 20 30" Spacing="2 1 1"><Piece Extent="0 2 0 1 0 1">
        ...     <CellData Scalars="facies"><DataArray type="Int32" Name="facies" format="ascii">3 4</DataArray>
        ...     </CellData></Piece></ImageData></VTKFile>'''
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.vti"
        >>> _ = path.write_text(vti)
        >>> cells = load_vti(path)
        >>> cells.shape, cells.coordinates.tolist(), cells.targets.squeeze(-1).tolist()
        ((2, 1, 1), [[11.0, 20.5, 30.5], [13.0, 20.5, 30.5]], [3.0, 4.0])
    """
    p = _Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    values, geometry = _parse_vti(p.read_bytes(), str(p), array)
    return _grid_cells(values, geometry, stride, n_points, seed, _check_dtype(dtype))


def load_channels(
    *,
    source: str | _os.PathLike | None = None,
    verify: bool = True,
    stride: int | Sequence[int] = 1,
    n_points: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> GridCells:
    """PyVista's ``channels.vti``: 250 x 250 x 100 = 6.25 million cells of channel facies (codes 0-4).

    The file (pyvista 0.49.1, MIT; see :data:`REAL_DATA_FILES`) is not bundled; it is found as in
    :func:`load_location_plot` (an installed ``pyvista`` is located, not imported) and read by :func:`load_vti`:
    no VTK needed. It is a VTK XML image with unit spacing and origin 0 (``WholeExtent 0 250 0 250 0 100``: 251
    x 251 x 101 points) and one ``Int64`` cell array ``facies`` (background 0 and four channel facies 1-4;
    the channels run along y). Coordinates are the cell centres ``(i + 0.5, j + 0.5, k + 0.5)`` in the grid's
    unit (no physical unit is given). A 10^6+ point field: ``stride=2`` leaves 125 x 125 x 50 = 781,250 cells,
    ``n_points`` a random subset. Memory at full size: about 50 MB per float64 column and 50 MB for ``cell_ids``.

    Args:
        source: a path to the pyvista 0.49.1 wheel, to ``channels.vti`` or to a directory holding either;
            ``None``: the installed package, then ``$GPYTORCH_SO3_DATA``.
        verify: check the SHA-256 against pyvista 0.49.1's file (default).
        stride: keep every ``stride``-th cell along each axis (an int or ``(sx, sy, sz)``).
        n_points: then a seeded random subset of this many cells.
        seed: seed of that subset.
        dtype: floating dtype of ``coordinates`` and ``targets`` (the codes are exact in float32).

    Returns:
        a :class:`GridCells` (``target_name == "facies"``; the integer codes: ``cells.targets.squeeze(-1).long()``).

    Raises:
        FileNotFoundError: the file is in none of the places searched.
        OSError: ``verify`` and the checksum differs.
        TypeError: ``stride`` or ``n_points`` is not an int (numpy integers are accepted).
        ValueError: malformed file, bad ``stride``/``n_points``, non-floating dtype.

    Example:
        >>> REAL_DATA_FILES["channels"].download_command("wheels")  # then source="wheels" or GPYTORCH_SO3_DATA=wheels
        'pip download --no-deps pyvista==0.49.1 -d wheels'
        >>> cells = load_channels(stride=2, source="wheels")  # doctest: +SKIP
        >>> len(cells), cells.shape, cells.targets.unique().tolist()  # doctest: +SKIP
        (781250, (250, 250, 100), [0.0, 1.0, 2.0, 3.0, 4.0])
    """
    dtype = _check_dtype(dtype)
    raw, origin = _real_bytes("channels", source, verify)
    values, geometry = _parse_vti(raw, origin, "facies")
    return _grid_cells(values, geometry, stride, n_points, seed, dtype)


__all__ += ["GridCells", "load_channels", "load_vti"]
