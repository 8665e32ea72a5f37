r"""Geoscience conventions: azimuth/dip of principal directions and GSTools/PyKrige parameter converters.

Our kernels write the anisotropy as principal length-scales ``l`` (3,) and a rotation ``R = exp(hat(w))``
(columns of ``R`` are the principal directions), ``M = R diag(l)^-2 R^T``. Coordinates are
``(x, y, z) = (East, North, Up)``.

**Azimuth and dip.** An axis (a line: ``u`` and ``-u`` are the same) is reported by its *azimuth*, clockwise
from North (+y) in degrees, and its *dip* (plunge), the angle below the horizontal in ``[0, 90]``; the axis is
oriented downward to read them. Ranges are listed major (longest) first, with the ratios
``semi-major / major`` and ``minor / major``.

**GSTools** (checked numerically against ``gstools.tools.geometric`` 1.7): ``CovModel(dim=3, len_scale=L,
anis=(e_y, e_z), angles=(a, b, g))`` has main axes ``L * (1, e_y, e_z)`` along the columns of
``R = Rx(g) Ry(b) Rz(a)``, which is scipy's ``Rotation.from_euler("zyx", (a, b, g))`` (lower case: extrinsic
axes), whatever the "yaw/pitch/roll" wording of its docs. The main axis is made the longest on export. The
correlation families correspond as follows (``s`` is GSTools' ``rescale``; defaults used on export), for our
length-scale ``l`` and GSTools' ``len_scale`` ``L``:

* ``nu=None`` (RBF) <-> ``Gaussian`` (default ``s = sqrt(pi) / 2``): ``L = s sqrt(2) l = l sqrt(pi / 2)``;
* ``nu=0.5`` <-> ``Exponential`` (default ``s = 1``): ``L = s l = l`` (``Matern(nu=0.5)`` is also accepted);
* ``nu=1.5, 2.5`` <-> ``Matern(nu)`` (default ``s = 1``): ``L = s l / sqrt(2)`` (GSTools' Bessel argument is
  ``sqrt(nu) s r / L``, gpytorch's ``sqrt(2 nu) r / l``).

**PyKrige** 3-D (``OrdinaryKriging3D`` and friends): the isometrised coordinates are
``diag(1, s_y, s_z) Rz(-az) Ry(-ay) Rx(-ax) x``, i.e. ``diag(1, s_y, s_z) R^T x`` with the GSTools angles
``anisotropy_angle_z = a``, ``_y = b``, ``_x = g`` (degrees) and ``anisotropy_scaling_y = 1 / e_y``,
``_z = 1 / e_z``. Its variogram is then isotropic in main-axis units: ``"gaussian"`` with
``range = (7 / 4) sqrt(2) l`` (``1 - exp(-d^2 / (4 range / 7)^2)``), ``"exponential"`` with ``range = 3 l``
for ``nu = 0.5``, and our module-level custom Matern variograms :func:`pykrige_matern15_variogram` /
:func:`pykrige_matern25_variogram` (parameters ``[psill, l, nugget]``) for ``nu = 1.5, 2.5``.

An output-scale becomes GSTools' ``var`` / PyKrige's ``psill``, and Gaussian observation noise the ``nugget``.
GSTools and PyKrige are optional (extra ``geo``); only :func:`to_gstools` / :meth:`AnisotropicCovariance.to_gstools`
import GSTools, and only when called.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gpytorch
import numpy as np
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from scipy.spatial.transform import Rotation
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.so3 import HORIZONTAL_TOL, azimuth_dip, direction_from_azimuth_dip  # noqa: F401 - one definition

__all__ = [
    "AnisotropicCovariance",
    "PrincipalDirections",
    "azimuth_dip",
    "direction_from_azimuth_dip",
    "from_gstools",
    "from_pykrige",
    "gstools_angles",
    "gstools_len_scale_factor",
    "practical_range_factor",
    "principal_directions",
    "pykrige_matern15_variogram",
    "pykrige_matern25_variogram",
    "rotation_from_gstools_angles",
    "to_gstools",
    "to_pykrige",
]

#: Correlation level that defines the *practical range* (the geostatistician's "range" of a smooth model).
PRACTICAL_RANGE_LEVEL = 0.05

# PyKrige's Gaussian variogram is 1 - exp(-d^2 / (range * 4 / 7)^2) (pykrige/variogram_models.py).
_PYKRIGE_GAUSSIAN_RANGE_FACTOR = 7.0 / 4.0 * math.sqrt(2.0)
# PyKrige's exponential variogram is 1 - exp(-d / (range / 3)).
_PYKRIGE_EXPONENTIAL_RANGE_FACTOR = 3.0


def practical_range_factor(nu: float | None) -> float:
    """Distance, in length-scales, at which the base correlation falls to 5% (the "practical range").

    ``sqrt(2 ln 20) = 2.448`` for the RBF, ``ln 20 = 2.996`` for Matern-1/2, 2.739 for Matern-3/2 and 2.647
    for Matern-5/2 (gpytorch's parameterisation, ``k(r) = base(r / l)``).

    Args:
        nu: ``None`` (RBF) or 0.5, 1.5, 2.5.

    Returns:
        the factor (a float).

    Example:
        >>> [round(practical_range_factor(nu), 3) for nu in (None, 0.5, 1.5, 2.5)]
        [2.448, 2.996, 2.739, 2.647]
    """
    nu = F.check_nu(nu)
    if nu is None:
        return math.sqrt(2.0 * math.log(1.0 / PRACTICAL_RANGE_LEVEL))
    lo, hi = 0.0, 50.0
    for _ in range(200):  # bisection: the correlation is strictly decreasing in r
        mid = 0.5 * (lo + hi)
        c = float(F.base_correlation(torch.tensor(mid * mid, dtype=torch.float64), nu))
        lo, hi = (mid, hi) if c > PRACTICAL_RANGE_LEVEL else (lo, mid)
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------------------------- helpers
def _as_vec3(name: str, t: Any, dtype: torch.dtype | None = None) -> Tensor:
    if not torch.is_tensor(t):
        t = torch.as_tensor(np.asarray(t, dtype=np.float64))
    t = t.detach()
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    t = t.reshape(-1) if t.numel() == 3 else t
    if t.shape != (3,):
        raise ValueError(f"{name} must have 3 entries (one per principal axis), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


def _rotation_matrix(rotation: Tensor) -> Tensor:
    """``(3,)`` axis-angle vector or ``(3, 3)`` rotation matrix -> ``(3, 3)`` rotation matrix."""
    if not torch.is_tensor(rotation):
        rotation = torch.as_tensor(np.asarray(rotation, dtype=np.float64))
    rotation = rotation.detach()
    if not rotation.is_floating_point():
        rotation = rotation.to(torch.float64)
    if rotation.shape == (3, 3):
        so3.check_rotation(rotation, name="rotation")
        return rotation
    return so3.exp_map(_as_vec3("rotation (axis-angle)", rotation))


def _major_first(lengthscale: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """Sort principal axes by length-scale, longest first; keep ``det R = +1``."""
    ls, order = lengthscale.sort(descending=True, stable=True)
    R = R[:, order]
    if float(torch.linalg.det(R)) < 0:
        R = torch.cat((R[:, :2], -R[:, 2:]), dim=1)
    return ls, R


# ----------------------------------------------------------------------------------------------- GSTools angles
def gstools_angles(R: Tensor) -> Tensor:
    """GSTools rotation angles ``(a, b, g)`` (radians) of a rotation matrix whose columns are the main axes.

    The inverse of :func:`rotation_from_gstools_angles`: ``R = Rx(g) Ry(b) Rz(a)``, i.e. scipy
    ``Rotation.from_euler("zyx", (a, b, g)).as_matrix()``, with ``b`` in ``[-pi/2, pi/2]``.

    Args:
        R: ``(3, 3)`` rotation matrix.

    Returns:
        ``(3,)`` angles ``(a, b, g)`` in radians, float64.

    Example:
        >>> angles = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
        >>> torch.allclose(gstools_angles(rotation_from_gstools_angles(angles)), angles)
        True
    """
    R = _rotation_matrix(R)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's "Gimbal lock detected": the angles remain valid
        angles = Rotation.from_matrix(R.double().cpu().numpy()).as_euler("zyx")
    return torch.as_tensor(angles, dtype=torch.float64)


def rotation_from_gstools_angles(angles: Any) -> Tensor:
    """Rotation matrix ``R = Rx(g) Ry(b) Rz(a)`` of GSTools angles ``(a, b, g)`` (radians); columns = main axes.

    Equals ``gstools.tools.geometric.matrix_rotate(3, angles)`` and scipy
    ``Rotation.from_euler("zyx", angles).as_matrix()``.

    Args:
        angles: 1 to 3 angles in radians (missing ones are 0, as in GSTools).

    Returns:
        ``(3, 3)`` float64 rotation matrix.

    Example:
        >>> rotation_from_gstools_angles([math.pi / 2]).round(decimals=6) + 0.0  # main axis turned from x to y
        tensor([[ 0., -1.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    a = torch.as_tensor(np.asarray(angles, dtype=np.float64)).reshape(-1)
    if a.numel() > 3:
        raise ValueError(f"3-D GSTools models have at most 3 angles, got {a.numel()}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"angles must be finite, got {a.tolist()}")
    a = torch.cat((a, a.new_zeros(3 - a.numel())))
    return torch.as_tensor(Rotation.from_euler("zyx", a.numpy()).as_matrix(), dtype=torch.float64)


def gstools_len_scale_factor(model: str, rescale: float | None = None) -> float:
    """Factor ``f`` with GSTools ``len_scale = f * l`` for our length-scale ``l`` (see the module table).

    The factor depends on the GSTools family, not only on the smoothness: ``Matern(nu=0.5)`` and ``Exponential``
    have the same correlation shape but different length-scale conventions.

    Args:
        model: ``"Gaussian"`` (our RBF), ``"Exponential"`` (our Matern-1/2) or ``"Matern"`` (our Matern-nu).
        rescale: GSTools' ``rescale`` ``s`` (default: the family's default, sqrt(pi)/2 for the Gaussian, else 1).

    Returns:
        the factor.

    Example:
        >>> round(gstools_len_scale_factor("Matern"), 6), gstools_len_scale_factor("Exponential")
        (0.707107, 1.0)
        >>> round(gstools_len_scale_factor("Gaussian"), 6)  # sqrt(pi / 2)
        1.253314
    """
    if model == "Gaussian":
        s = math.sqrt(math.pi) / 2.0 if rescale is None else float(rescale)
        return s * math.sqrt(2.0)  # exp(-(s r / L)^2) == exp(-r^2 / (2 l^2))
    s = 1.0 if rescale is None else float(rescale)
    if model == "Exponential":
        return s  # exp(-s r / L) == exp(-r / l)
    if model == "Matern":
        return s / math.sqrt(2.0)  # GSTools' argument sqrt(nu) s r / L == gpytorch's sqrt(2 nu) r / l
    raise ValueError(f"unknown GSTools model family {model!r}; expected Gaussian, Exponential or Matern")


# ----------------------------------------------------------------------------------------------- principal directions
@dataclass(frozen=True, eq=False)
class PrincipalDirections:
    """Principal directions of an anisotropic covariance in geoscience terms, major (longest) axis first.

    Attributes:
        lengthscale: ``(3,)`` length-scales (our kernels' parameterisation), descending.
        axes: ``(3, 3)`` directions as columns (East, North, Up), in the order of ``lengthscale``.
        azimuth: ``(3,)`` degrees clockwise from North.
        dip: ``(3,)`` degrees below the horizontal.
        nu: base kernel (``None`` for RBF), used for the practical ranges.
        units: unit label of the length-scales (for printing).

    Example:
        >>> pd = principal_directions(torch.tensor([10.0, 300.0, 500.0]), torch.zeros(3), nu=2.5, units="m")
        >>> pd.lengthscale, pd.ratios  # major first; ratios as GSTools' anis
        (tensor([500., 300.,  10.]), tensor([0.6000, 0.0200]))
        >>> pd.practical_range.round()  # 5% correlation distances (2.647 length-scales for Matern-5/2)
        tensor([1323.,  794.,   26.])
    """

    lengthscale: Tensor
    axes: Tensor
    azimuth: Tensor
    dip: Tensor
    nu: float | None = None
    units: str = ""

    @property
    def ratios(self) -> Tensor:
        """``(2,)`` anisotropy ratios ``(semi-major / major, minor / major)`` (GSTools' ``anis``)."""
        return self.lengthscale[1:] / self.lengthscale[0]

    @property
    def practical_range(self) -> Tensor:
        """``(3,)`` distances at which the correlation along each axis falls to 5%."""
        return self.lengthscale * practical_range_factor(self.nu)

    def __str__(self) -> str:
        u = f" [{self.units}]" if self.units else ""
        head = f"{'axis':<10} {'length-scale' + u:>18} {'range (5%)' + u:>16} {'azimuth':>8} {'dip':>6} {'ratio':>7}"
        rows = [head, "-" * len(head)]
        ratios = [1.0, *self.ratios.tolist()]
        for i, name in enumerate(("major", "semi-major", "minor")):
            rows.append(
                f"{name:<10} {float(self.lengthscale[i]):>18.4g} {float(self.practical_range[i]):>16.4g} "
                f"{float(self.azimuth[i]):>8.1f} {float(self.dip[i]):>6.1f} {ratios[i]:>7.3g}"
            )
        return "\n".join(rows)


def principal_directions(
    lengthscale: Tensor, rotation: Tensor, *, nu: float | None = None, units: str = ""
) -> PrincipalDirections:
    """Principal directions (azimuth, dip, ranges, ratios) of ``M = R diag(l)^-2 R^T``.

    Args:
        lengthscale: ``(3,)`` principal length-scales (column ``i`` of ``R`` goes with entry ``i``).
        rotation: ``(3,)`` axis-angle vector or ``(3, 3)`` rotation matrix.
        nu: base kernel, for the practical ranges.
        units: unit label for printing.

    Returns:
        a :class:`PrincipalDirections` (major axis first).

    Example:
        >>> pd = principal_directions(torch.tensor([10.0, 300.0, 500.0]), torch.zeros(3), units="m")
        >>> pd.azimuth.tolist(), pd.dip.tolist(), [round(r, 2) for r in pd.ratios.tolist()]
        ([0.0, 0.0, 90.0], [90.0, 0.0, 0.0], [0.6, 0.02])
    """
    R = _rotation_matrix(rotation)
    ls = _as_vec3("lengthscale", lengthscale, R.dtype)
    if bool((ls <= 0).any()):
        raise ValueError(f"lengthscale must be positive, got {ls.tolist()}")
    ls, R = _major_first(ls, R)
    az, dip = azimuth_dip(R.T)
    return PrincipalDirections(lengthscale=ls, axes=R, azimuth=az, dip=dip, nu=F.check_nu(nu), units=units)


# ----------------------------------------------------------------------------------------------- the parameter record
@dataclass(frozen=True, eq=False)
class AnisotropicCovariance:
    r"""A rotated anisotropic covariance with output-scale, noise and constant mean, in data units.

    ``cov(x, x') = outputscale * base_nu(r) + noise * [x == x']``, ``r^2 = (x - x')^T R diag(l)^-2 R^T (x - x')``,
    i.e. ``ScaleKernel(SO3AnisotropicKernel(nu))`` plus a Gaussian likelihood. The exchange format between
    our kernels/models and GSTools/PyKrige.

    Attributes:
        lengthscale: ``(3,)`` principal length-scales (float64).
        rotation: ``(3,)`` axis-angle vector (float64); column ``i`` of ``exp(hat(rotation))`` goes with
            ``lengthscale[i]``.
        nu: ``None`` (RBF / GSTools Gaussian) or 0.5, 1.5, 2.5.
        outputscale: variance of the correlated part (GSTools ``var``, PyKrige ``psill``).
        noise: Gaussian noise variance (the ``nugget``).
        mean: constant mean of the field (for simple kriging with GSTools).

    Example:
        >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=2.5)
        >>> print(cov.principal_directions(units="m"))  # doctest: +NORMALIZE_WHITESPACE
        axis         length-scale [m]   range (5%) [m]  azimuth    dip   ratio
        ----------------------------------------------------------------------
        major                     500             1323     90.0    0.0       1
        semi-major                300            794.1      0.0    0.0     0.6
        minor                      10            26.47      0.0   90.0    0.02

        Derived matrices, the latent covariance, and the equivalent gpytorch kernel:

        >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=2.5,
        ...                             outputscale=2.0, noise=0.1)
        >>> cov.rotation_matrix.shape, cov.metric.diagonal()  # l^-2 on the diagonal (no rotation)
        (torch.Size([3, 3]), tensor([4.0000e-06, 1.1111e-05, 1.0000e-02], dtype=torch.float64))
        >>> x = torch.tensor([[0.0, 0.0, 0.0], [500.0, 0.0, 0.0], [0.0, 0.0, 10.0]], dtype=torch.float64)
        >>> cov.covariance(x[:1], x)  # one length-scale away along x and along z: equal covariance
        tensor([[2.0000, 1.0480, 1.0480]], dtype=torch.float64)
        >>> lengthscale, R = cov.major_first()  # GSTools' convention: longest axis first
        >>> lengthscale
        tensor([500., 300.,  10.], dtype=torch.float64)
        >>> k = cov.kernel()  # ScaleKernel(SO3AnisotropicKernel(nu=2.5))
        >>> k.base_kernel.lengthscale.detach(), k.outputscale.item()
        (tensor([[500., 300.,  10.]], dtype=torch.float64), 2.0)
    """

    lengthscale: Tensor
    rotation: Tensor
    nu: float | None = None
    outputscale: float = 1.0
    noise: float = 0.0
    mean: float = 0.0

    def __post_init__(self) -> None:
        ls = _as_vec3("lengthscale", self.lengthscale, torch.float64)
        if bool((ls <= 0).any()):
            raise ValueError(f"lengthscale must be positive, got {ls.tolist()}")
        rot = self.rotation
        rot = so3.log_map(_rotation_matrix(rot).double()) if torch.is_tensor(rot) and rot.shape == (3, 3) else rot
        rot = _as_vec3("rotation", rot, torch.float64)
        object.__setattr__(self, "lengthscale", ls.cpu())
        object.__setattr__(self, "rotation", rot.cpu())
        object.__setattr__(self, "nu", F.check_nu(self.nu))
        for name in ("outputscale", "noise", "mean"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        if self.outputscale <= 0:
            raise ValueError(f"outputscale must be positive, got {self.outputscale}")
        if self.noise < 0:
            raise ValueError(f"noise must be non-negative, got {self.noise}")

    # -- derived ---------------------------------------------------------------------------------------------
    @property
    def rotation_matrix(self) -> Tensor:
        """``(3, 3)`` rotation ``exp(hat(rotation))``; columns are the principal directions."""
        return so3.exp_map(self.rotation)

    @property
    def metric(self) -> Tensor:
        """``(3, 3)`` metric ``R diag(l)^-2 R^T``."""
        return F.metric(self.lengthscale, self.rotation_matrix)

    def covariance(self, x1: Tensor, x2: Tensor, *, diag: bool = False) -> Tensor:
        """Covariance of the latent field (no noise): ``outputscale * base_nu(r)``.

        Args:
            x1: ``n x 3`` points.
            x2: ``m x 3`` points (``m == n`` with ``diag``).
            diag: only ``cov(x1_i, x2_i)``.

        Returns:
            ``n x m`` (or ``n``) float64 tensor.
        """
        A = F.so3_whitening_matrix(self.lengthscale, self.rotation_matrix)
        x1 = torch.as_tensor(x1, dtype=torch.float64)
        x2 = torch.as_tensor(x2, dtype=torch.float64)
        return self.outputscale * F.covariance(x1, x2, A, self.nu, diag=diag)

    def principal_directions(self, units: str = "") -> PrincipalDirections:
        """Azimuth/dip, ranges and ratios of the principal axes; see :func:`principal_directions`."""
        return principal_directions(self.lengthscale, self.rotation, nu=self.nu, units=units)

    def major_first(self) -> tuple[Tensor, Tensor]:
        """``(lengthscale (3,), R (3, 3))`` sorted longest axis first (GSTools' main-axis convention)."""
        return _major_first(self.lengthscale, self.rotation_matrix)

    def kernel(self, dtype: torch.dtype = torch.float64):
        """A ``ScaleKernel(SO3AnisotropicKernel(nu))`` with these parameters (noise and mean are not part of it).

        Args:
            dtype: parameter dtype.

        Returns:
            a ``gpytorch.kernels.ScaleKernel``.
        """
        k = ScaleKernel(SO3AnisotropicKernel(nu=self.nu)).to(dtype)
        k.base_kernel.lengthscale = self.lengthscale.to(dtype).reshape(1, 3)
        k.base_kernel.rotation = self.rotation.to(dtype)
        k.outputscale = torch.tensor(self.outputscale, dtype=dtype)
        return k

    # -- GSTools -----------------------------------------------------------------------------------------------
    def gstools_params(self) -> dict[str, Any]:
        """Keyword arguments of the equivalent GSTools model (without importing GSTools).

        Returns:
            dict with ``model`` (``"Gaussian"``, ``"Exponential"`` or ``"Matern"``) and the constructor keywords
            ``dim=3``, ``var``, ``len_scale``, ``anis`` (2 ratios <= 1), ``angles`` (radians), ``nugget`` and, for
            Matern, ``nu``.

        Example:
            >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=2.5, noise=0.1)
            >>> p = cov.gstools_params()
            >>> p["model"], round(p["len_scale"], 3), p["anis"], p["nugget"], p["nu"]  # len_scale = 500 / sqrt(2)
            ('Matern', 353.553, [0.6, 0.02], 0.1, 2.5)
        """
        ls, R = self.major_first()
        name = "Gaussian" if self.nu is None else ("Exponential" if self.nu == 0.5 else "Matern")
        params: dict[str, Any] = {
            "model": name,
            "dim": 3,
            "var": self.outputscale,
            "len_scale": float(ls[0]) * gstools_len_scale_factor(name),
            "anis": (ls[1:] / ls[0]).tolist(),
            "angles": gstools_angles(R).tolist(),
            "nugget": self.noise,
        }
        if name == "Matern":
            params["nu"] = self.nu
        return params

    def to_gstools(self):
        """The equivalent ``gstools.CovModel`` (needs GSTools, extra ``geo``); see the module table.

        Example:
            >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=2.5, noise=0.1)
            >>> cov.to_gstools()
            Matern(dim=3, var=1.0, len_scale=3.54e+02, nugget=0.1, anis=[0.6, 0.02], nu=2.5)
        """
        try:
            import gstools
        except ImportError as e:  # pragma: no cover - exercised only without the extra
            raise ImportError("to_gstools needs GSTools: pip install 'gpytorch-so3[geo]'") from e
        params = self.gstools_params()
        cls = getattr(gstools, params.pop("model"))
        return cls(**params)

    @classmethod
    def from_gstools(cls, model: Any) -> AnisotropicCovariance:
        """Parameters of a 3-D GSTools ``Gaussian``, ``Exponential`` or ``Matern`` (nu 0.5/1.5/2.5) model.

        Args:
            model: a ``gstools.CovModel`` instance.

        Returns:
            the equivalent :class:`AnisotropicCovariance` (``mean = 0``).

        Raises:
            ValueError: other models, other ``nu``, ``dim != 3``, lat/lon or spatio-temporal models.

        Example:
            >>> import gstools
            >>> model = gstools.Exponential(dim=3, var=2.0, len_scale=100.0, anis=[0.5, 0.1], nugget=0.1)
            >>> cov = AnisotropicCovariance.from_gstools(model)
            >>> cov.nu, cov.lengthscale, cov.outputscale, cov.noise
            (0.5, tensor([100.,  50.,  10.], dtype=torch.float64), 2.0, 0.1)
        """
        name = type(model).__name__
        if not all(hasattr(model, a) for a in ("len_scale", "anis", "angles", "var", "nugget", "dim")):
            raise TypeError(f"expected a gstools CovModel, got {name}")
        if int(model.dim) != 3 or getattr(model, "latlon", False) or getattr(model, "temporal", False):
            raise ValueError(
                f"only plain 3-D spatial GSTools models convert (got dim={model.dim}, "
                f"latlon={getattr(model, 'latlon', False)}, temporal={getattr(model, 'temporal', False)})"
            )
        if name == "Gaussian":
            nu = None
        elif name == "Exponential":
            nu = 0.5
        elif name == "Matern":
            nu = float(model.nu)
            if nu not in (0.5, 1.5, 2.5):
                raise ValueError(f"GSTools Matern nu={nu} has no counterpart; supported: 0.5, 1.5, 2.5")
        else:
            raise ValueError(f"GSTools model {name} has no counterpart; supported: Gaussian, Exponential, Matern")
        factor = gstools_len_scale_factor(name, float(model.rescale))
        main = float(model.len_scale) / factor
        anis = np.asarray(model.anis, dtype=np.float64).reshape(-1)
        ls = torch.tensor([main, main * anis[0], main * anis[1]], dtype=torch.float64)
        R = rotation_from_gstools_angles(model.angles)
        return cls(ls, so3.log_map(R), nu=nu, outputscale=float(model.var), noise=float(model.nugget))

    # -- PyKrige -----------------------------------------------------------------------------------------------
    def to_pykrige(self) -> dict[str, Any]:
        """Keyword arguments for PyKrige's 3-D kriging classes (``OrdinaryKriging3D``, ``UniversalKriging3D``).

        Returns:
            dict with ``variogram_model``, ``variogram_parameters``, (``variogram_function`` for Matern-3/2 and
            -5/2), ``anisotropy_scaling_y``, ``anisotropy_scaling_z``, ``anisotropy_angle_x/y/z`` (degrees).

        Example:
            >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=2.5, noise=0.1)
            >>> kw = cov.to_pykrige()
            >>> kw["variogram_model"], kw["variogram_function"].__name__, kw["variogram_parameters"]
            ('custom', 'pykrige_matern25_variogram', [1.0, 500.0, 0.1])
            >>> round(kw["anisotropy_scaling_y"], 4), kw["anisotropy_scaling_z"]
            (1.6667, 50.0)
        """
        ls, R = self.major_first()
        a, b, g = (math.degrees(v) for v in gstools_angles(R).tolist())
        main = float(ls[0])
        out: dict[str, Any] = {
            "anisotropy_scaling_y": main / float(ls[1]),
            "anisotropy_scaling_z": main / float(ls[2]),
            "anisotropy_angle_x": g,
            "anisotropy_angle_y": b,
            "anisotropy_angle_z": a,
        }
        if self.nu is None:
            out["variogram_model"] = "gaussian"
            out["variogram_parameters"] = {
                "psill": self.outputscale,
                "range": main * _PYKRIGE_GAUSSIAN_RANGE_FACTOR,
                "nugget": self.noise,
            }
        elif self.nu == 0.5:
            out["variogram_model"] = "exponential"
            out["variogram_parameters"] = {
                "psill": self.outputscale,
                "range": main * _PYKRIGE_EXPONENTIAL_RANGE_FACTOR,
                "nugget": self.noise,
            }
        else:
            out["variogram_model"] = "custom"
            out["variogram_function"] = _PYKRIGE_MATERN[self.nu]
            out["variogram_parameters"] = [self.outputscale, main, self.noise]
        return out

    @classmethod
    def from_pykrige(cls, source: Mapping[str, Any] | Any) -> AnisotropicCovariance:
        """Parameters of a PyKrige 3-D variogram + anisotropy setting.

        Args:
            source: a mapping of PyKrige keywords (as returned by :meth:`to_pykrige`) or a fitted PyKrige 3-D
                kriging object (``OrdinaryKriging3D``...; its ``variogram_model_parameters`` are read).

        Returns:
            the equivalent :class:`AnisotropicCovariance`.

        Raises:
            ValueError: variogram models other than ``"gaussian"``, ``"exponential"`` or our custom Matern ones.

        Example:
            >>> kw = {"variogram_model": "exponential", "variogram_parameters": {"psill": 2.0, "range": 300.0,
            ...       "nugget": 0.1}, "anisotropy_scaling_y": 2.0, "anisotropy_scaling_z": 10.0}
            >>> cov = AnisotropicCovariance.from_pykrige(kw)  # PyKrige's exponential range is 3 length-scales
            >>> cov.nu, cov.lengthscale, cov.outputscale
            (0.5, tensor([100.,  50.,  10.], dtype=torch.float64), 2.0)
        """
        if isinstance(source, Mapping):
            get = source.get
            params = source.get("variogram_parameters")
        else:
            get = lambda k, d=None: getattr(source, k, d)
            params = getattr(source, "variogram_model_parameters", None)
        model = get("variogram_model")
        if params is None:
            raise ValueError("from_pykrige needs variogram parameters (variogram_parameters)")
        if model in ("gaussian", "exponential"):
            if isinstance(params, Mapping):
                nugget = float(params["nugget"])
                psill = float(params["psill"]) if "psill" in params else float(params["sill"]) - nugget
                rng = float(params["range"])
            else:
                psill, rng, nugget = (float(v) for v in params)
            if model == "gaussian":
                nu, main = None, rng / _PYKRIGE_GAUSSIAN_RANGE_FACTOR
            else:
                nu, main = 0.5, rng / _PYKRIGE_EXPONENTIAL_RANGE_FACTOR
        elif model == "custom":
            fn = get("variogram_function")
            nu = next((k for k, f in _PYKRIGE_MATERN.items() if f is fn), None)
            if nu is None:
                raise ValueError(
                    "from_pykrige: only the custom variograms of gpytorch_so3.geo "
                    "(pykrige_matern15_variogram, pykrige_matern25_variogram) can be converted"
                )
            psill, main, nugget = (float(v) for v in params)
        else:
            raise ValueError(
                f"PyKrige variogram model {model!r} has no counterpart; "
                "supported: 'gaussian', 'exponential', custom Matern from gpytorch_so3.geo"
            )
        sy = float(get("anisotropy_scaling_y", 1.0))
        sz = float(get("anisotropy_scaling_z", 1.0))
        if sy <= 0 or sz <= 0:
            raise ValueError(f"anisotropy scalings must be positive, got {sy}, {sz}")
        angles = [math.radians(float(get(f"anisotropy_angle_{c}", 0.0))) for c in "zyx"]
        ls = torch.tensor([main, main / sy, main / sz], dtype=torch.float64)
        R = rotation_from_gstools_angles(angles)
        return cls(ls, so3.log_map(R), nu=nu, outputscale=psill, noise=nugget)

    # -- from our kernels and models -----------------------------------------------------------------------------
    @classmethod
    def from_model(cls, obj: Any, *, coordinate_scale: float | Any = 1.0) -> AnisotropicCovariance:
        """Extract the covariance of a kernel or fitted model.

        Accepted: :class:`~gpytorch_so3.SO3AnisotropicKernel`, :class:`~gpytorch_so3.FullSPDKernel`, gpytorch
        ``RBFKernel`` / ``MaternKernel`` (isotropic or 3-D ARD), any of them in a ``ScaleKernel`` (its
        output-scale), or a gpytorch ``ExactGP`` / BoTorch ``SingleTaskGP`` with such a ``covar_module``
        (then the homoskedastic likelihood noise becomes the nugget, a ``ConstantMean`` the mean, and a BoTorch
        ``Standardize`` outcome transform is undone). Kernels must have an empty ``batch_shape``.

        Args:
            obj: kernel or model.
            coordinate_scale: the factor the model's inputs were divided by (a float, or an object with a
                ``scale`` attribute such as :class:`gpytorch_so3.compare.IsotropicScaling`); length-scales are
                multiplied by it so that they come out in data units. Must be a single factor: per-axis scaling
                would change the directions.

        Returns:
            the :class:`AnisotropicCovariance` in data units.

        Raises:
            TypeError: unsupported kernel or model type.
            ValueError: batched kernels, input transforms, heteroskedastic noise.

        Example:
            >>> import gpytorch
            >>> k = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5, ard_num_dims=3)).double()
            >>> k.base_kernel.lengthscale = torch.tensor([[0.5, 0.2, 0.01]], dtype=torch.float64)
            >>> cov = AnisotropicCovariance.from_model(k, coordinate_scale=1000.0)  # inputs were metres / 1000
            >>> cov.nu, cov.lengthscale.round(decimals=6), cov.rotation
            (1.5, tensor([500., 200.,  10.], dtype=torch.float64), tensor([0., 0., 0.], dtype=torch.float64))
        """
        scale = float(getattr(coordinate_scale, "scale", coordinate_scale))
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"coordinate_scale must be a positive number, got {coordinate_scale!r}")
        noise, mean, y_scale, y_shift = 0.0, 0.0, 1.0, 0.0
        kernel = obj
        if isinstance(obj, gpytorch.models.ExactGP):
            if getattr(obj, "input_transform", None) is not None:
                raise ValueError(
                    "models with an input_transform are not supported (per-axis Normalize shears space): scale "
                    "inputs isotropically yourself and pass coordinate_scale"
                )
            kernel = obj.covar_module
            lik = obj.likelihood
            if not isinstance(lik, gpytorch.likelihoods.GaussianLikelihood) or isinstance(
                lik, gpytorch.likelihoods.FixedNoiseGaussianLikelihood
            ):
                raise ValueError(
                    f"only a homoskedastic GaussianLikelihood converts to a nugget, got {type(lik).__name__}"
                )
            noise = float(lik.noise.detach().reshape(-1)[0]) if lik.noise.numel() == 1 else math.nan
            if not math.isfinite(noise):
                raise ValueError("batched or heteroskedastic noise cannot be exported as one nugget")
            mm = getattr(obj, "mean_module", None)
            if isinstance(mm, gpytorch.means.ConstantMean):
                mean = float(mm.constant.detach().reshape(-1)[0])
            elif mm is not None and not isinstance(mm, gpytorch.means.ZeroMean):
                raise ValueError(f"only ConstantMean/ZeroMean convert, got {type(mm).__name__}")
            tf = getattr(obj, "outcome_transform", None)
            if tf is not None:
                # Only BoTorch models have outcome transforms, so BoTorch is already imported here; importing it at
                # module level would make `import gpytorch_so3.geo` change gpytorch's global settings.
                from botorch.models.transforms.outcome import Standardize

                if not isinstance(tf, Standardize):
                    raise ValueError(f"only a Standardize outcome transform can be undone, got {type(tf).__name__}")
                y_scale = float(tf.stdvs.detach().reshape(-1)[0])
                y_shift = float(tf.means.detach().reshape(-1)[0])
        outputscale = 1.0
        if isinstance(kernel, ScaleKernel):
            outputscale = (
                float(kernel.outputscale.detach().reshape(-1)[0]) if kernel.outputscale.numel() == 1 else math.nan
            )
            kernel = kernel.base_kernel
        if not isinstance(kernel, gpytorch.kernels.Kernel):
            raise TypeError(f"expected a gpytorch kernel or ExactGP, got {type(obj).__name__}")
        if len(kernel.batch_shape) or not math.isfinite(outputscale):
            raise ValueError(f"batched kernels cannot be exported (batch_shape {tuple(kernel.batch_shape)})")
        with torch.no_grad():
            if isinstance(kernel, SO3AnisotropicKernel):
                nu = kernel.nu
                ls = kernel.lengthscale.reshape(3).double()
                rot = kernel.rotation.reshape(3).double()
            elif isinstance(kernel, FullSPDKernel):
                nu = kernel.nu
                ls, R = F.metric_to_canonical(kernel.metric.double())
                rot = so3.log_map(R)
            elif isinstance(kernel, RBFKernel | MaternKernel):
                nu = None if isinstance(kernel, RBFKernel) else F.check_nu(kernel.nu)
                ls = kernel.lengthscale.reshape(-1).double()
                if ls.numel() == 1:
                    ls = ls.expand(3)
                elif ls.numel() != 3:
                    raise ValueError(f"ARD kernels must have 3 length-scales, got {ls.numel()}")
                if kernel.active_dims is not None and kernel.active_dims.tolist() != [0, 1, 2]:
                    raise ValueError("only kernels on input columns (0, 1, 2) can be exported")
                rot = torch.zeros(3, dtype=torch.float64)
            else:
                raise TypeError(
                    f"cannot export {type(kernel).__name__}: expected SO3AnisotropicKernel, FullSPDKernel, RBFKernel "
                    "or MaternKernel (optionally in a ScaleKernel)"
                )
        return cls(
            ls.cpu() * scale,
            rot.cpu(),
            nu=nu,
            outputscale=outputscale * y_scale**2,
            noise=noise * y_scale**2,
            mean=mean * y_scale + y_shift,
        )


# ----------------------------------------------------------------------------------------------- PyKrige Matern
def _matern_variogram(m: Any, d: np.ndarray, nu: float) -> np.ndarray:
    psill, ls, nugget = (float(v) for v in m)
    cor = F.base_correlation(torch.as_tensor(np.square(np.asarray(d, dtype=np.float64) / ls)), nu).numpy()
    return psill * (1.0 - cor) + nugget


def pykrige_matern15_variogram(m: Any, d: np.ndarray) -> np.ndarray:
    """PyKrige custom variogram of our Matern-3/2: ``psill * (1 - k(d / l)) + nugget``, ``m = [psill, l, nugget]``.

    Args:
        m: ``[psill, lengthscale (main axis, PyKrige's isometrised units), nugget]``.
        d: distances (isometrised by PyKrige).

    Returns:
        variogram values, same shape as ``d``.

    Example:
        >>> pykrige_matern15_variogram([2.0, 1.0, 0.1], np.array([0.0, 1.0, 10.0])).round(4).tolist()
        [0.1, 1.1333, 2.1]
    """
    return _matern_variogram(m, d, 1.5)


def pykrige_matern25_variogram(m: Any, d: np.ndarray) -> np.ndarray:
    """PyKrige custom variogram of our Matern-5/2; see :func:`pykrige_matern15_variogram`.

    Args:
        m: ``[psill, lengthscale, nugget]``.
        d: distances.

    Returns:
        variogram values, same shape as ``d``.

    Example:
        >>> pykrige_matern25_variogram([2.0, 1.0, 0.1], np.array([0.0, 1.0, 10.0])).round(4).tolist()
        [0.1, 1.052, 2.1]
    """
    return _matern_variogram(m, d, 2.5)


_PYKRIGE_MATERN = {1.5: pykrige_matern15_variogram, 2.5: pykrige_matern25_variogram}


# ----------------------------------------------------------------------------------------------- functional API
def to_gstools(obj: Any, *, coordinate_scale: float | Any = 1.0):
    """Export a kernel or fitted model (or :class:`AnisotropicCovariance`) as a ``gstools.CovModel``.

    The output-scale becomes ``var``, the likelihood noise the ``nugget`` (see
    :meth:`AnisotropicCovariance.from_model` for what is accepted). Use it to krige or simulate with GSTools,
    e.g. ``gstools.krige.Simple(model, cond_pos, cond_val, mean=AnisotropicCovariance.from_model(gp).mean)``
    reproduces the GP's posterior mean (GSTools' default ``exact=False`` treats the nugget as noise).

    Args:
        obj: kernel, model or :class:`AnisotropicCovariance`.
        coordinate_scale: factor the model's inputs were divided by (float or object with ``.scale``).

    Returns:
        a GSTools ``Gaussian`` (RBF), ``Exponential`` (nu = 0.5) or ``Matern`` model with ``dim=3``.

    Example:
        >>> import gpytorch
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> k = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel(nu=2.5)).double()
        >>> k.base_kernel.lengthscale = torch.tensor([[0.2, 0.05, 0.01]], dtype=torch.float64)
        >>> model = to_gstools(k, coordinate_scale=1000.0)  # inputs were metres / 1000
        >>> type(model).__name__, round(float(model.len_scale) * 2**0.5, 6)  # main axis 0.2 * 1000 m
        ('Matern', 200.0)
        >>> [round(float(a), 3) for a in model.anis]
        [0.25, 0.05]
    """
    cov = (
        obj
        if isinstance(obj, AnisotropicCovariance)
        else AnisotropicCovariance.from_model(obj, coordinate_scale=coordinate_scale)
    )
    return cov.to_gstools()


def from_gstools(model: Any) -> AnisotropicCovariance:
    """Parameters of a GSTools 3-D model; see :meth:`AnisotropicCovariance.from_gstools`.

    Args:
        model: a ``gstools`` ``Gaussian``, ``Exponential`` or ``Matern`` (nu 0.5, 1.5, 2.5) model with ``dim=3``.

    Returns:
        the :class:`AnisotropicCovariance`; ``.kernel()`` gives the equivalent gpytorch kernel.

    Example:
        >>> import gstools
        >>> cov = from_gstools(gstools.Matern(dim=3, nu=1.5, len_scale=2**-0.5 * 100, anis=[0.5, 0.1]))
        >>> cov.nu, cov.lengthscale.round(decimals=6)
        (1.5, tensor([100.,  50.,  10.], dtype=torch.float64))
    """
    return AnisotropicCovariance.from_gstools(model)


def to_pykrige(obj: Any, *, coordinate_scale: float | Any = 1.0) -> dict[str, Any]:
    """PyKrige 3-D keyword arguments of a kernel or model; see :meth:`AnisotropicCovariance.to_pykrige`.

    Args:
        obj: kernel, model or :class:`AnisotropicCovariance`.
        coordinate_scale: factor the model's inputs were divided by.

    Returns:
        keyword arguments for ``pykrige.ok3d.OrdinaryKriging3D(x, y, z, values, **kwargs)``.

    Example:
        >>> import gpytorch
        >>> k = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=3)).double()
        >>> k.base_kernel.lengthscale = torch.tensor([[0.5, 0.2, 0.01]], dtype=torch.float64)
        >>> kw = to_pykrige(k, coordinate_scale=1000.0)
        >>> kw["variogram_model"], round(kw["anisotropy_scaling_y"], 6), round(kw["anisotropy_scaling_z"], 6)
        ('gaussian', 2.5, 50.0)
    """
    cov = (
        obj
        if isinstance(obj, AnisotropicCovariance)
        else AnisotropicCovariance.from_model(obj, coordinate_scale=coordinate_scale)
    )
    return cov.to_pykrige()


def from_pykrige(source: Mapping[str, Any] | Any) -> AnisotropicCovariance:
    """Parameters of PyKrige keywords or a PyKrige 3-D kriging object; see :meth:`AnisotropicCovariance.from_pykrige`.

    Args:
        source: mapping of PyKrige keywords or a kriging object.

    Returns:
        the :class:`AnisotropicCovariance`.

    Example:
        >>> cov = AnisotropicCovariance(torch.tensor([500.0, 300.0, 10.0]), torch.zeros(3), nu=1.5, noise=0.1)
        >>> back = from_pykrige(cov.to_pykrige())  # round trip through PyKrige's keywords
        >>> back.nu, back.lengthscale.round(decimals=6), back.noise
        (1.5, tensor([500., 300.,  10.], dtype=torch.float64), 0.1)
    """
    return AnisotropicCovariance.from_pykrige(source)
