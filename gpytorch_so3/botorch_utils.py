r"""BoTorch integration: covariance factories, geometry-preserving input scaling and physical-unit read-out.

The SO(3) kernel learns *directions*. BoTorch's :class:`~botorch.models.transforms.input.Normalize` divides every
input column by its own range; on a non-cubic box that is the linear map ``x_n = S (x - o)`` with
``S = diag(1 / range)``, which shears space: angles between directions change, and a rotation fitted in the
normalised coordinates is not the rotation of the physical field. The kernel is still valid (the metric
``M = R diag(l)^-2 R^T`` can represent any SPD matrix), but its length-scales and directions then describe the
sheared space, and the default priors (made for one common scale) act on distorted geometry.

This module provides

* :func:`so3_product_covar_module`: the SO(3) kernel on three spatial columns times a Matern/RBF ARD kernel
  on the other columns, with default priors (for 3-D problems use :func:`gpytorch_so3.priors.so3_covar_module`);
* :class:`IsotropicNormalize`: a BoTorch input transform that centres the spatial columns and divides them all
  by *one* common factor (bounds-based, or learned from the training inputs like ``Normalize``), which keeps
  angles;
* :func:`check_input_scaling`: emits a :class:`~gpytorch_so3.exceptions.NonIsotropicInputScalingWarning` when an
  SO(3) (or full-SPD) kernel sits behind an affine input transform that scales its three columns differently;
* :func:`metric_to_physical`, :func:`to_physical_units` and :func:`physical_canonical`: map a metric,
  length-scales and directions fitted in transformed coordinates back to physical units,
  ``M_phys = S M S`` with ``S = diag(1 / c)`` and ``c`` the per-axis divisor of the transform (the range for
  ``Normalize``, the common scale for :class:`IsotropicNormalize`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
from botorch.exceptions.errors import BotorchTensorDimensionError
from botorch.models.transforms.input import AffineInputTransform, ChainedInputTransform, InputTransform
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import Prior
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3 import pathwise  # noqa: F401  (registers the kernels with BoTorch's pathwise samplers)
from gpytorch_so3._validation import check_int
from gpytorch_so3.exceptions import NonIsotropicInputScalingWarning, deprecated_alias
from gpytorch_so3.kernels.base import Anisotropic3DKernel
from gpytorch_so3.priors import (
    DEFAULT,
    DEFAULT_INITIAL_OUTPUTSCALE,
    DEFAULT_NU,
    Default,
    as_batch_shape,
    default_lengthscale_prior,
    default_outputscale_prior,
    initial_lengthscale,
    so3_covar_module,
)

__all__ = [
    "ANISOTROPIC_INPUT_DIMS",
    "ISOTROPY_RTOL",
    "IsotropicNormalize",
    "check_input_scaling",
    "input_scale_factors",
    "metric_to_physical",
    "physical_canonical",
    "physical_principal_axes",
    "so3_product_covar_module",
    "to_physical_units",
]

#: Name of the attribute by which a model without an SO(3)/full-SPD kernel module (yet) declares the three input
#: columns its anisotropic kernel will act on, e.g. ``anisotropic_input_dims = (0, 1, 2)`` on a fully Bayesian
#: model whose kernel is built after sampling; :func:`check_input_scaling` reads it.
ANISOTROPIC_INPUT_DIMS = "anisotropic_input_dims"

#: Relative spread of the per-axis scale factors above which :func:`check_input_scaling` warns
#: (``max / min - 1``); equal factors computed in float32 agree far closer than this.
ISOTROPY_RTOL = 1e-6


# ------------------------------------------------------------------------------------------ covariance factory
def so3_product_covar_module(
    dim: int,
    spatial_dims: Sequence[int] = (0, 1, 2),
    nu: float | None = DEFAULT_NU,
    *,
    other_nu: float | Default | None = DEFAULT,
    batch_shape: Sequence[int] | torch.Size | None = None,
    lengthscale_prior: Prior | Default | None = DEFAULT,
    rotation_prior: Prior | Default | None = DEFAULT,
    other_lengthscale_prior: Prior | Default | None = DEFAULT,
    outputscale_prior: Prior | Default | None = DEFAULT,
) -> ScaleKernel:
    r"""SO(3) kernel on three spatial columns times an ARD Matern/RBF kernel on the others, with default priors.

    .. math::
        k(x, x') = \sigma^2\, k_{SO(3)}(x_s, x_s')\, k_{ARD}(x_o, x_o'),

    with ``x_s`` the columns ``spatial_dims`` and ``x_o`` the remaining ``dim - 3`` columns. The SO(3) factor is
    the base kernel of :func:`gpytorch_so3.priors.so3_covar_module` (its priors and initial values); the other
    factor is ``MaternKernel(other_nu, ard_num_dims=dim - 3)`` (``RBFKernel`` for ``other_nu=None``) with
    :func:`~gpytorch_so3.priors.default_lengthscale_prior` on each length-scale, initialised at its median; one
    ``ScaleKernel`` with :func:`~gpytorch_so3.priors.default_outputscale_prior` wraps the product. For
    ``dim == 3`` it returns :func:`~gpytorch_so3.priors.so3_covar_module` (``spatial_dims`` must then be a
    permutation of ``(0, 1, 2)``).

    Scale the spatial columns with one common factor (:class:`IsotropicNormalize` with
    ``indices=spatial_dims``); the other columns may be normalised per axis (BoTorch's ``Normalize`` with
    their indices), which does not affect the rotation.

    Args:
        dim: number of input columns (>= 3).
        spatial_dims: the three columns of the SO(3) factor.
        nu: smoothness of the SO(3) factor (``None``: squared exponential; 0.5, 1.5, 2.5: Matern; default
            :data:`~gpytorch_so3.priors.DEFAULT_NU` = 2.5, while the kernel class itself defaults to ``None``).
        other_nu: smoothness of the other factor (default: ``nu``).
        batch_shape: batch shape of all hyperparameters (e.g. ``(m,)`` for a batched ``m``-output SingleTaskGP).
        lengthscale_prior: prior of the three principal length-scales (default: the package default; ``None``:
            none).
        rotation_prior: prior of the axis-angle vector (default: the package default; ``None``: none).
        other_lengthscale_prior: prior of each length-scale of the other factor (default:
            :func:`~gpytorch_so3.priors.default_lengthscale_prior`; ``None``: none).
        outputscale_prior: prior of the output-scale (default: the package default; ``None``: none).

    Returns:
        a :class:`gpytorch.kernels.ScaleKernel` of a :class:`gpytorch.kernels.ProductKernel` (SO(3) factor first).

    Raises:
        TypeError: ``dim`` is not an int (numpy integers are accepted).
        ValueError: ``dim < 3`` or ``spatial_dims`` not three distinct columns in ``range(dim)``.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> X, Y = torch.rand(20, 4, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> covar = so3_product_covar_module(4, spatial_dims=(0, 1, 2))
        >>> model = SingleTaskGP(X, Y, covar_module=covar)
        >>> model.covar_module.base_kernel.kernels[1].lengthscale.shape
        torch.Size([1, 1])
    """
    dim = check_int("dim", dim, 3, where="so3_product_covar_module: ")
    try:
        spatial = tuple(int(i) for i in spatial_dims)
    except (TypeError, ValueError) as e:
        raise ValueError(f"spatial_dims must be three ints, got {spatial_dims!r}") from e
    if len(spatial) != 3 or len(set(spatial)) != 3 or any(not 0 <= i < dim for i in spatial):
        raise ValueError(f"spatial_dims must be three distinct columns in range({dim}), got {spatial_dims!r}")
    if isinstance(other_nu, Default):
        other_nu = nu
    other_nu = F.check_nu(other_nu)
    batch_shape = as_batch_shape(batch_shape)
    if isinstance(outputscale_prior, Default):
        outputscale_prior = default_outputscale_prior()
    if dim == 3:
        return so3_covar_module(
            nu,
            batch_shape=batch_shape,
            active_dims=None if spatial == (0, 1, 2) else spatial,
            lengthscale_prior=lengthscale_prior,
            rotation_prior=rotation_prior,
            outputscale_prior=outputscale_prior,
        )
    so3_part = so3_covar_module(
        nu,
        batch_shape=batch_shape,
        active_dims=spatial,
        lengthscale_prior=lengthscale_prior,
        rotation_prior=rotation_prior,
        outputscale_prior=None,
    ).base_kernel
    others = tuple(i for i in range(dim) if i not in spatial)
    if isinstance(other_lengthscale_prior, Default):
        other_lengthscale_prior = default_lengthscale_prior()
    kw = {
        "ard_num_dims": len(others),
        "active_dims": others,
        "batch_shape": batch_shape,
        "lengthscale_prior": other_lengthscale_prior,
    }
    other: Kernel = RBFKernel(**kw) if other_nu is None else MaternKernel(nu=other_nu, **kw)
    other.initialize(lengthscale=initial_lengthscale(other_lengthscale_prior))
    kernel = ScaleKernel(so3_part * other, batch_shape=batch_shape, outputscale_prior=outputscale_prior)
    kernel.initialize(outputscale=DEFAULT_INITIAL_OUTPUTSCALE)
    return kernel


# ------------------------------------------------------------------------------------------ input transform
class IsotropicNormalize(AffineInputTransform):
    r"""Centre the spatial input columns and divide them all by *one* common factor (angles are preserved).

    .. math::
        x_n = (x - o) / s, \qquad o = m - c\, s,

    with one scalar ``s`` for all transformed columns (per batch), ``m`` the midpoint of the box and ``c`` the
    ``center`` (default 0.5, as BoTorch's ``Normalize``). Two variants:

    * **bounds-based** (``bounds`` given, nothing learned): ``m`` is the box midpoint and ``s`` the box's largest
      side, so the box maps into the unit cube with its longest side onto ``[0, 1]`` (on a cubic box this is
      exactly BoTorch's ``Normalize``);
    * **data-based** (``bounds=None``, like ``Normalize(learn_bounds=True)``): in train mode ``m`` and ``s`` are
      learned from the training inputs' bounding box (midpoint, largest side); in eval mode (posterior,
      acquisition, ``condition_on_observations``, ``fantasize``) they are fixed.

    Because the map is a similarity (translation plus one common scale), a metric ``M_n`` fitted in the
    transformed coordinates is ``M_phys = M_n / s^2`` physically: length-scales multiply by ``s`` and the
    principal directions are unchanged (:func:`to_physical_units`). Other columns (e.g. a time or process
    variable) are left alone: chain a per-axis ``Normalize(d, indices=...)`` for them.

    Args:
        d: number of input columns.
        indices: columns to transform (default: all ``d``); with an SO(3) kernel on ``active_dims``, pass those.
        bounds: ``2 x d`` (or ``2 x len(indices)``, or ``batch_shape x 2 x ...``) box; ``None``: learn from data.
        batch_shape: batch shape of the learned coefficients (as in ``Normalize``).
        transform_on_train: apply in train mode.
        transform_on_eval: apply in eval mode.
        transform_on_fantasize: apply inside ``fantasize``.
        reverse: swap transform and untransform.
        min_range: if the largest side is below this, the scale is 1 (no scaling; avoids division by ~0).
        learn_bounds: learn the box from the training inputs (default: ``bounds is None``).
        center: where the box midpoint goes in every transformed column (default 0.5).

    Example:
        >>> bounds = torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 1.0]])
        >>> tf = IsotropicNormalize(3, bounds=bounds)
        >>> tf.scale
        tensor(4.)
        >>> tf(torch.tensor([[2.0, 4.0, 1.0]]))
        tensor([[0.7500, 1.0000, 0.6250]])
        >>> tf.untransform(tf(torch.tensor([[1.0, 3.0, 0.5]])))
        tensor([[1.0000, 3.0000, 0.5000]])
        >>> tf.learn_bounds, tf.bounds  # the cube [o, o + s] that maps onto [0, 1] in every column
        (False, tensor([[-1.0000,  0.0000, -1.5000],
                [ 3.0000,  4.0000,  2.5000]]))

        Data-based: the box is learned from the training inputs (in train mode):

        >>> learned = IsotropicNormalize(3)
        >>> _ = learned(torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 1.0]]))
        >>> learned.learn_bounds, learned.scale
        (True, tensor(4.))
        >>> rebuilt = IsotropicNormalize(**learned.get_init_args())  # an equivalent transform
        >>> torch.equal(rebuilt.scale, learned.scale), torch.equal(rebuilt.offset, learned.offset)
        (True, True)
    """

    def __init__(
        self,
        d: int,
        indices: list[int] | Tensor | None = None,
        bounds: Tensor | None = None,
        batch_shape: torch.Size = torch.Size(),  # noqa: B008 - BoTorch's signature
        transform_on_train: bool = True,
        transform_on_eval: bool = True,
        transform_on_fantasize: bool = True,
        reverse: bool = False,
        min_range: float = 1e-8,
        learn_bounds: bool | None = None,
        center: float = 0.5,
    ) -> None:
        """Build the transform (see the class docstring for the arguments)."""
        try:  # numpy integers are accepted (as a Python int); a non-integer is a TypeError
            d = check_int("d", d, 1, where="IsotropicNormalize: ")
        except ValueError:
            raise ValueError(f"IsotropicNormalize: d must be a positive int, got {d!r}") from None
        if not isinstance(center, int | float) or isinstance(center, bool):
            raise TypeError(f"IsotropicNormalize: center must be a float, got {type(center).__name__}")
        if not min_range > 0:
            raise ValueError(f"IsotropicNormalize: min_range must be positive, got {min_range!r}")
        self.learn_coefficients = bounds is None if learn_bounds is None else bool(learn_bounds)
        k = d if indices is None else len(indices)
        if bounds is not None:
            if not torch.is_tensor(bounds) or not bounds.is_floating_point():
                raise TypeError("IsotropicNormalize: bounds must be a floating-point tensor of shape 2 x d")
            if indices is not None and bounds.size(-1) == d and k != d:
                bounds = bounds[..., torch.as_tensor(indices, dtype=torch.long, device=bounds.device)]
            if bounds.dim() < 2 or bounds.size(-2) != 2 or bounds.size(-1) != k:
                raise BotorchTensorDimensionError(
                    f"IsotropicNormalize: bounds must have shape [batch_shape x] 2 x {k} (or 2 x {d} with indices), "
                    f"got {tuple(bounds.shape)}"
                )
            if not bool(torch.isfinite(bounds).all()) or bool((bounds[..., 1, :] < bounds[..., 0, :]).any()):
                raise ValueError("IsotropicNormalize: bounds must be finite with lower <= upper")
            coefficient, offset = self._coefficients_from_box(
                bounds[..., 0:1, :], bounds[..., 1:2, :], min_range, center
            )
            if coefficient.dim() > 2:
                batch_shape = coefficient.shape[:-2]
        else:
            coefficient = torch.ones(*batch_shape, 1, k)
            offset = torch.zeros(*batch_shape, 1, k)
            if not self.learn_coefficients:
                raise ValueError("IsotropicNormalize: learn_bounds=False needs bounds (otherwise it is a no-op)")
        self.center = float(center)
        self.min_range = float(min_range)
        super().__init__(
            d=d,
            coefficient=coefficient,
            offset=offset,
            indices=indices,
            batch_shape=batch_shape,
            transform_on_train=transform_on_train,
            transform_on_eval=transform_on_eval,
            transform_on_fantasize=transform_on_fantasize,
            reverse=reverse,
        )

    @staticmethod
    def _coefficients_from_box(lo: Tensor, hi: Tensor, min_range: float, center: float) -> tuple[Tensor, Tensor]:
        """Common scale (largest side, per batch) and offset from a box ``lo, hi`` (``... x 1 x k``)."""
        scale = (hi - lo).amax(dim=-1, keepdim=True)
        scale = torch.where(scale < min_range, torch.ones_like(scale), scale)
        coefficient = scale.expand_as(lo).clone()
        offset = 0.5 * (lo + hi) - center * coefficient
        return coefficient, offset

    def _update_coefficients(self, X: Tensor) -> None:
        """Learn the common scale and offset from the bounding box of ``X`` (train mode, ``learn_bounds``)."""
        batch_ndim = min(len(self.batch_shape), X.ndim - 2)
        reduce_dims = (*range(X.ndim - batch_ndim - 2), X.ndim - 2)
        lo = torch.amin(X, dim=reduce_dims).unsqueeze(-2)
        hi = torch.amax(X, dim=reduce_dims).unsqueeze(-2)
        self._coefficient, self._offset = self._coefficients_from_box(lo, hi, self.min_range, self.center)

    @property
    def scale(self) -> Tensor:
        """The common scale ``s`` (``batch_shape``; a 0-d tensor without batch)."""
        return self.coefficient[..., 0, 0]

    @property
    def learn_bounds(self) -> bool:
        """Whether the box is learned from the training inputs."""
        return self.learn_coefficients

    @property
    def bounds(self) -> Tensor:
        """The cube ``[o, o + s]`` in every transformed column that maps onto ``[0, 1]``, ``... x 2 x k``."""
        return torch.cat([self.offset, self.offset + self.coefficient], dim=-2)

    def get_init_args(self) -> dict:
        """Arguments of an equivalent transform with fixed coefficients (as BoTorch's ``Normalize``)."""
        # `bounds` is the cube of side s around the learned/given box's midpoint, whose largest side is s and
        # midpoint the same, so rebuilding from it reproduces the coefficients exactly.
        c, o = self.coefficient, self.offset
        mid = o + self.center * c
        return {
            "d": self._d,
            "indices": getattr(self, "indices", None),
            "bounds": torch.cat([mid - 0.5 * c, mid + 0.5 * c], dim=-2),
            "batch_shape": self.batch_shape,
            "transform_on_train": self.transform_on_train,
            "transform_on_eval": self.transform_on_eval,
            "transform_on_fantasize": self.transform_on_fantasize,
            "reverse": self.reverse,
            "min_range": self.min_range,
            "learn_bounds": self.learn_bounds,
            "center": self.center,
        }


# ------------------------------------------------------------------------------------------ scale factors
def _affine_members(transform: InputTransform) -> Iterator[InputTransform]:
    if isinstance(transform, ChainedInputTransform):
        for t in transform.values():
            yield from _affine_members(t)
    else:
        yield transform


def _column_divisors(transform: InputTransform | None, d: int, *, strict: bool) -> Tensor | None:
    """Per-column divisor ``c`` (``x_n = (x - o) / c`` columnwise) of an affine transform, ``batch x d``.

    Columns a member does not touch get 1; chained members multiply. Non-affine members raise ``TypeError``
    with ``strict`` and are skipped otherwise.
    """
    c = torch.ones(d, dtype=torch.float64)
    if transform is None:
        return c
    for t in _affine_members(transform):
        if not isinstance(t, AffineInputTransform):
            if strict:
                raise TypeError(
                    f"cannot map back through a {type(t).__name__} input transform (only affine transforms such as "
                    "Normalize, InputStandardize and IsotropicNormalize have a per-axis scale)"
                )
            continue
        if t._d != d:
            if strict:
                raise ValueError(f"{type(t).__name__} acts on {t._d} columns, expected {d}")
            continue
        coef = t.coefficient.detach().to(torch.float64)
        coef = coef.reciprocal() if t.reverse else coef
        coef = coef.squeeze(-2)
        idx = getattr(t, "indices", None)
        full = torch.ones(*coef.shape[:-1], d, dtype=torch.float64, device=coef.device)
        if idx is None:
            full = full * coef
        else:
            full[..., idx.to(coef.device)] = coef
        c = c.to(full.device) * full
    return c


def input_scale_factors(
    transform: InputTransform | Tensor | None, dims: Sequence[int] | Tensor | None = None
) -> Tensor:
    """Per-axis divisor ``c`` of an affine input transform on a kernel's input columns (``x_n = (x - o) / c``).

    For ``Normalize`` ``c`` is the range of each column, for :class:`IsotropicNormalize` the common scale (equal
    entries), for ``InputStandardize`` the standard deviations; a ``ChainedInputTransform`` of affine
    transforms multiplies them (columns a member does not transform count 1), ``reverse=True`` inverts.

    Args:
        transform: an affine BoTorch input transform (or a chain of them), ``None`` (identity), or a tensor
            ``(..., k)`` of the divisors themselves.
        dims: the ``k >= 2`` input columns (default ``(0, 1, 2)``), e.g. the rotated kernel's ``active_dims``.

    Returns:
        ``(..., k)`` float64 tensor (``...``: the transform's batch shape, if any).

    Raises:
        TypeError: a non-affine transform (its geometry has no per-axis scale).
        ValueError: ``dims`` not at least two distinct columns, or a tensor of the wrong shape or with non-positive
            entries.

    Example:
        >>> from botorch.models.transforms import Normalize
        >>> input_scale_factors(Normalize(3, bounds=torch.tensor([[0.0, 0, 0], [2.0, 4.0, 1.0]])))
        tensor([2., 4., 1.], dtype=torch.float64)
    """
    dims_t = torch.as_tensor((0, 1, 2) if dims is None else dims, dtype=torch.long).reshape(-1)
    if dims_t.numel() < 2 or len(set(dims_t.tolist())) != dims_t.numel() or bool((dims_t < 0).any()):
        raise ValueError(f"dims must be at least two distinct non-negative columns, got {dims!r}")
    if torch.is_tensor(transform):
        c = transform.to(torch.float64)
        if c.dim() < 1 or c.shape[-1] != dims_t.numel():
            raise ValueError(f"scale factors must have shape (..., {dims_t.numel()}), got {tuple(c.shape)}")
        if not bool((c > 0).all()) or not bool(torch.isfinite(c).all()):
            raise ValueError("scale factors must be positive and finite")
        return c
    if transform is not None and not isinstance(transform, InputTransform):
        raise TypeError(f"transform must be a BoTorch InputTransform, a tensor or None, got {type(transform).__name__}")
    ds = [getattr(t, "_d", None) for t in _affine_members(transform)] if transform is not None else []
    ds = [x for x in ds if isinstance(x, int)]
    d = max([int(dims_t.max()) + 1, *ds])
    c = _column_divisors(transform, d, strict=True)
    return c.index_select(-1, dims_t.to(c.device))


def metric_to_physical(
    M: Tensor, transform: InputTransform | Tensor | None, dims: Sequence[int] | Tensor | None = None
) -> Tensor:
    r"""Metric in physical units from a metric fitted on transformed inputs: ``M_phys = S M S``, ``S = diag(1/c)``.

    With ``x_n = (x - o) / c`` columnwise, ``(x_n - x_n')^T M (x_n - x_n') = (x - x')^T S M S (x - x')``.

    Args:
        M: ``(..., d, d)`` metric in transformed coordinates (e.g. ``kernel.metric``), any ``d >= 2``.
        transform: see :func:`input_scale_factors`.
        dims: the ``d`` input columns of the kernel (default ``(0, ..., d - 1)``).

    Returns:
        ``(..., d, d)`` metric in physical units (dtype/device of ``M``).

    Example:
        >>> from botorch.models.transforms import Normalize
        >>> tf = Normalize(3, bounds=torch.tensor([[0.0, 0, 0], [2.0, 4.0, 1.0]]))
        >>> metric_to_physical(torch.eye(3), tf).diagonal()
        tensor([0.2500, 0.0625, 1.0000])
    """
    if not torch.is_tensor(M) or M.dim() < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] < 2:
        raise ValueError(f"M must have shape (..., d, d), got {tuple(M.shape) if torch.is_tensor(M) else type(M)}")
    d = M.shape[-1]
    if dims is None:
        dims = tuple(range(d))
    if len(torch.as_tensor(dims).reshape(-1)) != d:
        raise ValueError(f"dims must name the metric's {d} input columns, got {dims!r}")
    s = input_scale_factors(transform, dims).to(dtype=M.dtype, device=M.device).reciprocal()
    return s.unsqueeze(-1) * M * s.unsqueeze(-2)


def to_physical_units(
    lengthscale: Tensor,
    R: Tensor,
    transform: InputTransform | Tensor | None,
    dims: Sequence[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Canonical principal length-scales and directions in physical units of a fit on transformed inputs.

    Builds ``M = R diag(l)^-2 R^T``, maps it with :func:`metric_to_physical` and returns its canonical principal
    form (:func:`gpytorch_so3.functional.metric_to_canonical`: ascending length-scales, directions as columns).
    For :class:`IsotropicNormalize` this is ``l * s`` with unchanged directions; for a per-axis ``Normalize`` on
    a non-cubic box both length-scales and directions change.

    Args:
        lengthscale: ``(..., d)`` principal length-scales in transformed units (``kernel.lengthscale``, shape
            ``(..., 1, d)``, is accepted too), any ``d >= 2``.
        R: ``(..., d, d)`` rotation; column ``i`` goes with ``lengthscale[..., i]``.
        transform: see :func:`input_scale_factors`.
        dims: the ``d`` input columns of the kernel (default ``(0, ..., d - 1)``).

    Returns:
        ``(lengthscale (..., d), axes (..., d, d))`` in physical units, canonical.

    Example:
        >>> tf = IsotropicNormalize(3, bounds=torch.tensor([[0.0, 0, 0], [2.0, 4.0, 1.0]]))
        >>> ls, axes = to_physical_units(torch.tensor([0.1, 0.2, 0.3]), torch.eye(3), tf)
        >>> ls
        tensor([0.4000, 0.8000, 1.2000])
    """
    if not torch.is_tensor(R) or R.dim() < 2 or R.shape[-1] != R.shape[-2] or R.shape[-1] < 2:
        raise ValueError(f"R must have shape (..., d, d), got {tuple(R.shape) if torch.is_tensor(R) else type(R)}")
    d = R.shape[-1]
    if not torch.is_tensor(lengthscale) or lengthscale.shape[-1:] != (d,):
        raise ValueError(f"lengthscale must have shape (..., {d}) to match R of shape {tuple(R.shape)}")
    if lengthscale.dim() == R.dim() and lengthscale.shape[-2] == 1:  # gpytorch's (..., 1, 3) layout
        lengthscale = lengthscale.squeeze(-2)
    M = F.metric(lengthscale.to(R), R)
    return F.metric_to_canonical(metric_to_physical(M, transform, dims))


# ------------------------------------------------------------------------------------------ model helpers
def _iter_models(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    yield model
    for sub in getattr(model, "models", None) or []:  # ModelListGP and friends
        yield from _iter_models(sub)


def _own_kernels(model: torch.nn.Module) -> list[Anisotropic3DKernel]:
    """Anisotropic 3-D kernels of a model, not descending into sub-models of a model list."""
    subs = getattr(model, "models", None)
    skip = {id(m) for s in (subs or []) for m in s.modules()}
    return [m for m in model.modules() if isinstance(m, Anisotropic3DKernel) and id(m) not in skip]


def _kernel_dims(kernel: Anisotropic3DKernel) -> tuple[int, ...]:
    if kernel.active_dims is None:
        return tuple(range(getattr(kernel, "dim", 3)))
    return tuple(int(i) for i in kernel.active_dims.tolist())


def check_input_scaling(model: torch.nn.Module, *, warn: bool = True, stacklevel: int = 2) -> list[str]:
    """Warn if a rotated/full-SPD kernel sits behind an input transform that scales its axes differently.

    Looks at every model (and, for a ``ModelListGP``, every sub-model) with an ``input_transform``, takes the
    per-axis divisors of its affine members (``Normalize``, ``InputStandardize``, :class:`IsotropicNormalize`;
    non-affine members are ignored) on each anisotropic kernel's active columns, and reports the kernels whose
    divisors differ by more than a relative ``1e-6``. Such a transform shears space: the fitted
    rotation and length-scales then describe the normalised coordinates. Use :class:`IsotropicNormalize`, or
    map the fit back with :func:`to_physical_units`. A model without such a kernel yet (e.g.
    :class:`~gpytorch_so3.SO3FullyBayesianGP`, whose kernel ``fit_nuts`` builds) is checked on the columns it declares
    in its :data:`ANISOTROPIC_INPUT_DIMS` attribute (``anisotropic_input_dims``, e.g. ``(0, 1, 2)``), so this module
    needs no import of the model classes above it. :func:`gpytorch_so3.fit_map` calls this.

    Filter the warning with ``warnings.filterwarnings("ignore", category=NonIsotropicInputScalingWarning)``.

    Args:
        model: a BoTorch/gpytorch model (``SingleTaskGP``, ``ModelListGP``, ``SO3FullyBayesianGP``, ...).
        warn: emit a :class:`~gpytorch_so3.exceptions.NonIsotropicInputScalingWarning` per finding.
        stacklevel: ``stacklevel`` of the warning (2: the caller of this function).

    Returns:
        one message per offending (model, kernel); empty if the scaling is isotropic on every anisotropic kernel.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> X, Y = 4 * torch.rand(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
        >>> model = SingleTaskGP(X, Y, covar_module=so3_covar_module(), input_transform=IsotropicNormalize(3))
        >>> check_input_scaling(model)
        []
    """
    messages = []
    for m in _iter_models(model):
        tf = getattr(m, "input_transform", None)
        if tf is None or not isinstance(tf, InputTransform):
            continue
        dims_list = [_kernel_dims(k) for k in _own_kernels(m)]
        declared = getattr(m, ANISOTROPIC_INPUT_DIMS, None)
        if not dims_list and declared is not None:  # e.g. a fully Bayesian model before its kernel is built
            dims_list = [tuple(int(i) for i in declared)]
        for dims in dims_list:
            ds = [t._d for t in _affine_members(tf) if isinstance(t, AffineInputTransform)]
            if not ds:
                continue
            d = max([max(dims) + 1, *ds])
            c = _column_divisors(tf, d, strict=False)[..., list(dims)]
            ratio = float((c.amax(-1) / c.amin(-1)).max())
            if ratio > 1.0 + ISOTROPY_RTOL:
                per_axis = c.reshape(-1, len(dims))[0].tolist()
                msg = (
                    f"{type(m).__name__}: the input transform scales the anisotropic kernel's columns {list(dims)} by "
                    f"different factors (1 / {[round(v, 6) for v in per_axis]}, ratio {ratio:.3g}); this shears "
                    "space, so the fitted rotation and length-scales describe the normalised coordinates, not the "
                    "physical ones. Use gpytorch_so3.botorch_utils.IsotropicNormalize (one common scale), or map the "
                    "fit back with gpytorch_so3.botorch_utils.to_physical_units."
                )
                messages.append(msg)
                if warn:
                    warnings.warn(msg, NonIsotropicInputScalingWarning, stacklevel=stacklevel)
    return messages


def physical_canonical(model: torch.nn.Module, kernel: Anisotropic3DKernel | None = None) -> tuple[Tensor, Tensor]:
    """Canonical principal length-scales and directions of a fitted model's rotated kernel, in physical units.

    Reads the kernel's metric, maps it through the model's ``input_transform`` on the kernel's active columns
    (:func:`metric_to_physical`) and returns :func:`~gpytorch_so3.functional.metric_to_canonical` of the result.

    Args:
        model: a fitted model with one :class:`~gpytorch_so3.RotatedAnisotropicKernel` (any ``d``, e.g.
            :class:`~gpytorch_so3.SO3AnisotropicKernel`) or :class:`~gpytorch_so3.FullSPDKernel` (e.g. a
            ``SingleTaskGP``, or a fitted ``SO3FullyBayesianGP``: then one row per MCMC sample).
        kernel: the kernel to read if the model has several.

    Returns:
        ``(lengthscale (*batch_shape, d), axes (*batch_shape, d, d))`` in physical units, canonical.

    Raises:
        ValueError: no anisotropic kernel in the model, or several and ``kernel`` not given.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> X, Y = 4 * torch.rand(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
        >>> model = SingleTaskGP(X, Y, covar_module=so3_covar_module(), input_transform=IsotropicNormalize(3))
        >>> ls, axes = physical_canonical(model)  # unfitted: 0.3 in units of the data's largest extent
        >>> bool(torch.allclose(ls, 0.3 * (X.max(0).values - X.min(0).values).max()))
        True
    """
    if kernel is None:
        kernels = _own_kernels(model)
        if len(kernels) != 1:
            n = len(kernels)
            raise ValueError(f"physical_canonical: the model has {n} rotated/full-SPD kernels; pass `kernel=`")
        kernel = kernels[0]
    elif not isinstance(kernel, Anisotropic3DKernel):
        raise TypeError(f"kernel must be an SO3AnisotropicKernel or FullSPDKernel, got {type(kernel).__name__}")
    with torch.no_grad():
        M = kernel.metric
    M_phys = metric_to_physical(M, getattr(model, "input_transform", None), _kernel_dims(kernel))
    return F.metric_to_canonical(M_phys)


physical_principal_axes = deprecated_alias(
    physical_canonical, "botorch_utils.physical_principal_axes", "botorch_utils.physical_canonical"
)
