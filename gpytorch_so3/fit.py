r"""Type-II MAP fitting with Haar-random restarts over rotations.

The marginal likelihood of a rotated-anisotropy kernel is multimodal in the rotation: the 24 signed axis
permutations give equal optima, and between them lie saddles and poorer local optima in which an axis is
assigned the wrong length-scale. A single L-BFGS run from ``rotation = 0`` often lands in one of those.
:func:`fit_map` therefore restarts from Haar-uniform rotations with *unequal* initial length-scales (with
three equal ones the rotation has zero gradient), and keeps the restart with the best penalised likelihood.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import gpytorch
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.fit import fit_gpytorch_mll_scipy
from botorch.optim.utils import get_parameters
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.exceptions import RestartFailedWarning
from gpytorch_so3.kernels.full_spd_kernel import FullSPDKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = ["FitMapInfo", "fit_map"]

#: Initial principal length-scales of a restart, as multiples of the inputs' spread (one short, one medium,
#: one long axis): unequal so that the rotation has a gradient from the first step, and spanning the range
#: where the MLL of a field on the unit cube usually has its optimum.
INITIAL_LENGTHSCALE_FACTORS = (0.5, 1.0, 2.0)

#: Initial length-scales of a data-aligned restart as multiples of the inputs' standard deviation along each
#: principal axis (smallest extent first): about 0.4-0.9 of the cloud's width along that axis (a uniform
#: distribution of width ``w`` has standard deviation ``w / sqrt(12)``), unequal so that the rotation has a
#: gradient even for a round cloud. Measured on the drill holes (n = 150, 14 subsamples): a start with the
#: shortest length-scale at half a standard deviation (as the Haar restarts' ``0.5``) was too short to see the
#: layering and missed it in 10 of 14, this one found it in 14 of 14 (``/work/notes`` experiment, issue 4).
ALIGNED_LENGTHSCALE_FACTORS = (1.5, 2.25, 3.0)

#: Floor of a principal extent relative to the largest one, so that a degenerate (planar or collinear) input
#: cloud still gives positive initial length-scales.
MIN_EXTENT_RATIO = 1e-3

#: Inputs up to this many points are fitted with exact Cholesky solves (instead of gpytorch's CG/Lanczos
#: above its default `max_cholesky_size` of 800), so restarts are compared on the exact objective.
EXACT_FIT_MAX_POINTS = 5000

#: Default options of L-BFGS-B. The iteration cap guards against a flat direction (a length-scale the data do not
#: bound, with no prior) that scipy's default of 15,000 iterations would follow for minutes; with the default
#: priors a restart converges in well under this many iterations.
DEFAULT_OPTIMIZER_OPTIONS = {"maxiter": 1000}

_FAILURES = (NotPSDError, NanError, torch.linalg.LinAlgError, ValueError, RuntimeError)


@dataclass
class FitMapInfo:
    """Bookkeeping of a :func:`fit_map` run, stored on the model as ``model.fit_map_info_``.

    Attributes:
        losses: final negative penalised log marginal likelihood (per data point) of each restart,
            ``nan`` for a failed restart.
        best_restart: index of the restart that was kept.
        times: wall-clock seconds per restart.
        failures: messages of failed restarts, by index.

    Example:
        >>> info = FitMapInfo(losses=[0.92, float("nan"), 0.71], best_restart=2, times=[0.1, 0.1, 0.1],
        ...                   failures={1: "NotPSDError: ..."})
        >>> info.best_loss, sorted(info.failures)
        (0.71, [1])
    """

    losses: list[float] = field(default_factory=list)
    best_restart: int = -1
    times: list[float] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def best_loss(self) -> float:
        """Loss of the kept restart."""
        return self.losses[self.best_restart]


def _anisotropic_kernels(model: torch.nn.Module) -> list[SO3AnisotropicKernel | FullSPDKernel]:
    return [m for m in model.modules() if isinstance(m, SO3AnisotropicKernel | FullSPDKernel)]


def _train_inputs(model: gpytorch.models.ExactGP) -> Tensor:
    X = model.train_inputs[0]
    tf = getattr(model, "input_transform", None)
    if tf is not None:
        with torch.no_grad():
            X = tf.transform(X)
    return X


def _active_inputs(X: Tensor, kernel: torch.nn.Module | None) -> Tensor:
    """The kernel's active input columns (all with ``kernel=None``), leading batch dimensions pooled: ``N x d``."""
    if kernel is not None and kernel.active_dims is not None:
        X = X.index_select(-1, kernel.active_dims.to(X.device))
    return X.reshape(-1, X.shape[-1])


def _input_spread(X: Tensor, kernel: torch.nn.Module) -> Tensor:
    """Root-mean-square spread of the kernel's active input columns (a scalar tensor)."""
    X = _active_inputs(X, kernel)
    spread = X.std(dim=0).pow(2).mean().sqrt()
    if not bool(torch.isfinite(spread)) or float(spread) <= 0:
        raise ValueError("fit_map: the training inputs have zero spread; cannot initialise length-scales")
    return spread


def _principal_extents(X: Tensor, kernel: torch.nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """Principal extents and axes of the training inputs (PCA of the centred cloud), for data-aligned starts.

    Args:
        X: ``... x n x d`` inputs (leading batch dimensions are pooled); with ``kernel`` only its active columns
            are used, which must be 3.
        kernel: the kernel whose ``active_dims`` select the columns (``None``: all columns).

    Returns:
        ``(extents, axes)``: ``extents`` ``(3,)`` ascending, the standard deviation of the cloud along each
        principal axis (square roots of the eigenvalues of its covariance, divided by ``n``), floored at
        :data:`MIN_EXTENT_RATIO` times the largest so that a planar or collinear cloud still gives positive
        values; ``axes`` ``3 x 3`` with the principal directions as columns (``extents[i]`` goes with column
        ``i``), a proper rotation (determinant +1). Both float64.

    Raises:
        ValueError: fewer than two points, not three columns, non-finite inputs, or all points coincide.
    """
    X = _active_inputs(X, kernel).detach().to(torch.float64)
    if X.shape[-1] != 3 or X.shape[0] < 2:
        raise ValueError(f"fit_map: need at least 2 points with 3 coordinates, got inputs of shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("fit_map: the training inputs contain NaN or infinite values")
    Xc = X - X.mean(dim=0)
    cov = Xc.T @ Xc / X.shape[0]
    evals, axes = torch.linalg.eigh(0.5 * (cov + cov.T))  # ascending eigenvalues
    extents = evals.clamp_min(0).sqrt()
    top = float(extents[-1])
    if not top > 0:
        raise ValueError("fit_map: the training inputs have zero spread; cannot initialise length-scales")
    extents = extents.clamp_min(MIN_EXTENT_RATIO * top)
    if float(torch.linalg.det(axes)) < 0:
        axes = torch.cat([axes[:, :2], -axes[:, 2:]], dim=1)
    return extents, axes


def _strictly_inside(constraint: object, value: Tensor) -> Tensor:
    """Clamp ``value`` strictly inside a gpytorch constraint's bounds (a bound itself has an infinite raw value)."""
    try:
        lo, hi = float(constraint.lower_bound), float(constraint.upper_bound)
    except (AttributeError, TypeError, RuntimeError, ValueError):  # no bounds, or per-entry bounds
        return value
    if math.isfinite(lo) and math.isfinite(hi):
        lo, hi = lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo)
    elif math.isfinite(lo):
        lo = lo + 1e-3 * abs(lo)
    return value.clamp(min=lo if math.isfinite(lo) else None, max=hi if math.isfinite(hi) else None)


def _initialise(
    kernel: SO3AnisotropicKernel | FullSPDKernel,
    spread: Tensor,
    generator: torch.Generator,
    principal: tuple[Tensor, Tensor] | None = None,
) -> None:
    """Set an initial orientation and unequal length-scales for one restart.

    With ``principal=None`` a Haar-random rotation with length-scales ``spread * (0.5, 1, 2)``; with
    ``principal=(extents, axes)`` (from :func:`_principal_extents`) the data's principal axes with length-scales
    ``extents * ALIGNED_LENGTHSCALE_FACTORS`` (shortest on the thinnest axis). Length-scales are clamped inside
    the kernel's constraint.
    """
    batch = kernel.batch_shape
    ref = next(kernel.parameters())
    if principal is None:
        R = so3.random_rotation(*batch, generator=generator, dtype=torch.float64).to(ref)
        base = torch.tensor(INITIAL_LENGTHSCALE_FACTORS, dtype=ref.dtype, device=ref.device) * spread.to(ref)
    else:
        extents, axes = principal
        R = axes.to(ref).expand(*batch, 3, 3)
        base = torch.tensor(ALIGNED_LENGTHSCALE_FACTORS, dtype=ref.dtype, device=ref.device) * extents.to(ref)
    ls = base.expand(*batch, 3)
    with torch.no_grad():
        if isinstance(kernel, SO3AnisotropicKernel):
            kernel.lengthscale = _strictly_inside(kernel.raw_lengthscale_constraint, ls.unsqueeze(-2))
            kernel.rotation = so3.log_map(R)
        else:
            # z = x L with L L^T = R diag(l^-2) R^T: L is the Cholesky factor of that metric.
            M = (R / ls.unsqueeze(-2).square()) @ R.transpose(-1, -2)
            L = torch.linalg.cholesky(0.5 * (M + M.transpose(-1, -2)))
            diag = torch.diagonal(L, dim1=-2, dim2=-1)
            kernel.cholesky_diag = _strictly_inside(kernel.raw_cholesky_diag_constraint, diag)
            kernel.initialize(cholesky_offdiag=L[..., (1, 2, 2), (0, 0, 1)])


def _wrap_rotations(kernels: list) -> None:
    """Rewrite each fitted axis-angle vector as the equivalent one with ``|w| <= pi`` (same rotation, same kernel).

    L-BFGS may leave ``|w| > pi`` (the map ``w -> exp(hat(w))`` is many-to-one); reporting the principal-ball
    representative makes fitted rotations comparable. The kernel is unchanged and a rotation prior's value can
    only rise: the Haar prior weights the two preimages by ``h(theta) >= 1/2 >= h(2 pi - theta)`` (same volume
    factor), and a centred Gaussian prefers the shorter vector.
    """
    with torch.no_grad():
        for k in kernels:
            if isinstance(k, SO3AnisotropicKernel):
                k.rotation = so3.log_map(so3.exp_map(k.rotation))


def _plain_gpytorch_closure(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure | None:
    """A loss closure for a plain gpytorch ``ExactGP`` (``None`` for BoTorch models, which get BoTorch's own).

    BoTorch's default closure calls ``model.transform_inputs``, which only BoTorch models have; a plain gpytorch
    ``ExactGP`` gets the same negative marginal log likelihood (plus log priors) without input transforms.
    """
    if hasattr(mll.model, "transform_inputs"):
        return None

    def forward() -> Tensor:
        model = mll.model
        return -mll(model(*model.train_inputs), model.train_targets, *model.train_inputs)

    return ForwardBackwardClosure(forward=forward, parameters=get_parameters(mll, requires_grad=True))


def _exact_loss(mll: ExactMarginalLogLikelihood) -> float:
    model = mll.model
    with torch.no_grad():
        out = model(*model.train_inputs)
        loss = -mll(out, model.train_targets)
    return float(loss.sum())


def fit_map(
    model: gpytorch.models.ExactGP,
    *,
    num_restarts: int = 8,
    seed: int | None = None,
    mll: ExactMarginalLogLikelihood | None = None,
    optimizer_options: dict | None = None,
    exact: bool | None = None,
    progress: bool = False,
    data_aligned_start: bool = True,
) -> gpytorch.models.ExactGP:
    r"""Type-II MAP estimate of the hyperparameters with Haar-random restarts over rotations.

    Each start resets the model to its state at the call, then initialises every
    :class:`~gpytorch_so3.SO3AnisotropicKernel` (and :class:`~gpytorch_so3.FullSPDKernel`) in it:

    * each of the ``num_restarts`` restarts draws a Haar-uniform rotation (independent of the data) and sets
      unequal length-scales ``spread * (0.5, 1, 2)``, ``spread`` being the RMS standard deviation of the kernel's
      active input columns;
    * with ``data_aligned_start`` (default), one more start, run first (index 0 in ``fit_map_info_``), is
      *data-aligned*: the rotation is the principal axes
      of the training inputs (eigenvectors of the covariance of the centred kernel inputs; leading batch
      dimensions pooled) and the length-scale along principal axis ``i`` is ``extent_i * (1.5, 2.25, 3)[i]``,
      ``extent_i`` being the standard deviation of the inputs along it (ascending; floored at
      :data:`MIN_EXTENT_RATIO` times the largest, so planar or collinear clouds work). In a thin domain, such as
      drill holes whose vertical extent is a few percent of the horizontal one, this is the start whose short
      length-scale fits the thin axis: the Haar starts' length-scales all exceed it and at small ``n`` can miss
      a layered optimum (measured on the bundled drill holes, n = 150-300: layering found in 18/18 subsamples
      with this start, 3/18 with Haar restarts alone).

    Initial length-scales are clamped strictly inside the kernel's length-scale constraint. The Haar draws come
    from a generator seeded with ``seed``, so a seed fixes every start. Each restart then maximises the marginal
    log likelihood plus log priors (gpytorch's ``ExactMarginalLogLikelihood`` adds registered priors) with
    L-BFGS-B through BoTorch's ``fit_gpytorch_mll_scipy``. The start with the best objective is restored.
    A start that fails (non-PSD, NaN, Cholesky error) is skipped with a
    :class:`~gpytorch_so3.exceptions.RestartFailedWarning`; if all fail a ``ModelFittingError`` is raised.

    Args:
        model: a gpytorch ``ExactGP`` (BoTorch's ``SingleTaskGP`` included) containing one or more
            ``SO3AnisotropicKernel`` or ``FullSPDKernel`` modules, or a model list of them (BoTorch's
            ``ModelListGP``, gpytorch's ``IndependentModelList``): then each sub-model with such a kernel is fitted
            by ``fit_map`` with seed ``seed + i`` (its own ``fit_map_info_``), the others by BoTorch's
            ``fit_gpytorch_mll``; ``mll`` must be ``None``.
        num_restarts: number of restarts (>= 1).
        seed: seed of the restarts' random rotations (``None``: fresh randomness). Same seed, same result.
        mll: the objective; default ``ExactMarginalLogLikelihood(model.likelihood, model)``.
        optimizer_options: options of ``scipy.optimize.minimize`` (default :data:`DEFAULT_OPTIMIZER_OPTIONS`,
            ``{"maxiter": 1000}``).
        exact: evaluate with Cholesky instead of CG/Lanczos (default: when ``n <= 5000``).
        progress: print one line per restart to stderr.
        data_aligned_start: add the data-aligned start described above (``False``: Haar restarts only).

    Returns:
        The model, with the best start's hyperparameters, in eval mode. ``model.fit_map_info_`` holds a
        :class:`FitMapInfo` (loss of every start, ``num_restarts + 1`` entries with the data-aligned start first,
        which was kept, timings, failures).

    Raises:
        ValueError: no SO(3)/full-SPD kernel in the model, or ``num_restarts < 1``.
        ModelFittingError: every restart failed.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> from gpytorch.kernels import ScaleKernel
        >>> X = torch.rand(20, 3, dtype=torch.float64); Y = torch.sin(6 * X.sum(-1, keepdim=True))
        >>> model = SingleTaskGP(X, Y, covar_module=ScaleKernel(SO3AnisotropicKernel(nu=2.5)))
        >>> # a tiny budget to keep the example fast; the defaults are 8 restarts of up to 1000 iterations
        >>> model = fit_map(model, num_restarts=2, seed=0, optimizer_options={"maxiter": 20})
        >>> model.training, len(model.fit_map_info_.losses)  # the data-aligned start and 2 Haar restarts
        (False, 3)
        >>> model.covar_module.base_kernel.rotation_matrix.shape  # the fitted orientation
        torch.Size([3, 3])
    """
    if isinstance(num_restarts, bool) or not isinstance(num_restarts, int) or num_restarts < 1:
        raise ValueError(f"num_restarts must be a positive int, got {num_restarts!r}")
    if isinstance(model, gpytorch.models.IndependentModelList):  # includes BoTorch's ModelListGP
        return _fit_model_list(
            model,
            num_restarts=num_restarts,
            seed=seed,
            mll=mll,
            optimizer_options=optimizer_options,
            exact=exact,
            progress=progress,
            data_aligned_start=data_aligned_start,
        )
    if not isinstance(model, gpytorch.models.ExactGP):
        raise TypeError(
            "fit_map expects a gpytorch ExactGP (e.g. botorch SingleTaskGP) or a model list of them "
            f"(botorch ModelListGP), got {type(model).__name__}"
        )
    kernels = _anisotropic_kernels(model)
    if not kernels:
        raise ValueError(
            "fit_map: the model contains no SO3AnisotropicKernel or FullSPDKernel; "
            "use botorch.fit.fit_gpytorch_mll for other kernels"
        )
    from gpytorch_so3.botorch_utils import check_input_scaling  # local: botorch_utils imports heavier modules

    check_input_scaling(model, stacklevel=3)  # a per-axis Normalize shears space: warn, the fit is still valid
    if mll is None:
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
    X = _train_inputs(model)
    spreads = [_input_spread(X, k) for k in kernels]
    num_aligned = 1 if data_aligned_start else 0
    num_starts = num_restarts + num_aligned
    principals = [_principal_extents(X, k) for k in kernels] if num_aligned else [None] * len(kernels)
    n = X.shape[-2]
    if exact is None:
        exact = n <= EXACT_FIT_MAX_POINTS
    generator = torch.Generator()
    generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))

    initial_state = copy.deepcopy(model.state_dict())
    best_state, best_loss = None, math.inf
    info = FitMapInfo()
    chol = gpytorch.settings.max_cholesky_size(n + 1 if exact else gpytorch.settings.max_cholesky_size.value())
    for r in range(num_starts):
        t0 = time.perf_counter()
        model.load_state_dict(initial_state)
        loss = math.nan
        try:
            for k, s, p in zip(kernels, spreads, principals, strict=True):
                _initialise(k, s, generator, p if r < num_aligned else None)
            mll.train()
            with chol, warnings.catch_warnings():
                # Our own loop replaces BoTorch's retries; its convergence chatter per restart is noise here.
                warnings.filterwarnings("ignore", message=".*(converge|ABNORMAL|TOTAL NO. of).*")
                options = DEFAULT_OPTIMIZER_OPTIONS if optimizer_options is None else optimizer_options
                fit_gpytorch_mll_scipy(mll, closure=_plain_gpytorch_closure(mll), options=options)
                _wrap_rotations(kernels)
                loss = _exact_loss(mll)
            if not math.isfinite(loss):
                raise ValueError(f"non-finite objective {loss}")
        except _FAILURES as e:  # a failed restart is skipped, not fatal
            info.failures[r] = f"{type(e).__name__}: {e}"
            what = "data-aligned start" if r < num_aligned else f"restart {r - num_aligned}"
            warnings.warn(
                f"fit_map {what} (start {r}) failed and was skipped ({type(e).__name__}: {e})",
                RestartFailedWarning,
                stacklevel=2,
            )
            loss = math.nan
        info.losses.append(loss)
        info.times.append(time.perf_counter() - t0)
        if math.isfinite(loss) and loss < best_loss:
            best_loss, best_state, info.best_restart = loss, copy.deepcopy(model.state_dict()), r
        if progress:
            mark = " *" if info.best_restart == r else ""
            kind = "data-aligned start" if r < num_aligned else f"restart {r + 1 - num_aligned}/{num_restarts}"
            print(f"fit_map {kind}: loss {loss:.5g} ({info.times[-1]:.1f} s){mark}", file=sys.stderr)
    if best_state is None:
        model.load_state_dict(initial_state)
        raise ModelFittingError(f"fit_map: all {num_starts} starts failed: " + "; ".join(info.failures.values()))
    model.load_state_dict(best_state)
    model.fit_map_info_ = info
    mll.eval()
    model.eval()
    return model


def _fit_model_list(model: gpytorch.models.IndependentModelList, *, seed: int | None, mll: object, **kwargs):
    """``fit_map`` on every sub-model of a model list that has an SO(3)/full-SPD kernel, BoTorch's fit on the others.

    Sub-model ``i`` uses seed ``seed + i`` (independent restarts per output, reproducible as a whole).
    """
    if mll is not None:
        raise ValueError("fit_map on a model list fits each sub-model with its own MLL; pass mll=None")
    subs = list(model.models)
    if not any(_anisotropic_kernels(m) for m in subs):
        raise ValueError(
            "fit_map: no sub-model of the model list contains an SO3AnisotropicKernel or FullSPDKernel; "
            "use botorch.fit.fit_gpytorch_mll for other kernels"
        )
    for i, sub in enumerate(subs):
        if _anisotropic_kernels(sub):
            fit_map(sub, seed=None if seed is None else int(seed) + i, **kwargs)
        else:
            from botorch.fit import fit_gpytorch_mll

            fit_gpytorch_mll(ExactMarginalLogLikelihood(sub.likelihood, sub))
    model.eval()
    return model
