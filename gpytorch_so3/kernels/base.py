"""Shared skeleton of the anisotropic kernels: input validation and ``centre -> whiten -> distance -> base``.

:class:`AnisotropicKernel` works on ``dim``-dimensional inputs; ``Anisotropic3DKernel`` is the same class (the name
of the first release, kept as an alias; its ``dim`` defaults to 3).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from gpytorch.kernels import Kernel
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3._validation import check_int

__all__ = ["Anisotropic3DKernel", "AnisotropicKernel", "validate_inputs"]


def _check_input(kernel_name: str, name: str, x: Tensor) -> None:
    if not torch.is_tensor(x):
        raise TypeError(f"{kernel_name}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{kernel_name}: {name} must have a floating dtype (float32 or float64), got {x.dtype}")


def validate_inputs(
    kernel_name: str,
    x1: Tensor,
    x2: Tensor | None,
    active_dims: Tensor | None,
    param_dtype: torch.dtype,
    dim: int = 3,
    *,
    check_finite: bool = True,
) -> None:
    """Check the inputs of a ``dim``-D kernel and raise a ``TypeError``/``ValueError`` that names the problem.

    Args:
        kernel_name: class name used in messages.
        x1: ``(..., n, d)`` inputs.
        x2: ``(..., m, d)`` inputs or ``None``.
        active_dims: the kernel's ``active_dims`` (length ``dim``) or ``None`` (then ``d`` must be ``dim``).
        param_dtype: dtype of the kernel's parameters; inputs must match it.
        dim: the number of input dimensions the kernel acts on (default 3).
        check_finite: also scan the used columns for NaN/inf (``False``: types and shapes only).

    Raises:
        TypeError: non-tensor or non-floating inputs, or a dtype that differs from ``param_dtype``.
        ValueError: wrong shape, too few columns for ``active_dims``, or NaN/inf in the used columns.

    Example:
        >>> validate_inputs("MyKernel", torch.rand(5, 3), None, None, torch.float32)  # valid: returns None
        >>> validate_inputs("MyKernel", torch.rand(5, 2), None, None, torch.float32)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: MyKernel works on 3-D inputs: x1 must have shape (..., n, 3), got (5, 2) ...
        >>> validate_inputs("MyKernel", torch.rand(5, 4), None, torch.tensor([0, 1, 3]), torch.float32)  # 3 of 4
        >>> validate_inputs("MyKernel", torch.rand(5, 2), None, None, torch.float32, dim=2)  # a 2-D kernel
    """
    _check_input(kernel_name, "x1", x1)
    xs = [("x1", x1)]
    if x2 is not None:
        _check_input(kernel_name, "x2", x2)
        if x2.dtype != x1.dtype:
            raise TypeError(f"{kernel_name}: x1 and x2 must have the same dtype, got {x1.dtype} and {x2.dtype}")
        xs.append(("x2", x2))
    if x1.dtype != param_dtype:
        raise TypeError(
            f"{kernel_name}: inputs are {x1.dtype} but the kernel's parameters are {param_dtype}; "
            f"convert one of them (e.g. `kernel.to({x1.dtype})`)"
        )
    for name, x in xs:
        if x.dim() < 2:
            raise ValueError(f"{kernel_name}: {name} must have shape (..., n, {dim}), got {tuple(x.shape)}")
        if active_dims is None:
            if x.shape[-1] != dim:
                raise ValueError(
                    f"{kernel_name} works on {dim}-D inputs: {name} must have shape (..., n, {dim}), got "
                    f"{tuple(x.shape)} (use active_dims to select {dim} columns of wider inputs)"
                )
            sel = x
        else:
            top = int(active_dims.max())
            if x.shape[-1] <= top:
                raise ValueError(
                    f"{kernel_name}: active_dims={active_dims.tolist()} needs at least {top + 1} input columns, "
                    f"but {name} has shape {tuple(x.shape)}"
                )
            sel = x.index_select(-1, active_dims)
        if check_finite and not bool(torch.isfinite(sel).all()):
            bad = int((~torch.isfinite(sel)).any(-1).sum())
            raise ValueError(f"{kernel_name}: {name} contains NaN or inf in {bad} row(s); inputs must be finite")


class AnisotropicKernel(Kernel):
    r"""Base class: a stationary kernel of the whitened distance ``|(x - x') A|`` on ``dim``-D inputs.

    Subclasses define :attr:`whitening_matrix` ``A`` (``batch_shape x dim x dim``); the metric is ``M = A A^T``.
    The base correlation is gpytorch's RBF (``nu=None``) or Matern form at unit length-scale. ``dim`` defaults to 3
    (``Anisotropic3DKernel`` is this class under its first-release name).

    Every parameter registered directly on such a kernel must be finite: :meth:`initialize` and
    ``load_state_dict`` reject NaN/inf values with a ``ValueError`` naming the parameter.

    Example:
        A kernel with a fixed diagonal whitening matrix (axis-aligned length-scales ``1, 1/2, 1/4``):

        >>> class Diagonal(AnisotropicKernel):
        ...     def __init__(self):
        ...         super().__init__(nu=None, batch_shape=None, active_dims=None)
        ...         self.register_parameter("scales", torch.nn.Parameter(torch.tensor([1.0, 2.0, 4.0])))
        ...     @property
        ...     def whitening_matrix(self):
        ...         return torch.diag_embed(self.scales)
        >>> k = Diagonal()
        >>> k.whitening_matrix.shape, k.metric.detach().diagonal()  # metric = A A^T
        (torch.Size([3, 3]), tensor([ 1.,  4., 16.]))
        >>> x1 = torch.zeros(1, 3); x2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
        >>> k(x1, x2).to_dense().detach()  # r = 1 in both directions: exp(-1 / 2)
        tensor([[0.6065, 0.6065]])
    """

    is_stationary = True
    #: Class-level default of the instance attribute set in ``__init__``: objects pickled by the first release
    #: (3-D only, no ``dim`` attribute) unpickle as 3-D kernels.
    dim = 3

    def __init__(
        self,
        nu: float | None,
        batch_shape: torch.Size | None,
        active_dims: tuple[int, ...] | None,
        *,
        dim: int = 3,
        **kwargs,
    ) -> None:
        dim = check_int("dim", dim, 1, where=f"{type(self).__name__}: ")
        if active_dims is not None:
            dims = torch.as_tensor(active_dims)
            if dims.dim() != 1 or dims.numel() != dim:
                raise ValueError(
                    f"{type(self).__name__}: active_dims must list exactly {dim} input columns, got {active_dims!r}"
                )
            if dims.is_floating_point() or bool((dims < 0).any()) or len(set(dims.tolist())) != dim:
                raise ValueError(
                    f"{type(self).__name__}: active_dims must be {dim} distinct non-negative ints, got {active_dims!r}"
                )
        batch_shape = torch.Size([]) if batch_shape is None else torch.Size(batch_shape)
        super().__init__(batch_shape=batch_shape, active_dims=active_dims, **kwargs)
        self.dim = dim
        self.nu = F.check_nu(nu)

    # -- parameter validation: no NaN/inf and no wrong shape may enter through initialize() or load_state_dict() --
    def _check_parameter_value(self, name: str, value: object, exact_shape: bool = False) -> None:
        """Raise a ``ValueError`` naming ``name`` if ``value`` is not finite or does not fit the parameter's shape."""
        if name not in self._parameters or not (torch.is_tensor(value) or isinstance(value, int | float)):
            return
        t = torch.as_tensor(value)
        public = name[4:] if name.startswith("raw_") else name
        shape = tuple(self._parameters[name].shape)
        fits = tuple(t.shape) == shape if exact_shape else self._shape_fits(t.shape, shape)
        if not fits:
            rule = "" if exact_shape else " (or broadcastable to it)"
            raise ValueError(
                f"{type(self).__name__}: {name} must have shape {shape}{rule} for batch_shape "
                f"{tuple(self.batch_shape)}, got {tuple(t.shape)}"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{type(self).__name__}: {public} must be finite; got NaN/inf in {name} of shape {tuple(t.shape)}"
            )

    def _shape_fits(self, value_shape: torch.Size, param_shape: torch.Size) -> bool:
        """Whether a value of ``value_shape`` may be assigned to a parameter of ``param_shape``.

        It must broadcast to ``param_shape``. While gpytorch loads MCMC samples (``pyro_load_from_samples`` turns
        strict initialisation off, ``_strict_init = False``) extra leading sample dimensions are allowed too, as
        gpytorch's own ``initialize`` then reshapes the parameter.
        """
        try:
            out = tuple(torch.broadcast_shapes(value_shape, param_shape))
        except RuntimeError:
            return False
        param_shape = tuple(param_shape)
        if getattr(self, "_strict_init", True):
            return out == param_shape
        return out[len(out) - len(param_shape) :] == param_shape

    @staticmethod
    def _fit_to_param(value: Tensor, param: Tensor) -> Tensor:
        """``value`` expanded to ``param``'s shape, or unchanged if it has extra (MCMC sample) dimensions."""
        grow = value.dim() > param.dim() or any(
            v > p for v, p in zip(reversed(value.shape), reversed(param.shape), strict=False)
        )
        return value if grow else value.expand_as(param)

    def _check_prior_shape(self, name: str, prior: object, param_shape: torch.Size) -> None:
        """A prior's ``batch_shape + event_shape`` must broadcast to its parameter's shape without changing it."""
        event = tuple(getattr(prior, "event_shape", ()))
        batch = tuple(getattr(prior, "batch_shape", ()))
        param_shape = tuple(param_shape)
        if len(event) > 0 and event != param_shape[len(param_shape) - len(event) :]:
            raise ValueError(
                f"{type(self).__name__}: {name} has event_shape {event}, but the parameter has shape {param_shape} "
                f"(dim={self.dim}, batch_shape={tuple(self.batch_shape)}); its event_shape must be () or "
                f"{param_shape[-len(event) :]}"
            )
        full = batch + event
        try:
            ok = tuple(torch.broadcast_shapes(full, param_shape)) == param_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{type(self).__name__}: {name} has batch_shape {batch} and event_shape {event}, which do not "
                f"broadcast to the parameter's shape {param_shape} (batch_shape={tuple(self.batch_shape)})"
            )

    def initialize(self, **kwargs) -> AnisotropicKernel:
        """``gpytorch.Module.initialize`` that rejects non-finite values of this kernel's own parameters."""
        for name, value in kwargs.items():
            self._check_parameter_value(name, value)
        return super().initialize(**kwargs)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        for name in self._parameters:
            if prefix + name in state_dict:
                self._check_parameter_value(name, state_dict[prefix + name], exact_shape=True)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    @abstractmethod
    def whitening_matrix(self) -> Tensor:
        """``A``, ``batch_shape x dim x dim``, with metric ``M = A A^T``."""

    @property
    def metric(self) -> Tensor:
        """The metric ``M = A A^T``, ``batch_shape x dim x dim``."""
        A = self.whitening_matrix
        return A @ A.transpose(-1, -2)

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def __call__(
        self, x1: Tensor, x2: Tensor | None = None, diag: bool = False, last_dim_is_batch: bool = False, **params
    ):
        """Validate the inputs, then defer to :meth:`gpytorch.kernels.Kernel.__call__`."""
        if last_dim_is_batch:
            raise ValueError(
                f"{type(self).__name__} couples the {self.dim} input dimensions through one metric; "
                "last_dim_is_batch=True has no meaning for it"
            )
        # Types, dtypes and shapes here (gpytorch's active-dim selection would fail obscurely on them); the NaN/inf
        # scan runs once, in `forward`, on the selected columns (the only path wrappers such as ScaleKernel take).
        validate_inputs(
            type(self).__name__, x1, x2, self.active_dims, self._param_dtype(), dim=self.dim, check_finite=False
        )
        return super().__call__(x1, x2, diag=diag, **params)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        r"""Covariance (correlation) of ``dim``-D inputs.

        Args:
            x1: ``batch_shape x n x dim`` inputs.
            x2: ``batch_shape x m x dim`` inputs.
            diag: return only the diagonal (requires ``n == m``).
            last_dim_is_batch: not supported (raises ``ValueError``).
            **params: passed on to :meth:`gpytorch.kernels.Kernel.covar_dist`.

        Returns:
            ``batch_shape x n x m`` (``batch_shape x n`` with ``diag=True``).
        """
        if last_dim_is_batch:
            raise ValueError(f"{type(self).__name__} does not support last_dim_is_batch=True")
        # Wrappers such as ScaleKernel call `base_kernel.forward` directly and bypass our `__call__`, so the checks
        # run here (on the already active-dim-selected inputs). Cost: one isfinite over n x dim per call.
        validate_inputs(type(self).__name__, x1, x2, None, self._param_dtype(), dim=self.dim)
        # Centring first keeps |z|^2 small so the expanded-norm distance formula loses no digits (as MaternKernel).
        mean = x1.mean(dim=-2, keepdim=True)
        A = self.whitening_matrix
        z1 = F.whiten(x1 - mean, A)
        z2 = z1 if x2 is x1 else F.whiten(x2 - mean, A)
        sq = self.covar_dist(z1, z2, diag=diag, square_dist=True, **params)
        if self.nu is not None and not diag and sq.shape[-1] == sq.shape[-2] and (x1 is x2 or torch.equal(x1, x2)):
            # The expanded-norm distance leaves rounding (~eps |z|^2) on the diagonal of a self-covariance, which
            # sqrt inflates to ~1e-8 (float64) or ~1e-3 (float32) in the Matern branches (gpytorch's own MaternKernel
            # shows it when gradients are on). The exact value is 0 with zero derivative, so set it: k(x, x) == 1
            # (to 1e-15, the sqrt clamp) and no noisy gradient.
            eye = torch.eye(sq.shape[-1], dtype=torch.bool, device=sq.device)
            sq = sq.masked_fill(eye, 0.0)
        if self.nu is None:
            # `sq` is a fresh n x m tensor owned here: scale and exponentiate it in place, as gpytorch's
            # `postprocess_rbf` does (same values as F.base_correlation). Two fewer n x m allocations; this was
            # most of the gap to RBFKernel(ard_num_dims=3) in benchmarks/bench_kernel.py.
            return sq.mul_(-0.5).exp_()
        return F.base_correlation(sq, self.nu)

    def _nu_repr(self) -> str:
        return "RBF" if self.nu is None else f"Matern(nu={self.nu})"


#: The first-release name of :class:`AnisotropicKernel` (``dim`` defaults to 3); kept for compatibility.
Anisotropic3DKernel = AnisotropicKernel
