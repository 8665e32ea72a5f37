r"""Rotation priors and the named default priors/constraints of the SO(3) kernel.

Two priors on the axis-angle vector ``w`` of :class:`~gpytorch_so3.SO3AnisotropicKernel` (both gpytorch
:class:`~gpytorch.priors.Prior` subclasses with ``event_shape == (3,)``, so that gpytorch's prior machinery
and BoTorch's ``sample_all_priors`` sample one ``(*batch_shape, 3)`` rotation at a time):

* :class:`GaussianRotationPrior`: an isotropic Gaussian ``N(0, scale^2 I_3)`` on ``w``;
* :class:`HaarRotationPrior`: the uniform (Haar) distribution on SO(3) written in axis-angle coordinates,
  with a smooth exact construction instead of the hard wall at ``|w| = pi`` (see its docstring).

Defaults live in named constants and small factories, in the style of BoTorch's
``botorch/models/utils/gpytorch_modules.py`` [BoTorch]_: :func:`default_lengthscale_prior`,
:func:`default_rotation_prior`, :func:`default_outputscale_prior`, :func:`default_noise_prior`,
:func:`default_lengthscale_constraint` and the assembled :func:`so3_covar_module`.

**Smoothness** ``nu``: the kernel classes default to ``nu=None`` (squared exponential), like gpytorch's
``RBFKernel``, so that a kernel built with no arguments is the gpytorch analogue; the factories here and in
:mod:`gpytorch_so3.botorch_utils`, and the models built on them, default to :data:`DEFAULT_NU` = 2.5 (Matern-5/2),
as BoTorch's ``get_matern_kernel_with_gamma_prior`` and its fully Bayesian models do: physical fields are rougher
than an RBF assumes, and an RBF then overfits and is overconfident between data.

Shape convention of ``expand``: like gpytorch's own :class:`~gpytorch.priors.MultivariateNormalPrior`, and as
:meth:`gpytorch.Module.pyro_sample_from_prior` calls it (``prior.expand(closure(module).shape)``), the
rotation priors' ``expand(shape)`` takes the *full* shape ``(*batch_shape, 3)`` of the parameter, not the
torch-distributions batch shape. A shape that does not end in 3 raises ``ValueError``.

.. [BoTorch] Balandat et al., "BoTorch: A Framework for Efficient Monte-Carlo Bayesian Optimization",
    NeurIPS 2020; default priors in ``botorch.models.utils.gpytorch_modules``.
.. [Hvarfner2024] C. Hvarfner, E. O. Hellsten, L. Nardi, "Vanilla Bayesian Optimization Performs Great in
    High Dimensions", ICML 2024 (BoTorch's dimension-scaled LogNormal length-scale prior).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.kernels import ScaleKernel
from gpytorch.priors import GammaPrior, LogNormalPrior, Prior
from torch import Tensor
from torch.distributions import constraints

from gpytorch_so3 import so3
from gpytorch_so3._validation import check_dim
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = [
    "DEFAULT",
    "DEFAULT_INITIAL_OUTPUTSCALE",
    "DEFAULT_LENGTHSCALE_LOC",
    "DEFAULT_LENGTHSCALE_MEDIAN",
    "DEFAULT_LENGTHSCALE_SCALE",
    "DEFAULT_NOISE_CONCENTRATION",
    "DEFAULT_NOISE_RATE",
    "DEFAULT_NU",
    "DEFAULT_OUTPUTSCALE_CONCENTRATION",
    "DEFAULT_OUTPUTSCALE_RATE",
    "DEFAULT_ROTATION_SMOOTHING",
    "INITIAL_LENGTHSCALE_RANGE",
    "MAX_ROTATION_SMOOTHING",
    "Default",
    "GaussianRotationPrior",
    "HaarRotationPrior",
    "as_batch_shape",
    "default_lengthscale_constraint",
    "default_lengthscale_prior",
    "default_noise_prior",
    "default_outputscale_prior",
    "default_rotation_prior",
    "initial_lengthscale",
    "so3_covar_module",
]

# ------------------------------------------------------------------------------------------ named defaults
#: Default smoothness of the factories and models (Matern-5/2); the kernel classes default to ``None`` (RBF).
DEFAULT_NU = 2.5
#: Median of the default length-scale prior, for inputs scaled isotropically so that the largest axis extent
#: of the domain is about 1 (one common factor for all axes, never per axis: per-axis scaling shears space).
DEFAULT_LENGTHSCALE_MEDIAN = 0.3
#: ``loc`` of the default LogNormal length-scale prior, ``log(DEFAULT_LENGTHSCALE_MEDIAN)``.
DEFAULT_LENGTHSCALE_LOC = math.log(DEFAULT_LENGTHSCALE_MEDIAN)
#: ``scale`` of the default LogNormal length-scale prior: 95% of the mass in ``0.3 * exp(+-1.96)`` = 0.042..2.1.
DEFAULT_LENGTHSCALE_SCALE = 1.0
#: Initial length-scales (from a prior's median) are clipped to this range (in units of the domain's extent):
#: below ~5% of the domain a few hundred points cannot resolve the field, above 2 domain widths it is flat.
INITIAL_LENGTHSCALE_RANGE = (0.05, 2.0)
#: BoTorch's classic output-scale prior ``Gamma(2.0, 0.15)`` (``get_matern_kernel_with_gamma_prior``).
DEFAULT_OUTPUTSCALE_CONCENTRATION = 2.0
DEFAULT_OUTPUTSCALE_RATE = 0.15
#: Initial output-scale: the variance of a standardised outcome.
DEFAULT_INITIAL_OUTPUTSCALE = 1.0
#: BoTorch's classic noise prior ``Gamma(1.1, 0.05)`` (``get_gaussian_likelihood_with_gamma_prior``).
DEFAULT_NOISE_CONCENTRATION = 1.1
DEFAULT_NOISE_RATE = 0.05
#: Default width ``s`` (radians) of the smooth edge of :class:`HaarRotationPrior`. Measured with Pyro NUTS on the
#: prior alone (1500 draws after 500 warm-up, seed 0): 163 divergent transitions at ``s = 0.1``, 28 at 0.2, none at
#: 0.3 or 0.5; the pushforward to SO(3) was Haar in every case. At 0.3 the construction is exact up to
#: ``Phi(-pi / 0.3)``, about 6e-26.
DEFAULT_ROTATION_SMOOTHING = 0.3
#: Largest accepted ``smoothing``: the construction is exact up to terms of order ``Phi(-pi / s)``
#: (1.7e-10 at ``s = 0.5``); wider edges would make that error visible.
MAX_ROTATION_SMOOTHING = 0.5

_EVENT_SHAPE = torch.Size([3])
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_4PI2 = math.log(4.0 * math.pi**2)


# ------------------------------------------------------------------------------------------ rotation priors
def as_batch_shape(batch_shape: Sequence[int] | torch.Size | None) -> torch.Size:
    """A validated ``torch.Size`` batch shape (``None`` is the empty shape).

    Args:
        batch_shape: ``None`` or a sequence of non-negative ints.

    Returns:
        the batch shape.

    Raises:
        TypeError: not a sequence of ints.
        ValueError: a negative entry.

    Example:
        >>> as_batch_shape(None), as_batch_shape([2, 3])
        (torch.Size([]), torch.Size([2, 3]))
    """
    if batch_shape is None:
        return torch.Size([])
    try:
        shape = torch.Size(batch_shape)
    except TypeError as e:
        raise TypeError(f"batch_shape must be a sequence of ints, got {batch_shape!r}") from e
    if any(s < 0 for s in shape):
        raise ValueError(f"batch_shape entries must be non-negative, got {tuple(shape)}")
    return shape


class _RotationPrior(Prior):
    """Shared mechanics of the priors on an axis-angle vector: event shape ``(3,)``, ``expand``, validation."""

    arg_constraints: dict = {}  # noqa: RUF012 - torch.distributions API (class attribute by design)
    support = constraints.real_vector
    _validate_args = False

    def _init_distribution(self, batch_shape: torch.Size) -> None:
        torch.distributions.Distribution.__init__(
            self, batch_shape=batch_shape, event_shape=_EVENT_SHAPE, validate_args=False
        )
        self._transform = None

    def _batch_shape_of_full_shape(self, shape: Sequence[int] | torch.Size) -> torch.Size:
        shape = torch.Size(shape)
        if shape[-1:] != _EVENT_SHAPE:
            raise ValueError(
                f"{type(self).__name__}.expand takes the full parameter shape (*batch_shape, 3), as gpytorch's "
                f"MultivariateNormalPrior and Module.pyro_sample_from_prior do; got {tuple(shape)}. "
                f"For batch_shape {tuple(shape)} pass {(*tuple(shape), 3)}."
            )
        return shape[:-1]

    def _check_value(self, value: Tensor) -> Tensor:
        if not torch.is_tensor(value):
            raise TypeError(f"{type(self).__name__}.log_prob expects a tensor, got {type(value).__name__}")
        if value.dim() < 1 or value.shape[-1] != 3:
            raise ValueError(
                f"{type(self).__name__}.log_prob expects axis-angle vectors of shape (..., 3), got {tuple(value.shape)}"
            )
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        return self.transform(value)

    def _broadcast(self, lp: Tensor) -> Tensor:
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))


class GaussianRotationPrior(_RotationPrior):
    r"""Isotropic Gaussian prior ``N(0, scale^2 I_3)`` on the axis-angle vector of a rotation.

    .. math::
        p(w) = (2 \pi s^2)^{-3/2} \exp\!\left(-\frac{|w|^2}{2 s^2}\right).

    A weakly informative choice that prefers small rotations from the identity (the input axes). It is not
    invariant under rotations of the data frame; use :class:`HaarRotationPrior` for "no preferred
    orientation". Reparameterised sampling (``rsample``) is supported.

    Args:
        scale: standard deviation ``s`` (radians) of each coordinate; a positive float or a tensor
            broadcastable to ``batch_shape``.
        batch_shape: batch shape of the prior (default: none); the event shape is always ``(3,)``.

    Example:
        >>> prior = GaussianRotationPrior(scale=0.5)
        >>> prior.sample((4,)).shape
        torch.Size([4, 3])
        >>> prior.expand((2, 3)).batch_shape
        torch.Size([2])
    """

    has_rsample = True

    def __init__(self, scale: float | Tensor = 1.0, batch_shape: Sequence[int] | torch.Size | None = None) -> None:
        torch.nn.Module.__init__(self)
        batch_shape = as_batch_shape(batch_shape)
        scale_t = torch.as_tensor(scale, dtype=scale.dtype if torch.is_tensor(scale) else torch.get_default_dtype())
        if not scale_t.is_floating_point():
            scale_t = scale_t.to(torch.get_default_dtype())
        if not bool(torch.isfinite(scale_t).all()) or not bool((scale_t > 0).all()):
            raise ValueError(f"GaussianRotationPrior: scale must be positive and finite, got {scale!r}")
        try:
            scale_t = scale_t.expand(batch_shape).clone()
        except RuntimeError as e:
            raise ValueError(
                f"GaussianRotationPrior: scale of shape {tuple(scale_t.shape)} does not broadcast to batch_shape "
                f"{tuple(batch_shape)}"
            ) from e
        self._init_distribution(batch_shape)  # first: Distribution.__init__ re-runs Module.__init__ (wipes buffers)
        self.register_buffer("scale", scale_t)

    def expand(self, batch_shape: Sequence[int] | torch.Size, _instance=None) -> GaussianRotationPrior:
        """A copy for a parameter of full shape ``batch_shape`` = ``(*new_batch_shape, 3)`` (gpytorch convention)."""
        new_batch = self._batch_shape_of_full_shape(batch_shape)
        try:
            scale = self.scale.expand(new_batch)
        except RuntimeError as e:
            raise ValueError(
                f"GaussianRotationPrior.expand: batch_shape {tuple(self.batch_shape)} cannot be expanded to "
                f"{tuple(new_batch)} (full shape {(*tuple(new_batch), 3)})"
            ) from e
        return GaussianRotationPrior(scale, batch_shape=new_batch)

    @property
    def mean(self) -> Tensor:
        """Zeros of shape ``batch_shape x 3``."""
        return torch.zeros(*self.batch_shape, 3, dtype=self.scale.dtype, device=self.scale.device)

    @property
    def variance(self) -> Tensor:
        """``scale^2`` in every coordinate, ``batch_shape x 3``."""
        return (self.scale**2).unsqueeze(-1).expand(*self.batch_shape, 3)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of axis-angle vectors.

        Args:
            value: ``... x 3`` vectors (broadcast against ``batch_shape``).

        Returns:
            log densities of shape ``broadcast(..., batch_shape)``.
        """
        w = self._check_value(value)
        s = self.scale.to(w)
        lp = -0.5 * (w * w).sum(-1) / (s * s) - 3.0 * torch.log(s) - 1.5 * _LOG_2PI
        return self._broadcast(lp)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Reparameterised draws ``scale * eps``, shape ``sample_shape x batch_shape x 3``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.scale.dtype, device=self.scale.device)
        return eps * self.scale.unsqueeze(-1)

    def extra_repr(self) -> str:
        """Shown in ``repr``."""
        return f"batch_shape={tuple(self.batch_shape)}"


def _log_haar_radial(t: Tensor) -> Tensor:
    r"""``log[(1 - cos t) / (4 pi^2 t^2)]``, finite with finite gradient for every ``t >= 0``.

    Written as ``log(0.5 sinc(t/2)^2) - log(4 pi^2)``: no cancellation in ``1 - cos t`` near 0, and ``sinc`` has a
    Taylor branch at 0 (value 1, derivative 0). ``sinc(t/2)^2`` vanishes at ``t = 2 pi k`` (k >= 1), where the log
    and its gradient diverge; it is floored at the dtype's machine epsilon, which keeps value and gradient finite
    (``|grad| <= 1 / (pi sqrt(eps))``) and changes the density only within ``2 pi sqrt(eps)`` of ``2 pi k``, where it is
    below ``eps`` relative to its peak and further multiplied by ``Phi(-pi / s)``: a mass change below 1e-30.
    """
    sinc_sq = so3.sinc(0.5 * t) ** 2
    return torch.log(0.5 * sinc_sq.clamp_min(torch.finfo(t.dtype).eps)) - _LOG_4PI2


class HaarRotationPrior(_RotationPrior):
    r"""The Haar (uniform-on-SO(3)) distribution in axis-angle coordinates, with a smooth instead of a hard edge.

    **The Haar density in axis-angle coordinates.** The exponential map sends the ball ``|w| <= pi`` onto SO(3);
    the uniform measure on SO(3) pulled back to that ball has density

    .. math::
        p(w) = \frac{1 - \cos|w|}{4 \pi^2 |w|^2}, \qquad |w| \le \pi,

    which integrates to one (``4 pi int_0^pi t^2 p(t) dt = (1/pi) int_0^pi (1 - cos t) dt = 1``). Its support has
    a hard wall at ``|w| = pi``: a gradient-based sampler (HMC/NUTS) or optimiser (L-BFGS) stepping across
    it meets ``log p = -inf``.

    **The smooth, exact construction used here.** Replace the ball's indicator by the smooth radial weight
    ``h(t) = Phi((pi - t) / s)`` (``Phi``: standard normal CDF, ``s``: :attr:`smoothing`):

    .. math::
        p_s(w) = \frac{1 - \cos|w|}{4 \pi^2 |w|^2}\, \Phi\!\left(\frac{\pi - |w|}{s}\right), \qquad w \in \mathbb R^3.

    Because ``h(t) + h(2 pi - t) = 1`` and ``1 - cos t`` is symmetric about ``pi``:

    1. ``p_s`` integrates to one up to ``O(Phi(-pi / s))`` (about ``6e-26`` for ``s = 0.3``): the mass moved
       beyond ``|w| = pi`` is exactly the mass removed inside it, reflected about ``pi``;
    2. it pushes forward through ``exp_map`` *exactly* to the Haar measure: a rotation by ``theta`` about ``u``
       has the preimages ``theta u`` (weight ``h(theta)``) and ``-(2 pi - theta) u`` (weight
       ``h(2 pi - theta) = 1 - h(theta)``), and the volume factor ``(1 - cos t) / t^2`` of ``exp`` is the same at
       both; farther preimages (``|w| > 2 pi``) carry weights below ``Phi(-pi / s)``;
    3. ``log p_s`` is smooth everywhere, with a Gaussian-like tail of width ``s`` beyond ``pi`` instead of a wall,
       so HMC/NUTS and L-BFGS can cross ``|w| = pi`` (the same rotations continue on the far side).

    It is therefore *not* an approximation of the Haar prior: any function of the rotation ``exp_map(w)`` has
    the same distribution under ``p_s`` as under the Haar measure. (As for any density in coordinates, the MAP
    point in ``w`` carries the log-Jacobian ``log[(1 - cos|w|) / |w|^2]``, which varies by ~0.9 nats over the ball.)

    **Numerics.** ``log p_s`` uses ``(1 - cos t) / t^2 = 0.5 sinc(t/2)^2`` with a Taylor branch at 0 and
    ``torch.special.log_ndtr`` for ``log Phi``: finite values and gradients at ``w = 0``, at ``|w| = pi`` and
    everywhere else (the zeros of ``1 - cos`` at ``|w| = 2 pi k`` are clamped, see ``_log_haar_radial``).

    **Sampling** is exact: draw Haar rotations (:func:`so3.random_rotation`), take ``w = so3.log_map(R)``
    (``theta = |w| <= pi``), and with probability ``1 - h(theta)`` replace ``w`` by its other preimage
    ``-(2 pi - theta) w / |w|``. Samples never exceed ``|w| = 2 pi`` (the neglected mass is below
    ``Phi(-pi / s)``). There is no reparameterised sampler: ``has_rsample`` is False and :meth:`rsample` raises
    ``NotImplementedError`` (gpytorch's ``sample_from_prior``, BoTorch's ``sample_all_priors`` and Pyro's
    NUTS only need :meth:`sample` and :meth:`log_prob`).

    Args:
        smoothing: width ``s`` in radians of the smooth edge at ``|w| = pi``, in ``(0, 0.5]`` (default
            :data:`DEFAULT_ROTATION_SMOOTHING` = 0.3; see :data:`MAX_ROTATION_SMOOTHING`). Any value gives the exact
            Haar pushforward; smaller is closer to the hard wall, larger is gentler on samplers (a Pyro NUTS
            run on the prior alone had ~11% divergent transitions at ``s = 0.1`` and none at ``s = 0.3``).
        batch_shape: batch shape of the prior (default: none); the event shape is always ``(3,)``.

    Example:
        >>> prior = HaarRotationPrior()
        >>> w = prior.sample((1000,))
        >>> w.shape
        torch.Size([1000, 3])
        >>> bool(torch.isfinite(prior.log_prob(torch.zeros(3))))
        True
        >>> prior.smoothing  # the edge weight Phi((pi - |w|) / s) halves the density at |w| = pi
        0.3
        >>> prior.edge_weight(torch.tensor([0.0, math.pi, 3.5]))
        tensor([1.0000, 0.5000, 0.1161])
    """

    has_rsample = False

    def __init__(
        self,
        smoothing: float = DEFAULT_ROTATION_SMOOTHING,
        batch_shape: Sequence[int] | torch.Size | None = None,
    ) -> None:
        torch.nn.Module.__init__(self)
        if isinstance(smoothing, bool) or not isinstance(smoothing, int | float):
            if torch.is_tensor(smoothing) and smoothing.numel() == 1:
                smoothing = float(smoothing)
            else:
                raise TypeError(f"HaarRotationPrior: smoothing must be a float, got {type(smoothing).__name__}")
        smoothing = float(smoothing)
        if not (0.0 < smoothing <= MAX_ROTATION_SMOOTHING):
            raise ValueError(
                f"HaarRotationPrior: smoothing must be in (0, {MAX_ROTATION_SMOOTHING}], got {smoothing!r}"
            )
        batch_shape = as_batch_shape(batch_shape)
        self._init_distribution(batch_shape)  # first: Distribution.__init__ re-runs Module.__init__ (wipes buffers)
        # `s` is a constructor setting like the kernel's `nu`: an exact Python float, not in the state_dict (a float32
        # buffer would round it, and BoTorch's state_dict checkpoints accept tensors only). An empty non-persistent
        # buffer carries the module's dtype/device, so samples follow `kernel.double()` / `.to(device)`.
        self._smoothing = smoothing
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def expand(self, batch_shape: Sequence[int] | torch.Size, _instance=None) -> HaarRotationPrior:
        """A copy for a parameter of full shape ``batch_shape`` = ``(*new_batch_shape, 3)`` (gpytorch convention)."""
        new_batch = self._batch_shape_of_full_shape(batch_shape)
        new = HaarRotationPrior(self._smoothing, batch_shape=new_batch)
        return new.to(dtype=self._anchor.dtype, device=self._anchor.device)

    @property
    def smoothing(self) -> float:
        """Width ``s`` (radians) of the smooth edge at ``|w| = pi``."""
        return self._smoothing

    @property
    def mean(self) -> Tensor:
        """Zeros of shape ``batch_shape x 3`` (exact: the density is radially symmetric)."""
        return torch.zeros(*self.batch_shape, 3, dtype=self._anchor.dtype, device=self._anchor.device)

    def edge_weight(self, t: Tensor) -> Tensor:
        """The radial weight ``h(t) = Phi((pi - t) / s)`` of the smooth edge, elementwise."""
        return torch.special.ndtr((math.pi - t) / self._smoothing)

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``log p_s(w) = log[(1 - cos|w|) / (4 pi^2 |w|^2)] + log Phi((pi - |w|) / s)``.

        Args:
            value: ``... x 3`` axis-angle vectors (any length; broadcast against ``batch_shape``).

        Returns:
            log densities of shape ``broadcast(..., batch_shape)``; finite, with finite gradients, everywhere.
        """
        w = self._check_value(value)
        t = so3.safe_norm(w)  # gradient 0 (not NaN) at w = 0, where the density is flat
        lp = _log_haar_radial(t) + torch.special.log_ndtr((math.pi - t) / self._smoothing)
        return self._broadcast(lp)

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Exact draws, shape ``sample_shape x batch_shape x 3`` (dtype/device of the module, see ``.to()``)."""
        shape = self._extended_shape(torch.Size(sample_shape))[:-1]
        dtype, device = self._anchor.dtype, self._anchor.device
        with torch.no_grad():
            w = so3.log_map(so3.random_rotation(*shape, dtype=dtype, device=device), check=False)  # exact rotations
            theta = so3.safe_norm(w)
            flip = torch.rand(shape, dtype=dtype, device=device) >= self.edge_weight(theta)  # P = 1 - h(theta)
            theta_safe = torch.where(theta > 0, theta, torch.ones_like(theta))
            other = w * (-(2.0 * math.pi - theta_safe) / theta_safe).unsqueeze(-1)
            return torch.where((flip & (theta > 0)).unsqueeze(-1), other, w)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Not available: the Haar sampler is not reparameterised (use :meth:`sample`)."""
        raise NotImplementedError(
            "HaarRotationPrior has no reparameterised sampler (has_rsample=False); use .sample() instead"
        )

    def extra_repr(self) -> str:
        """Shown in ``repr``."""
        return f"smoothing={self._smoothing:g}, batch_shape={tuple(self.batch_shape)}"


# ------------------------------------------------------------------------------------------ default factories
def default_lengthscale_prior() -> LogNormalPrior:
    r"""Default prior of the three principal length-scales: ``LogNormal(log 0.3, 1.0)``.

    Intended for inputs scaled *isotropically* (one common factor for all axes) so that the largest axis
    extent of the domain is about 1. Median 0.3, mode ``0.3 / e = 0.11``, 95% of the mass in ``0.042..2.1``:
    a short principal axis of a few percent of the domain and a long axis beyond the domain are both well
    inside the prior, as strongly anisotropic geological/physical fields need (ratios of 10-100 between the
    principal length-scales are common), while length-scales far beyond the domain (a flat field) or far
    below the sampling density are discouraged.

    Compared with BoTorch's dimension-scaled ``LogNormal(sqrt(2) + log(d) / 2, sqrt(3))`` [Hvarfner2024]_:
    for ``d = 3`` its median is ``exp(1.96) = 7.1`` unit-cube widths, a choice made for high-dimensional
    Bayesian optimisation where most inputs should be nearly irrelevant. In three spatial dimensions all axes
    matter and anisotropy is the point, so the prior is centred inside the domain instead; it is also
    narrower (scale 1 instead of ``sqrt(3)``) because the data scale is fixed by the isotropic scaling.

    Returns:
        a fresh :class:`gpytorch.priors.LogNormalPrior` (scalar; applies to each length-scale).

    Example:
        >>> round(float(default_lengthscale_prior().icdf(torch.tensor(0.5))), 6)  # median
        0.3
    """
    return LogNormalPrior(loc=DEFAULT_LENGTHSCALE_LOC, scale=DEFAULT_LENGTHSCALE_SCALE)


def default_rotation_prior() -> HaarRotationPrior:
    """Default rotation prior: :class:`HaarRotationPrior` (uniform over orientations, smooth edge ``s = 0.3``).

    No orientation is preferred a priori, so the fitted principal directions do not depend on the
    coordinate frame the data happen to be written in.

    Returns:
        a fresh ``HaarRotationPrior(smoothing=DEFAULT_ROTATION_SMOOTHING)``.

    Example:
        >>> default_rotation_prior().event_shape
        torch.Size([3])
    """
    return HaarRotationPrior(smoothing=DEFAULT_ROTATION_SMOOTHING)


def default_outputscale_prior() -> GammaPrior:
    """Default output-scale prior ``Gamma(2.0, 0.15)``, BoTorch's classic default for standardised outcomes.

    As in ``botorch.models.utils.gpytorch_modules.get_matern_kernel_with_gamma_prior`` [BoTorch]_: broad
    (mean 13.3, 95% mass 1.6..37), mainly keeping the output-scale away from 0.

    Returns:
        a fresh :class:`gpytorch.priors.GammaPrior`.

    Example:
        >>> default_outputscale_prior().concentration
        tensor(2.)
    """
    return GammaPrior(DEFAULT_OUTPUTSCALE_CONCENTRATION, DEFAULT_OUTPUTSCALE_RATE)


def default_noise_prior() -> GammaPrior:
    """Default noise-variance prior ``Gamma(1.1, 0.05)``, BoTorch's classic default for standardised outcomes.

    As in ``botorch.models.utils.gpytorch_modules.get_gaussian_likelihood_with_gamma_prior`` [BoTorch]_ (which
    also bounds the noise below by ``1e-4``). Nearly flat near 0 (concentration 1.1), so small noise levels
    are not penalised. Meant for MAP fits; the fully Bayesian model uses BoTorch's tighter fully Bayesian prior
    ``Gamma(0.9, 10.0)`` instead (:func:`gpytorch_so3.fully_bayesian.default_fully_bayesian_noise_prior`).

    Returns:
        a fresh :class:`gpytorch.priors.GammaPrior`.

    Example:
        >>> default_noise_prior().rate
        tensor(0.0500)
    """
    return GammaPrior(DEFAULT_NOISE_CONCENTRATION, DEFAULT_NOISE_RATE)


def default_lengthscale_constraint() -> Positive:
    """Default length-scale constraint: gpytorch's ``Positive()`` (softplus transform).

    Not BoTorch's ``GreaterThan(0.025, transform=None)``: a bound without a transform is only enforced by
    bound-aware optimisers (L-BFGS-B), not by Adam or by NUTS on the raw parameter, and the data scale (hence a
    sensible floor) is the user's choice. The LogNormal prior already keeps MAP and posterior length-scales
    away from 0 (its density vanishes faster than any power there); the softplus keeps every optimiser and
    sampler in the valid region.

    Returns:
        a fresh :class:`gpytorch.constraints.Positive`.

    Example:
        >>> default_lengthscale_constraint()
        Positive()
    """
    return Positive()


class Default:
    """Type of the sentinel :data:`DEFAULT`: "use the documented default" (while ``None`` means "no prior").

    Example:
        >>> DEFAULT, isinstance(DEFAULT, Default)
        (<default>, True)
    """

    def __repr__(self) -> str:
        return "<default>"


#: Sentinel default of the factories' prior arguments (``None`` would mean "no prior").
DEFAULT = Default()


def initial_lengthscale(prior: Prior | None) -> float:
    """The prior's median (else mode, else mean), clipped to :data:`INITIAL_LENGTHSCALE_RANGE`.

    Args:
        prior: a length-scale prior, or ``None`` (then :data:`DEFAULT_LENGTHSCALE_MEDIAN`).

    Returns:
        the initial length-scale.

    Example:
        >>> round(initial_lengthscale(default_lengthscale_prior()), 6), initial_lengthscale(None)
        (0.3, 0.3)
    """
    value = DEFAULT_LENGTHSCALE_MEDIAN
    if prior is not None:
        for getter in (lambda p: p.icdf(torch.tensor(0.5)), lambda p: p.mode, lambda p: p.mean):
            try:
                v = torch.as_tensor(getter(prior), dtype=torch.float64)
            except (NotImplementedError, AttributeError, RuntimeError, ValueError, TypeError):
                continue
            if v.numel() >= 1 and bool(torch.isfinite(v).all()) and bool((v > 0).all()):
                value = float(v.reshape(-1)[0])
                break
    lo, hi = INITIAL_LENGTHSCALE_RANGE
    return min(max(value, lo), hi)


# Deprecated private aliases (other modules still use them; the integrator removes them).
_as_batch_shape = as_batch_shape
_Default = Default
_DEFAULT = DEFAULT
_initial_lengthscale = initial_lengthscale


def so3_covar_module(
    nu: float | None = DEFAULT_NU,
    *,
    batch_shape: Sequence[int] | torch.Size | None = None,
    active_dims: tuple[int, ...] | None = None,
    lengthscale_prior: Prior | Default | None = DEFAULT,
    rotation_prior: Prior | Default | None = DEFAULT,
    outputscale_prior: Prior | Default | None = DEFAULT,
    lengthscale_constraint: Interval | None = None,
) -> ScaleKernel:
    r"""``ScaleKernel(SO3AnisotropicKernel(nu))`` with the default priors and sensible initial values.

    The SO(3) analogue of BoTorch's ``get_matern_kernel_with_gamma_prior``: length-scale prior
    :func:`default_lengthscale_prior`, rotation prior :func:`default_rotation_prior`, output-scale prior
    :func:`default_outputscale_prior`, constraint :func:`default_lengthscale_constraint`. Initial values: the
    three length-scales at the prior's median (0.3 for the default; clipped to
    :data:`INITIAL_LENGTHSCALE_RANGE`), rotation 0 (the identity), output-scale 1 (a standardised outcome).
    Use it with inputs scaled isotropically to a domain of extent about 1 and a standardised outcome.

    Args:
        nu: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default :data:`DEFAULT_NU` = 2.5;
            note that ``SO3AnisotropicKernel()`` itself defaults to ``None``, see the module docstring).
        batch_shape: batch shape of the hyperparameters (default: none).
        active_dims: three input columns the kernel acts on (default: all, inputs must be 3-D).
        lengthscale_prior: prior on the length-scales (default :func:`default_lengthscale_prior`; ``None``:
            no prior).
        rotation_prior: prior on the axis-angle vector (default :func:`default_rotation_prior`; ``None``: none).
        outputscale_prior: prior on the output-scale (default :func:`default_outputscale_prior`; ``None``: none).
        lengthscale_constraint: constraint of the length-scales (default :func:`default_lengthscale_constraint`).

    Returns:
        a :class:`gpytorch.kernels.ScaleKernel` whose ``base_kernel`` is an :class:`~gpytorch_so3.SO3AnisotropicKernel`.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> X, Y = torch.rand(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> model = SingleTaskGP(X, Y, covar_module=so3_covar_module())
        >>> model.covar_module.base_kernel.lengthscale.detach()
        tensor([[0.3000, 0.3000, 0.3000]], dtype=torch.float64)
    """
    if isinstance(lengthscale_prior, Default):
        lengthscale_prior = default_lengthscale_prior()
    if isinstance(rotation_prior, Default):
        rotation_prior = default_rotation_prior()
    if isinstance(outputscale_prior, Default):
        outputscale_prior = default_outputscale_prior()
    if lengthscale_constraint is None:
        lengthscale_constraint = default_lengthscale_constraint()
    batch_shape = as_batch_shape(batch_shape)
    base = SO3AnisotropicKernel(
        nu=nu,
        lengthscale_prior=lengthscale_prior,
        lengthscale_constraint=lengthscale_constraint,
        rotation_prior=rotation_prior,
        batch_shape=batch_shape,
        active_dims=active_dims,
    )
    base.initialize(lengthscale=initial_lengthscale(lengthscale_prior))
    base.initialize(raw_rotation=torch.zeros_like(base.raw_rotation))
    kernel = ScaleKernel(base, batch_shape=batch_shape, outputscale_prior=outputscale_prior)
    kernel.initialize(outputscale=DEFAULT_INITIAL_OUTPUTSCALE)
    return kernel


# ======================================================================================================================
# Rotation priors in d dimensions (issue 17): priors on the so(d) coordinates of RotatedAnisotropicKernel.
#
# * d = 2: the Haar measure of SO(2) in the angle coordinate is uniform on (-pi, pi], density 1 / (2 pi);
#   :class:`HaarAnglePrior` is its smooth-edged exact version (the construction of HaarRotationPrior in one dimension).
# * d = 3: :class:`HaarRotationPrior` (above) is the Haar measure in axis-angle coordinates.
# * d >= 4: Haar in exponential coordinates is not used. Its density needs the planar rotation angles of hat(w)
#   (an eigen-decomposition inside every log-density evaluation), products of sinc-type factors over all pairs of
#   angles, and the principal domain (all angles < pi) is bounded by the cut locus, where a smooth, exact edge as in
#   d = 3 would need a reflection argument for every angle. Instead the coordinates get a Gaussian
#   (:class:`GaussianLieAlgebraPrior`) or a Gaussian scale mixture that shrinks towards the identity
#   (:class:`ShrinkageRotationPrior`): not frame-invariant, but with inputs that are meaningful variables (Bayesian
#   optimisation) an axis-aligned truth is the common case and must not be penalised.
# ======================================================================================================================

#: Standard deviation (radians) of the "spike" of :class:`ShrinkageRotationPrior`: 0.05 rad = 2.9 degrees, below
#: the 6 degree accuracy targeted for recovered principal directions, so an axis-aligned fit sits inside the spike.
DEFAULT_SHRINKAGE_SPIKE_SCALE = 0.05
#: Standard deviation (radians) of the "slab": 1 rad per coordinate (as GaussianRotationPrior's default), which covers
#: every metric (modulo the signed permutations, each planar angle needs at most pi / 4 = 0.79 rad).
DEFAULT_SHRINKAGE_SLAB_SCALE = 1.0
#: Prior probability of the spike for each coordinate (George & McCulloch's continuous spike-and-slab): 0.5, no
#: preference between "this plane is not rotated" and "it is".
DEFAULT_SHRINKAGE_SPIKE_WEIGHT = 0.5


def _positive_float(owner: str, name: str, value: float) -> float:
    if torch.is_tensor(value) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be positive and finite, got {value!r}")
    return value


class _LieAlgebraPrior(Prior):
    """Shared mechanics of priors on so(d) coordinates: event shape ``(d (d - 1) / 2,)``, ``expand``, validation.

    Parameters are Python floats (constructor settings, like the kernel's ``nu``); an empty non-persistent buffer
    carries the module's dtype and device, so samples follow ``.to()``.
    """

    arg_constraints: dict = {}  # noqa: RUF012 - torch.distributions API (class attribute by design)
    support = constraints.real_vector
    _validate_args = False

    def _setup(self, dim: int, batch_shape: Sequence[int] | torch.Size | None) -> None:
        torch.nn.Module.__init__(self)
        self._dim = dim = check_dim(dim)
        m = dim * (dim - 1) // 2
        torch.distributions.Distribution.__init__(
            self, batch_shape=_as_batch_shape(batch_shape), event_shape=torch.Size([m]), validate_args=False
        )
        self._transform = None
        # After Distribution.__init__ (which re-runs Module.__init__ and would wipe buffers).
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @property
    def dim(self) -> int:
        """The dimension ``d`` of the rotations (event shape ``(d (d - 1) / 2,)``)."""
        return self._dim

    def _batch_shape_of_full_shape(self, shape: Sequence[int] | torch.Size) -> torch.Size:
        shape = torch.Size(shape)
        m = self.event_shape[0]
        if shape[-1:] != self.event_shape:
            raise ValueError(
                f"{type(self).__name__}.expand takes the full parameter shape (*batch_shape, {m}), as gpytorch's "
                f"Module.pyro_sample_from_prior does; got {tuple(shape)}. For batch_shape {tuple(shape)} pass "
                f"{(*tuple(shape), m)}."
            )
        return shape[:-1]

    def _check_value(self, value: Tensor) -> Tensor:
        m = self.event_shape[0]
        if not torch.is_tensor(value):
            raise TypeError(f"{type(self).__name__}.log_prob expects a tensor, got {type(value).__name__}")
        if value.dim() < 1 or value.shape[-1] != m:
            raise ValueError(
                f"{type(self).__name__}.log_prob expects so({self._dim}) coordinates of shape (..., {m}), "
                f"got {tuple(value.shape)}"
            )
        if not value.is_floating_point():
            value = value.to(self._anchor.dtype)
        return value

    def _broadcast(self, lp: Tensor) -> Tensor:
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    def _new(self, batch_shape: torch.Size) -> _LieAlgebraPrior:
        raise NotImplementedError

    def expand(self, batch_shape: Sequence[int] | torch.Size, _instance=None) -> _LieAlgebraPrior:
        """A copy for a parameter of full shape ``batch_shape`` = ``(*new_batch_shape, m)`` (gpytorch convention)."""
        new = self._new(self._batch_shape_of_full_shape(batch_shape))
        return new.to(dtype=self._anchor.dtype, device=self._anchor.device)

    @property
    def mean(self) -> Tensor:
        """Zeros, ``batch_shape x m`` (every prior here is symmetric about 0)."""
        return torch.zeros(self._extended_shape(), dtype=self._anchor.dtype, device=self._anchor.device)


class GaussianLieAlgebraPrior(_LieAlgebraPrior):
    r"""Isotropic Gaussian ``N(0, scale^2 I_m)`` on the ``m = d (d - 1) / 2`` so(d) coordinates of a rotation.

    .. math::
        p(w) = (2 \pi s^2)^{-m/2} \exp\!\left(-\frac{|w|^2}{2 s^2}\right).

    The d-dimensional :class:`GaussianRotationPrior` (for ``dim = 3`` it has the same density). Prefers small
    rotations from the input axes; reparameterised sampling is supported.

    Args:
        dim: the dimension ``d >= 2`` of the rotations.
        scale: standard deviation ``s`` (radians) of each coordinate (default 1.0).
        batch_shape: batch shape of the prior (default: none); the event shape is ``(m,)``.

    Example:
        >>> prior = GaussianLieAlgebraPrior(4, scale=0.5)
        >>> prior.event_shape, prior.sample((10,)).shape
        (torch.Size([6]), torch.Size([10, 6]))
        >>> prior.expand((2, 6)).batch_shape
        torch.Size([2])
    """

    has_rsample = True

    def __init__(self, dim: int, scale: float = 1.0, batch_shape: Sequence[int] | torch.Size | None = None) -> None:
        scale = _positive_float("GaussianLieAlgebraPrior", "scale", scale)
        self._setup(dim, batch_shape)
        self._scale = scale

    def _new(self, batch_shape: torch.Size) -> GaussianLieAlgebraPrior:
        return GaussianLieAlgebraPrior(self._dim, self._scale, batch_shape=batch_shape)

    @property
    def scale(self) -> float:
        """Standard deviation of each coordinate."""
        return self._scale

    @property
    def variance(self) -> Tensor:
        """``scale^2`` in every coordinate, ``batch_shape x m``."""
        return torch.full(self._extended_shape(), self._scale**2, dtype=self._anchor.dtype, device=self._anchor.device)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of so(d) coordinates ``... x m`` (broadcast against ``batch_shape``)."""
        w = self._check_value(value)
        m, s = self.event_shape[0], self._scale
        lp = -0.5 * (w * w).sum(-1) / (s * s) - m * math.log(s) - 0.5 * m * _LOG_2PI
        return self._broadcast(lp)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Reparameterised draws ``scale * eps``, shape ``sample_shape x batch_shape x m``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        return self._scale * torch.randn(shape, dtype=self._anchor.dtype, device=self._anchor.device)

    def extra_repr(self) -> str:
        """Shown in ``repr``."""
        return f"dim={self._dim}, scale={self._scale:g}, batch_shape={tuple(self.batch_shape)}"


class ShrinkageRotationPrior(_LieAlgebraPrior):
    r"""Continuous spike-and-slab prior on so(d) coordinates: shrinks towards the identity (axis-aligned metric).

    Each of the ``m = d (d - 1) / 2`` coordinates is independently a two-component Gaussian scale mixture
    [GeorgeMcCulloch1993]_:

    .. math::
        p(w) = \prod_{k=1}^{m} \left[\pi_0\, \mathcal N(w_k; 0, s_0^2) + (1 - \pi_0)\, \mathcal N(w_k; 0, s_1^2)\right]

    with a narrow spike ``s_0`` (default :data:`DEFAULT_SHRINKAGE_SPIKE_SCALE` = 0.05 rad), a broad slab ``s_1``
    (default :data:`DEFAULT_SHRINKAGE_SLAB_SCALE` = 1 rad) and spike weight ``pi_0`` (default
    :data:`DEFAULT_SHRINKAGE_SPIKE_WEIGHT` = 0.5). Near ``w = 0`` the density is ``~ (pi_0 s_1 / s_0)`` times higher per
    coordinate than the slab alone (``log 10.5 = 2.35`` nats per coordinate at the defaults): an axis-aligned
    metric (gpytorch's ARD kernel) is favoured, not penalised, while a rotation that the data support pays at most
    ``log(1 / (1 - pi_0)) = 0.69`` nats per coordinate compared with the slab alone. Smooth everywhere (a mixture of
    Gaussians), so L-BFGS and NUTS work; sampling is exact (component, then Gaussian); no ``rsample``.

    Args:
        dim: the dimension ``d >= 2`` of the rotations.
        spike_scale: ``s_0``, standard deviation (radians) of the spike.
        slab_scale: ``s_1 > s_0``, standard deviation (radians) of the slab.
        spike_weight: ``pi_0`` in ``(0, 1)``.
        batch_shape: batch shape of the prior (default: none); the event shape is ``(m,)``.

    Example:
        >>> prior = ShrinkageRotationPrior(2)
        >>> lp = prior.log_prob(torch.tensor([[0.0], [0.5]]))
        >>> bool(lp[0] > lp[1] + 2.0)  # the identity is favoured
        True
        >>> ShrinkageRotationPrior(6).sample((3,)).shape
        torch.Size([3, 15])

    .. [GeorgeMcCulloch1993] E. I. George, R. E. McCulloch, "Variable selection via Gibbs sampling", JASA 88 (1993).
    """

    has_rsample = False

    def __init__(
        self,
        dim: int,
        spike_scale: float = DEFAULT_SHRINKAGE_SPIKE_SCALE,
        slab_scale: float = DEFAULT_SHRINKAGE_SLAB_SCALE,
        spike_weight: float = DEFAULT_SHRINKAGE_SPIKE_WEIGHT,
        batch_shape: Sequence[int] | torch.Size | None = None,
    ) -> None:
        owner = "ShrinkageRotationPrior"
        spike_scale = _positive_float(owner, "spike_scale", spike_scale)
        slab_scale = _positive_float(owner, "slab_scale", slab_scale)
        spike_weight = _positive_float(owner, "spike_weight", spike_weight)
        if not spike_scale < slab_scale:
            raise ValueError(f"{owner}: spike_scale ({spike_scale}) must be smaller than slab_scale ({slab_scale})")
        if not spike_weight < 1.0:
            raise ValueError(f"{owner}: spike_weight must be in (0, 1), got {spike_weight}")
        self._setup(dim, batch_shape)
        self._spike_scale, self._slab_scale, self._spike_weight = spike_scale, slab_scale, spike_weight

    def _new(self, batch_shape: torch.Size) -> ShrinkageRotationPrior:
        return ShrinkageRotationPrior(
            self._dim, self._spike_scale, self._slab_scale, self._spike_weight, batch_shape=batch_shape
        )

    @property
    def spike_scale(self) -> float:
        """Standard deviation of the spike."""
        return self._spike_scale

    @property
    def slab_scale(self) -> float:
        """Standard deviation of the slab."""
        return self._slab_scale

    @property
    def spike_weight(self) -> float:
        """Prior probability of the spike, per coordinate."""
        return self._spike_weight

    @property
    def variance(self) -> Tensor:
        """``pi_0 s_0^2 + (1 - pi_0) s_1^2`` in every coordinate, ``batch_shape x m``."""
        v = self._spike_weight * self._spike_scale**2 + (1.0 - self._spike_weight) * self._slab_scale**2
        return torch.full(self._extended_shape(), v, dtype=self._anchor.dtype, device=self._anchor.device)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of so(d) coordinates ``... x m`` (broadcast against ``batch_shape``); finite everywhere."""
        w = self._check_value(value)
        w2 = w * w
        comps = []
        for weight, s in ((self._spike_weight, self._spike_scale), (1.0 - self._spike_weight, self._slab_scale)):
            comps.append(math.log(weight) - math.log(s) - 0.5 * _LOG_2PI - 0.5 * w2 / (s * s))
        lp = torch.logsumexp(torch.stack(comps, -1), -1).sum(-1)
        return self._broadcast(lp)

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Exact draws, shape ``sample_shape x batch_shape x m``: per coordinate a component, then a Gaussian."""
        shape = self._extended_shape(torch.Size(sample_shape))
        dtype, device = self._anchor.dtype, self._anchor.device
        with torch.no_grad():
            spike = torch.rand(shape, dtype=dtype, device=device) < self._spike_weight
            scale = torch.where(spike, self._spike_scale, self._slab_scale).to(dtype)
            return scale * torch.randn(shape, dtype=dtype, device=device)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Not available: the component choice is discrete (use :meth:`sample`)."""
        raise NotImplementedError("ShrinkageRotationPrior has no reparameterised sampler; use .sample() instead")

    def extra_repr(self) -> str:
        """Shown in ``repr``."""
        return (
            f"dim={self._dim}, spike_scale={self._spike_scale:g}, slab_scale={self._slab_scale:g}, "
            f"spike_weight={self._spike_weight:g}, batch_shape={tuple(self.batch_shape)}"
        )


class HaarAnglePrior(_LieAlgebraPrior):
    r"""The Haar (uniform) distribution on SO(2) in the angle coordinate, with a smooth instead of a hard edge.

    The Haar measure of SO(2) pulled back to the angle ``theta`` of ``R = [[cos, -sin], [sin, cos]]`` is uniform on
    ``(-pi, pi]``, density ``1 / (2 pi)``. As :class:`HaarRotationPrior` does in 3-D, the indicator of
    ``|theta| <= pi`` is replaced by ``h(|theta|) = Phi((pi - |theta|) / s)``:

    .. math::
        p_s(\theta) = \frac{1}{2\pi}\, \Phi\!\left(\frac{\pi - |\theta|}{s}\right), \qquad \theta \in \mathbb R.

    Since ``h(t) + h(2 pi - t) = 1`` and a rotation by ``theta`` has the preimages ``theta`` and
    ``theta - 2 pi sign(theta)``, the pushforward to SO(2) is exactly uniform and ``p_s`` integrates to one, up to
    terms of order ``Phi(-pi / s)`` (``6e-26`` at the default ``s = 0.3``). Event shape ``(1,)``, as the angle is the
    single so(2) coordinate of :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` with ``dim=2``.

    Args:
        smoothing: width ``s`` (radians) of the edge at ``|theta| = pi``, in ``(0, 0.5]`` (default 0.3).
        batch_shape: batch shape of the prior (default: none).

    Example:
        >>> prior = HaarAnglePrior()
        >>> prior.log_prob(torch.tensor([[0.0], [math.pi]])).exp() * 2 * math.pi  # 1, then 1/2 at the edge
        tensor([1.0000, 0.5000])
        >>> prior.sample((5,)).shape
        torch.Size([5, 1])
    """

    has_rsample = False

    def __init__(
        self, smoothing: float = DEFAULT_ROTATION_SMOOTHING, batch_shape: Sequence[int] | torch.Size | None = None
    ) -> None:
        smoothing = _positive_float("HaarAnglePrior", "smoothing", smoothing)
        if smoothing > MAX_ROTATION_SMOOTHING:
            raise ValueError(f"HaarAnglePrior: smoothing must be in (0, {MAX_ROTATION_SMOOTHING}], got {smoothing!r}")
        self._setup(2, batch_shape)
        self._smoothing = smoothing

    def _new(self, batch_shape: torch.Size) -> HaarAnglePrior:
        return HaarAnglePrior(self._smoothing, batch_shape=batch_shape)

    @property
    def smoothing(self) -> float:
        """Width ``s`` (radians) of the smooth edge at ``|theta| = pi``."""
        return self._smoothing

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``log p_s(theta) = -log(2 pi) + log Phi((pi - |theta|) / s)`` for values ``... x 1``."""
        theta = self._check_value(value)[..., 0]
        # sqrt(theta^2 + tiny) instead of |theta|: the same value, with gradient 0 (not a kink) at theta = 0.
        t = (theta * theta + torch.finfo(theta.dtype).tiny).sqrt()
        lp = torch.special.log_ndtr((math.pi - t) / self._smoothing) - _LOG_2PI
        return self._broadcast(lp)

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Exact draws ``sample_shape x batch_shape x 1``: uniform angles, moved to their other preimage w.p. 1 - h."""
        shape = self._extended_shape(torch.Size(sample_shape))
        dtype, device = self._anchor.dtype, self._anchor.device
        with torch.no_grad():
            theta = (2.0 * torch.rand(shape, dtype=dtype, device=device) - 1.0) * math.pi
            h = torch.special.ndtr((math.pi - theta.abs()) / self._smoothing)
            flip = torch.rand(shape, dtype=dtype, device=device) >= h
            return torch.where(flip, theta - 2.0 * math.pi * torch.sign(theta), theta)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Not available (use :meth:`sample`)."""
        raise NotImplementedError("HaarAnglePrior has no reparameterised sampler; use .sample() instead")

    def extra_repr(self) -> str:
        """Shown in ``repr``."""
        return f"smoothing={self._smoothing:g}, batch_shape={tuple(self.batch_shape)}"


def default_sod_rotation_prior(dim: int) -> ShrinkageRotationPrior:
    """Default rotation prior of :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` in ``dim`` D.

    :class:`ShrinkageRotationPrior` with the documented defaults (spike 0.05 rad, slab 1 rad, weight 0.5): an
    axis-aligned truth (the ARD kernel) is favoured, rotations the data support are cheap. For a frame-invariant
    prior use :class:`HaarAnglePrior` (``dim = 2``) or :class:`HaarRotationPrior` (``dim = 3``).

    Args:
        dim: the dimension ``d >= 2``.

    Returns:
        a fresh :class:`ShrinkageRotationPrior` with event shape ``(d (d - 1) / 2,)``.

    Example:
        >>> default_sod_rotation_prior(6).event_shape
        torch.Size([15])
    """
    return ShrinkageRotationPrior(dim)


__all__ += [  # appended block (issue 17)
    "DEFAULT_SHRINKAGE_SLAB_SCALE",
    "DEFAULT_SHRINKAGE_SPIKE_SCALE",
    "DEFAULT_SHRINKAGE_SPIKE_WEIGHT",
    "GaussianLieAlgebraPrior",
    "HaarAnglePrior",
    "ShrinkageRotationPrior",
    "default_sod_rotation_prior",
]
