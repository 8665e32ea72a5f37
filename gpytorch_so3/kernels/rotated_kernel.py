r"""The Lie-algebraic anisotropic kernel in any dimension: ``dim`` principal length-scales and ``R = exp(hat(w))``."""

from __future__ import annotations

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3 import sod
from gpytorch_so3._validation import check_dim
from gpytorch_so3.kernels.base import AnisotropicKernel

__all__ = ["RotatedAnisotropicKernel"]


class RotatedAnisotropicKernel(AnisotropicKernel):
    r"""Stationary kernel on ``dim``-D inputs with a rotated anisotropic metric.

    .. math::
        k(x, x') = \kappa_\nu(r), \qquad r^2 = (x - x')^\top M (x - x'), \qquad
        M = R\, \mathrm{diag}(l)^{-2} R^\top, \qquad R = \exp(\mathrm{hat}(w)) \in SO(d),

    with :math:`\kappa_\nu` gpytorch's RBF (``nu=None``) or Matern-:math:`\nu` correlation at unit length-scale,
    :math:`l` the ``dim`` principal length-scales and :math:`w \in \mathfrak{so}(d) \cong \mathbb{R}^{d(d-1)/2}`
    (coordinate order: :func:`gpytorch_so3.sod.coordinate_pairs`). Every SPD metric is of this form.

    * ``dim = 2``: ``w = (theta,)``, ``R = [[cos, -sin], [sin, cos]]``: the first principal direction has azimuth
      ``theta`` from the first input axis towards the second;
    * ``dim = 3``: ``w`` is the axis-angle vector and the kernel equals :class:`~gpytorch_so3.SO3AnisotropicKernel`
      (which is this class with ``dim`` fixed to 3);
    * ``dim >= 4``: ``R = torch.linalg.matrix_exp(hat(w))``.

    Column ``i`` of :attr:`rotation_matrix` is the principal direction whose length-scale is
    ``lengthscale[..., 0, i]``. With ``rotation = 0`` the kernel equals ``RBFKernel(ard_num_dims=dim)`` /
    ``MaternKernel(nu, ard_num_dims=dim)`` with the same length-scales. ``(l, R)`` and ``(l P, R P)`` for the
    ``2^(d-1) d!`` signed permutations ``P`` with ``det P = 1`` give the same kernel; compare fits with
    :meth:`canonical`. Unit output-scale: wrap it in :class:`gpytorch.kernels.ScaleKernel`.

    Example:
        >>> import math, torch
        >>> k = RotatedAnisotropicKernel(2, nu=2.5)
        >>> k.lengthscale = torch.tensor([[0.1, 1.0]])
        >>> k.rotation = torch.tensor([math.pi / 6])  # short axis at 30 degrees from x towards y
        >>> k.rotation_matrix.detach()[:, 0]
        tensor([0.8660, 0.5000])
        >>> k(torch.rand(7, 2)).to_dense().shape
        torch.Size([7, 7])
        >>> k6 = RotatedAnisotropicKernel(6, batch_shape=torch.Size([2]))
        >>> k6.lengthscale.shape, k6.rotation.shape, k6.rotation_matrix.shape
        (torch.Size([2, 1, 6]), torch.Size([2, 15]), torch.Size([2, 6, 6]))
    """

    has_lengthscale = True

    def __init__(
        self,
        dim: int,
        nu: float | None = None,
        *,
        lengthscale_prior: Prior | None = None,
        lengthscale_constraint: Interval | None = None,
        rotation_prior: Prior | None = None,
        batch_shape: torch.Size | None = None,
        active_dims: tuple[int, ...] | None = None,
        eps: float = 1e-6,
    ) -> None:
        """Build the kernel.

        Args:
            dim: number of input dimensions ``d >= 2``.
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5 (Matern smoothness).
            lengthscale_prior: prior on the ``batch_shape x 1 x dim`` principal length-scales.
            lengthscale_constraint: constraint of the length-scales (default: ``Positive()``).
            rotation_prior: prior on the ``batch_shape x dim (dim - 1) / 2`` so(d) coordinates, e.g. from
                :mod:`gpytorch_so3.priors`; its ``event_shape`` must be ``()`` or ``(dim (dim - 1) / 2,)``.
            batch_shape: batch shape of the hyperparameters (default: none).
            active_dims: ``dim`` input columns the kernel acts on (default: all, and inputs must be ``dim``-D).
            eps: gpytorch's lower bound on the length-scale (passed to ``Kernel``).

        Raises:
            TypeError: ``dim`` is not an int, or a prior is not a ``gpytorch.priors.Prior``.
            ValueError: ``dim < 2``, bad ``active_dims``, or a prior whose shape does not fit its parameter.
        """
        dim = check_dim(dim, where=f"{type(self).__name__}: ", note=" (use gpytorch's RBFKernel for 1-D)")
        if lengthscale_prior is not None and not isinstance(lengthscale_prior, Prior):
            raise TypeError(
                f"Expected gpytorch.priors.Prior for lengthscale_prior, got {type(lengthscale_prior).__name__}"
            )
        super().__init__(
            nu,
            batch_shape,
            active_dims,
            dim=dim,
            ard_num_dims=dim,
            lengthscale_prior=lengthscale_prior,
            lengthscale_constraint=lengthscale_constraint,
            eps=eps,
        )
        self.num_rotation_coordinates = sod.num_coordinates(dim)
        self.register_parameter(
            "raw_rotation", torch.nn.Parameter(torch.zeros(*self.batch_shape, self.num_rotation_coordinates))
        )
        if lengthscale_prior is not None:
            self._check_prior_shape("lengthscale_prior", lengthscale_prior, self.raw_lengthscale.shape)
        if rotation_prior is not None:
            if not isinstance(rotation_prior, Prior):
                raise TypeError(
                    f"Expected gpytorch.priors.Prior for rotation_prior, got {type(rotation_prior).__name__}"
                )
            self._check_prior_shape("rotation_prior", rotation_prior, self.raw_rotation.shape)
            self.register_prior("rotation_prior", rotation_prior, self._rotation_param, self._rotation_closure)

    # -- length-scales: validated before they reach the constraint's inverse transform --------------------------
    def _set_lengthscale(self, value: Tensor | float) -> None:
        if not torch.is_tensor(value):
            value = torch.as_tensor(value)
        value = value.detach().to(self.raw_lengthscale)
        shape = tuple(self.raw_lengthscale.shape)
        if not self._shape_fits(value.shape, shape):
            raise ValueError(
                f"{type(self).__name__}: lengthscale must have shape (*batch_shape, 1, {self.dim}), got "
                f"{tuple(value.shape)}; for batch_shape {tuple(self.batch_shape)} that is {shape} or a shape "
                "broadcastable to it"
            )
        if not bool(torch.isfinite(value).all()) or not bool((value > 0).all()):
            raise ValueError(
                f"{type(self).__name__}: lengthscale must be positive and finite, got {value.tolist()} "
                f"(shape {tuple(value.shape)})"
            )
        super()._set_lengthscale(value)

    # -- rotation: an unconstrained parameter, exposed through the usual property/setter pair ------------------
    @property
    def rotation(self) -> Tensor:
        """The so(d) coordinates ``w``, ``batch_shape x dim (dim - 1) / 2`` (unconstrained)."""
        return self.raw_rotation

    @rotation.setter
    def rotation(self, value: Tensor | float) -> None:
        self._set_rotation(value)

    def __setattr__(self, name: str, value: object) -> None:
        # ``k.rotation = other.rotation`` passes an ``nn.Parameter`` (``rotation`` is the raw parameter itself), which
        # ``torch.nn.Module.__setattr__`` would try to register as a new parameter (KeyError) instead of calling the
        # property setter: route it to the setter, copying the values.
        if name == "rotation":
            self._set_rotation(value)
            return
        super().__setattr__(name, value)

    def _set_rotation(self, value: Tensor | float) -> None:
        if not torch.is_tensor(value):
            value = torch.as_tensor(value)
        value = value.detach().to(self.raw_rotation)
        shape = tuple(self.raw_rotation.shape)
        m = self.num_rotation_coordinates
        if value.dim() < 1 or not self._shape_fits(value.shape, shape):
            raise ValueError(
                f"{type(self).__name__}: rotation must have shape (*batch_shape, {m}), got {tuple(value.shape)}; for "
                f"batch_shape {tuple(self.batch_shape)} that is {shape} or a shape broadcastable to it "
                f"({m} so({self.dim}) coordinates)"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"{type(self).__name__}: rotation must be finite, got NaN/inf in a tensor of shape {tuple(value.shape)}"
            )
        # Loading MCMC samples (non-strict, see _shape_fits) may add leading dimensions: gpytorch's initialize then
        # reshapes the parameter.
        self.initialize(raw_rotation=self._fit_to_param(value, self.raw_rotation))

    def _rotation_param(self, m: RotatedAnisotropicKernel) -> Tensor:
        # Used by rotation_prior (a bound method, not a lambda, so the kernel pickles: gpytorch PR #1876).
        return m.rotation

    def _rotation_closure(self, m: RotatedAnisotropicKernel, v: Tensor) -> None:
        # BoTorch's `sample_all_priors` treats a prior whose event shape has one element (dim = 2: event shape (1,))
        # as univariate and draws `closure(module).shape` samples, i.e. one trailing dimension too many: drop it.
        raw = m.raw_rotation
        if m.num_rotation_coordinates == 1 and v.dim() == raw.dim() + 1 and tuple(v.shape) == (*raw.shape, 1):
            v = v.squeeze(-1)
        m._set_rotation(v)

    # -- derived quantities -----------------------------------------------------------------------------------
    @property
    def rotation_matrix(self) -> Tensor:
        """``R = exp(hat(rotation))``, ``batch_shape x dim x dim``; column ``i`` goes with length-scale ``i``."""
        return sod.exp_map(self.rotation, self.dim)

    @property
    def whitening_matrix(self) -> Tensor:
        """``A = R diag(1 / lengthscale)``, ``batch_shape x dim x dim``; ``metric = A A^T``."""
        return F.so3_whitening_matrix(self.lengthscale.squeeze(-2), self.rotation_matrix)

    @property
    def metric(self) -> Tensor:
        """``M = R diag(lengthscale^-2) R^T``, ``batch_shape x dim x dim``."""
        return F.metric(self.lengthscale.squeeze(-2), self.rotation_matrix)

    def canonical(self) -> tuple[Tensor, Tensor]:
        """Canonical ``(lengthscale, R)``: ``batch_shape x dim``, ``batch_shape x dim x dim`` (``sod.canonicalize``)."""
        with torch.no_grad():
            return sod.canonicalize(self.lengthscale.squeeze(-2), self.rotation_matrix)

    def extra_repr(self) -> str:
        """Dimension, base form and batch shape, shown by ``repr``."""
        return f"dim={self.dim}, base={self._nu_repr()}, batch_shape={tuple(self.batch_shape)}"
