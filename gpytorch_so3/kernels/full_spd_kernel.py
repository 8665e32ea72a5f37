r"""Baseline of the paper: a full SPD metric ``M = L L^T`` with a free lower-triangular Cholesky factor."""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.priors import Prior
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3.exceptions import deprecated_alias
from gpytorch_so3.kernels.base import Anisotropic3DKernel

__all__ = ["FullSPDKernel"]

# Lower-triangular positions (row, col) below the diagonal, in the order stored in `cholesky_offdiag`.
_TRIL_ROWS, _TRIL_COLS = (1, 2, 2), (0, 0, 1)


class FullSPDKernel(Anisotropic3DKernel):
    r"""Stationary kernel on 3-D inputs with a full (six-parameter) SPD metric.

    .. math::
        k(x, x') = \kappa_\nu(r), \qquad r^2 = (x - x')^\top L L^\top (x - x'),

    with ``L`` lower-triangular: a positive diagonal (``cholesky_diag``, constrained like a length-scale)
    and three free entries below it (``cholesky_offdiag``, order ``(1,0), (2,0), (2,1)``). It spans the same
    metrics as :class:`~gpytorch_so3.SO3AnisotropicKernel` but its parameters are not interpretable one by one;
    :meth:`principal` recovers length-scales and directions.

    The initial ``L`` is ``I / ln 2``: the metric of gpytorch's default length-scale ``softplus(0) = ln 2``.

    Example:
        >>> k = FullSPDKernel(nu=1.5)
        >>> k(torch.rand(5, 3)).to_dense().shape
        torch.Size([5, 5])

        Set ``L = [[1, 0, 0], [1, 1, 0], [0, 0, 1]]`` and read off the principal axes of ``M = L L^T``:

        >>> k.cholesky_diag = torch.ones(3)
        >>> _ = k.initialize(cholesky_offdiag=torch.tensor([1.0, 0.0, 0.0]))  # entries (1,0), (2,0), (2,1)
        >>> k.cholesky_factor.detach().round(decimals=4)
        tensor([[1., 0., 0.],
                [1., 1., 0.],
                [0., 0., 1.]])
        >>> torch.equal(k.whitening_matrix, k.cholesky_factor)
        True
        >>> lengthscale, R = k.canonical()  # eigenvalues (3 -+ sqrt(5)) / 2 and 1: the golden ratio
        >>> [round(v, 4) for v in lengthscale.tolist()]
        [0.618, 1.0, 1.618]
        >>> torch.allclose(R @ torch.diag(lengthscale**-2) @ R.mT, k.metric.detach(), atol=1e-5)
        True
    """

    def __init__(
        self,
        nu: float | None = None,
        *,
        cholesky_diag_prior: Prior | None = None,
        cholesky_diag_constraint: Interval | None = None,
        cholesky_offdiag_prior: Prior | None = None,
        batch_shape: torch.Size | None = None,
        active_dims: tuple[int, ...] | None = None,
    ) -> None:
        """Build the kernel.

        Args:
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5.
            cholesky_diag_prior: prior on the ``batch_shape x 3`` positive diagonal of ``L``.
            cholesky_diag_constraint: its constraint (default ``Positive()``).
            cholesky_offdiag_prior: prior on the ``batch_shape x 3`` entries below the diagonal.
            batch_shape: batch shape of the hyperparameters.
            active_dims: three input columns the kernel acts on.
        """
        super().__init__(nu, batch_shape, active_dims)
        constraint = Positive() if cholesky_diag_constraint is None else cholesky_diag_constraint
        self.register_parameter("raw_cholesky_diag", torch.nn.Parameter(torch.zeros(*self.batch_shape, 3)))
        self.register_parameter("cholesky_offdiag", torch.nn.Parameter(torch.zeros(*self.batch_shape, 3)))
        self.register_constraint("raw_cholesky_diag", constraint)
        for name, prior, param, closure in (
            ("cholesky_diag_prior", cholesky_diag_prior, self._diag_param, self._diag_closure),
            ("cholesky_offdiag_prior", cholesky_offdiag_prior, self._offdiag_param, self._offdiag_closure),
        ):
            if prior is not None:
                if not isinstance(prior, Prior):
                    raise TypeError(f"Expected gpytorch.priors.Prior for {name}, got {type(prior).__name__}")
                self._check_prior_shape(name, prior, self.raw_cholesky_diag.shape)
                self.register_prior(name, prior, param, closure)
        self.cholesky_diag = torch.full_like(self.raw_cholesky_diag, 1.0 / math.log(2.0))

    @property
    def cholesky_diag(self) -> Tensor:
        """Positive diagonal of ``L``, ``batch_shape x 3``."""
        return self.raw_cholesky_diag_constraint.transform(self.raw_cholesky_diag)

    @cholesky_diag.setter
    def cholesky_diag(self, value: Tensor | float) -> None:
        self._set_cholesky_diag(value)

    def _set_cholesky_diag(self, value: Tensor | float) -> None:
        value = torch.as_tensor(value).to(self.raw_cholesky_diag)
        shape = tuple(self.raw_cholesky_diag.shape)
        if not self._shape_fits(value.shape, shape):
            raise ValueError(
                f"{type(self).__name__}: cholesky_diag must have shape (*batch_shape, 3), got {tuple(value.shape)}; "
                f"for batch_shape {tuple(self.batch_shape)} that is {shape} or a shape broadcastable to it"
            )
        if not bool(torch.isfinite(value).all()) or not bool((value > 0).all()):
            raise ValueError(
                f"{type(self).__name__}: cholesky_diag must be positive and finite, got {value.tolist()} "
                f"(shape {tuple(value.shape)})"
            )
        raw = self.raw_cholesky_diag_constraint.inverse_transform(value)
        self.initialize(raw_cholesky_diag=self._fit_to_param(raw, self.raw_cholesky_diag))

    def _diag_param(self, m: FullSPDKernel) -> Tensor:
        return m.cholesky_diag

    def _diag_closure(self, m: FullSPDKernel, v: Tensor) -> None:
        m._set_cholesky_diag(v)

    def _offdiag_param(self, m: FullSPDKernel) -> Tensor:
        return m.cholesky_offdiag

    def __setattr__(self, name: str, value: object) -> None:
        # ``cholesky_offdiag`` is itself the parameter: route plain assignment through ``initialize`` so that it is
        # validated (finite, shape) and copied, instead of torch replacing or rejecting the parameter.
        if name == "cholesky_offdiag" and "cholesky_offdiag" in self._parameters:
            value = torch.as_tensor(value).detach().to(self._parameters["cholesky_offdiag"])
            self.initialize(cholesky_offdiag=value)
            return
        super().__setattr__(name, value)

    def _offdiag_closure(self, m: FullSPDKernel, v: Tensor) -> None:
        m.initialize(cholesky_offdiag=m._fit_to_param(torch.as_tensor(v).to(m.cholesky_offdiag), m.cholesky_offdiag))

    @property
    def cholesky_factor(self) -> Tensor:
        """Lower-triangular ``L``, ``batch_shape x 3 x 3``, with ``metric = L L^T``."""
        d = self.cholesky_diag
        L = torch.diag_embed(d)
        off = torch.zeros_like(L)
        off[..., _TRIL_ROWS, _TRIL_COLS] = self.cholesky_offdiag
        return L + off

    @property
    def whitening_matrix(self) -> Tensor:
        """``A = L``: ``|(x - x') L|^2 = (x - x')^T L L^T (x - x')``."""
        return self.cholesky_factor

    def canonical(self) -> tuple[Tensor, Tensor]:
        """Canonical principal length-scales (``batch_shape x 3``, ascending) and directions (columns).

        The same name and meaning as :meth:`gpytorch_so3.SO3AnisotropicKernel.canonical`.
        """
        with torch.no_grad():
            return F.metric_to_canonical(self.metric)

    principal = deprecated_alias(canonical, "FullSPDKernel.principal", "FullSPDKernel.canonical")

    def extra_repr(self) -> str:
        """Base form and batch shape, shown by ``repr``."""
        return f"base={self._nu_repr()}, batch_shape={tuple(self.batch_shape)}"
