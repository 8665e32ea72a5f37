r"""The command line's model zoo: isotropic, ARD, full-SPD and SO(3) surrogates built, fitted and scored alike.

Application code of ``gpytorch-so3 demo`` / ``fit`` (nothing in the library imports it). Library users build
these models themselves from the public kernels, priors and :func:`~gpytorch_so3.fit_map`.

Inputs are centred and scaled by *one* common factor (never per axis: per-axis scaling shears space and
changes the angles a rotation is meant to recover); fitted length-scales are mapped back to data units.

Priors are the same for every kind, so the comparison is fair: the length-scales of the isotropic, ARD and
SO(3) kernels get :func:`~gpytorch_so3.priors.default_lengthscale_prior` (``LogNormal(log 0.3, 1)`` in scaled
units); the full-SPD kernel ``M = L L^T`` gets the matching prior on the diagonal of ``L``, whose entries are
inverse length-scales when ``L`` is diagonal: ``1 / l ~ LogNormal(-log 0.3, 1)`` exactly when ``l ~
LogNormal(log 0.3, 1)``. Its off-diagonal entries, like the SO(3) kernel's orientation (Haar prior: uniform
over rotations), get no preference. Output scale, noise and mean are BoTorch's ``SingleTaskGP`` defaults for all.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import gpytorch
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3._validation import check_int
from gpytorch_so3.fit import EXACT_FIT_MAX_POINTS, fit_map
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel
from gpytorch_so3.large import predict_in_chunks
from gpytorch_so3.priors import (
    DEFAULT_LENGTHSCALE_LOC,
    DEFAULT_LENGTHSCALE_SCALE,
    default_lengthscale_prior,
    default_rotation_prior,
)

__all__ = [
    "MODEL_KINDS",
    "FittedModel",
    "IsotropicScaling",
    "build_model",
    "canonical_axes",
    "condition_on",
    "evaluate",
    "fit_model",
    "log_evidence",
]

#: Model kinds understood by :func:`build_model`, with display names.
MODEL_KINDS = {"iso": "Isotropic", "ard": "ARD", "spd": "Full SPD", "so3": "SO(3)"}

#: Standard-normal quantile of a central 90% interval.
Z90 = 1.6448536269514722


@dataclass(frozen=True)
class IsotropicScaling:
    """``x_scaled = (x - center) / scale`` with one scalar ``scale`` for all axes (angles are preserved).

    Attributes:
        center: ``(3,)`` centre (midpoint of the bounding box).
        scale: the largest side of the bounding box, so scaled inputs lie in a cube of side 1.

    Example:
        >>> X = torch.tensor([[0.0, 0.0, 0.0], [200.0, 100.0, 10.0]], dtype=torch.float64)  # metres
        >>> scaling = IsotropicScaling.from_data(X)
        >>> scaling.scale, scaling.center
        (200.0, tensor([100.,  50.,   5.], dtype=torch.float64))
        >>> scaling(X)  # one factor for all axes: a thin slab stays thin
        tensor([[-0.5000, -0.2500, -0.0250],
                [ 0.5000,  0.2500,  0.0250]], dtype=torch.float64)
    """

    center: Tensor
    scale: float

    @classmethod
    def from_data(cls, X: Tensor) -> IsotropicScaling:
        """Fit to ``n x 3`` inputs (centre and largest side of their bounding box); see the class example."""
        lo, hi = X.min(0).values, X.max(0).values
        scale = float((hi - lo).max())
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError("all input points coincide (or their extent overflows); cannot scale coordinates")
        return cls(center=0.5 * lo + 0.5 * hi, scale=scale)

    def __call__(self, X: Tensor) -> Tensor:
        """Scale ``... x 3`` inputs."""
        return (X - self.center.to(X)) / self.scale


def spd_cholesky_diag_prior() -> LogNormalPrior:
    """Prior of the full-SPD kernel's Cholesky diagonal matching the default length-scale prior (see the module).

    Example:
        >>> round(float(spd_cholesky_diag_prior().icdf(torch.tensor(0.5))), 4)  # median 1 / 0.3
        3.3333
    """
    return LogNormalPrior(loc=-DEFAULT_LENGTHSCALE_LOC, scale=DEFAULT_LENGTHSCALE_SCALE)


def build_model(
    kind: str, train_X: Tensor, train_Y: Tensor, *, nu: float | None = 2.5, lengthscale_prior: bool = True
) -> SingleTaskGP:
    """A BoTorch ``SingleTaskGP`` (``Standardize`` outcome) with the kernel ``kind`` and the same priors for all.

    Args:
        kind: ``"iso"``, ``"ard"``, ``"spd"`` or ``"so3"`` (see :data:`MODEL_KINDS`).
        train_X: ``n x 3`` inputs, already scaled isotropically.
        train_Y: ``n x 1`` targets.
        nu: ``None`` (RBF) or Matern smoothness.
        lengthscale_prior: ``False`` drops the length-scale prior (and the full-SPD diagonal prior): an ablation.

    Returns:
        an unfitted model.

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=20, n_test=5, seed=0)
        >>> [type(build_model(k, f.train_X, f.train_Y).covar_module.base_kernel).__name__ for k in MODEL_KINDS]
        ['MaternKernel', 'MaternKernel', 'FullSPDKernel', 'SO3AnisotropicKernel']
        >>> [name for name, *_ in build_model("spd", f.train_X, f.train_Y).covar_module.named_priors()]
        ['base_kernel.cholesky_diag_prior']
    """
    ls_prior = default_lengthscale_prior() if lengthscale_prior else None
    if kind in ("iso", "ard"):
        ard = 3 if kind == "ard" else None
        base = (
            RBFKernel(ard_num_dims=ard, lengthscale_prior=ls_prior)
            if nu is None
            else MaternKernel(nu=nu, ard_num_dims=ard, lengthscale_prior=ls_prior)
        )
    elif kind == "spd":
        base = FullSPDKernel(nu=nu, cholesky_diag_prior=spd_cholesky_diag_prior() if lengthscale_prior else None)
    elif kind == "so3":
        base = SO3AnisotropicKernel(nu=nu, lengthscale_prior=ls_prior, rotation_prior=default_rotation_prior())
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    base = base.to(train_X)
    return SingleTaskGP(train_X, train_Y, covar_module=ScaleKernel(base), outcome_transform=Standardize(m=1))


@dataclass
class FittedModel:
    """A fitted model with its kind, fit time and canonical principal axes (in scaled units).

    Attributes:
        kind: a key of :data:`MODEL_KINDS`.
        model: the fitted ``SingleTaskGP`` (eval mode).
        fit_seconds: wall-clock seconds of the fit.
        lengthscale: ``(3,)`` canonical (ascending) principal length-scales, scaled units.
        axes: ``(3, 3)`` canonical principal directions as columns.
    """

    kind: str
    model: SingleTaskGP
    fit_seconds: float
    lengthscale: Tensor = field(repr=False)
    axes: Tensor = field(repr=False)

    @property
    def name(self) -> str:
        """Display name."""
        return MODEL_KINDS[self.kind]


def canonical_axes(model: SingleTaskGP) -> tuple[Tensor, Tensor]:
    """Canonical ``(lengthscale (3,), axes (3, 3))`` of the model's covariance (columns are directions).

    Args:
        model: a model from :func:`build_model` (any kind; isotropic/ARD kernels have axis-aligned directions).

    Returns:
        ascending length-scales ``(3,)`` and directions ``(3, 3)`` (:func:`gpytorch_so3.so3.canonicalize`).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=20, n_test=5, seed=0)
        >>> model = build_model("so3", f.train_X, f.train_Y)
        >>> model.covar_module.base_kernel.lengthscale = torch.tensor([[0.5, 0.1, 0.2]], dtype=torch.float64)
        >>> ls, axes = canonical_axes(model)
        >>> ls.round(decimals=6).tolist(), axes.abs().argmax(0).tolist()  # ascending: the 0.1 axis (y) first
        ([0.1, 0.2, 0.5], [1, 2, 0])
    """
    base = model.covar_module.base_kernel
    with torch.no_grad():
        if isinstance(base, SO3AnisotropicKernel):
            return base.canonical()
        if isinstance(base, FullSPDKernel):
            return base.canonical()
        ls = base.lengthscale.reshape(-1).expand(3)
        return so3.canonicalize(ls, torch.eye(3, dtype=ls.dtype, device=ls.device))


def fit_model(
    kind: str,
    train_X: Tensor,
    train_Y: Tensor,
    *,
    nu: float | None = 2.5,
    num_restarts: int = 8,
    seed: int | None = 0,
    max_iter: int | None = None,
    lengthscale_prior: bool = True,
    progress: bool = False,
) -> FittedModel:
    """Build and fit one model by MAP (:func:`~gpytorch_so3.fit_map` with restarts for SPD/SO(3) kernels).

    Args:
        kind: see :func:`build_model`.
        train_X: ``n x 3`` scaled inputs.
        train_Y: ``n x 1`` targets.
        nu: base kernel smoothness.
        num_restarts: restarts for the rotated kernels.
        seed: restart seed.
        max_iter: cap on L-BFGS iterations per start (``None``: the optimisers' defaults).
        lengthscale_prior: see :func:`build_model`.
        progress: ``fit_map``'s progress output (stderr) for the rotated kernels.

    Returns:
        the fitted model with its timing and principal axes.

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=20, n_test=5, seed=0)
        >>> fm = fit_model("so3", f.train_X, f.train_Y, num_restarts=1, max_iter=20)  # a tiny budget
        >>> fm.name, fm.model.training, fm.lengthscale.shape, fm.axes.shape
        ('SO(3)', False, torch.Size([3]), torch.Size([3, 3]))
    """
    max_iter = check_int("max_iter", max_iter, 1, allow_none=True, where="fit_model: ")
    model = build_model(kind, train_X, train_Y, nu=nu, lengthscale_prior=lengthscale_prior)
    t0 = time.perf_counter()
    options = None if max_iter is None else {"maxiter": max_iter}
    if kind in ("spd", "so3"):
        fit_map(model, num_restarts=num_restarts, seed=seed, optimizer_options=options, progress=progress)
    else:
        kwargs = {} if options is None else {"optimizer_kwargs": {"options": options}}
        # Exact Cholesky up to fit_map's threshold, as fit_map does for the rotated kernels: same objective, fair
        # timing (BoTorch raises max_cholesky_size to 4096 only, above which gpytorch switches to CG/Lanczos).
        n = train_X.shape[-2]
        chol = max(gpytorch.settings.max_cholesky_size.value(), n + 1 if n <= EXACT_FIT_MAX_POINTS else 0)
        with warnings.catch_warnings(), gpytorch.settings.max_cholesky_size(chol):
            warnings.simplefilter("ignore")  # BoTorch's optimisation-warning chatter
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), **kwargs)
        model.eval()
    seconds = time.perf_counter() - t0
    ls, axes = canonical_axes(model)
    return FittedModel(kind=kind, model=model, fit_seconds=seconds, lengthscale=ls, axes=axes)


def log_evidence(model: SingleTaskGP) -> float:
    """Log marginal likelihood per training point (priors excluded) of a fitted model, in standardised units.

    Comparable between kernels fitted on the same data (the outcome standardisation is the same).

    Args:
        model: a fitted model from :func:`fit_model`.

    Returns:
        ``log p(y | X, hyper-parameters) / n``.
    """
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
            out = model.likelihood(model(*model.train_inputs))
            return float(out.log_prob(model.train_targets)) / model.train_targets.shape[-1]
    finally:
        model.train(was_training)


def evaluate(
    model: SingleTaskGP,
    test_X: Tensor,
    test_Y: Tensor,
    *,
    iterative: bool = False,
    chunk_size: int = 4096,
    progress: bool = False,
) -> dict[str, float]:
    """Held-out RMSE, NLPD and 90% coverage (Gaussian predictive with noise) and R^2 of a fitted model.

    Args:
        model: a fitted model.
        test_X: ``m x 3`` scaled inputs.
        test_Y: ``m x 1`` targets (noisy observations: NLPD uses the predictive including noise).
        iterative: predict with CG and LOVE in chunks (:func:`gpytorch_so3.large.predict_in_chunks`), for models
            conditioned on many training points (see :func:`condition_on`); ``False``: exact (Cholesky).
        chunk_size: test points per chunk.
        progress: a progress bar over the chunks (stderr).

    Returns:
        dict with ``rmse``, ``nlpd`` (mean negative log predictive density), ``r2`` and ``coverage90`` (fraction of
        observations inside the central 90% predictive interval).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=40, n_test=40, seed=0)
        >>> fm = fit_model("ard", f.train_X, f.train_Y)
        >>> sorted(evaluate(fm.model, f.test_X, f.test_Y))
        ['coverage90', 'nlpd', 'r2', 'rmse']
    """
    model.eval()
    with gpytorch.settings.fast_pred_var(iterative):  # exact variances unless iterative (then LOVE)
        mean, var = predict_in_chunks(
            model, test_X, chunk_size=chunk_size, observation_noise=True, iterative=iterative, progress=progress
        )
    var = var.clamp_min(1e-12)
    err = test_Y - mean
    rmse = float(err.pow(2).mean().sqrt())
    nlpd = float((0.5 * (err.pow(2) / var + var.log() + math.log(2 * math.pi))).mean())
    r2 = float(1 - err.pow(2).sum() / (test_Y - test_Y.mean()).pow(2).sum())
    cov90 = float((err.abs() <= Z90 * var.sqrt()).double().mean())
    return {"rmse": rmse, "nlpd": nlpd, "r2": r2, "coverage90": cov90}


def condition_on(
    fitted: FittedModel, train_X: Tensor, train_Y: Tensor, *, nu: float | None = 2.5, use_keops: bool | None = None
) -> SingleTaskGP:
    """The fitted covariance of any model kind, conditioned on other (typically many more) training points.

    Every kind's fitted metric is an SO(3) metric (ARD: rotation 0; full SPD: its eigen-decomposition), so the
    returned model holds it in a :class:`~gpytorch_so3.kernels.keops.KeOpsSO3AnisotropicKernel` (KeOps products
    for large blocks when ``pykeops`` is installed, dense otherwise) with the fitted output scale, noise, constant
    mean and outcome standardisation. Predict from it with ``evaluate(..., iterative=True)`` or
    :func:`gpytorch_so3.large.predict_in_chunks` (CG, ``O(N)`` memory with KeOps).

    Args:
        fitted: a model fitted by :func:`fit_model` (e.g. on a subset).
        train_X: ``N x 3`` scaled inputs to condition on (same scaling as the fit).
        train_Y: ``N x 1`` targets.
        nu: base kernel smoothness of ``fitted`` (``None``: RBF).
        use_keops: ``KeOpsSO3AnisotropicKernel``'s ``use_keops`` (``None``: automatic, ``False``: dense).

    Returns:
        a ``SingleTaskGP`` in eval mode with the same hyper-parameters, conditioned on ``train_X, train_Y``.

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=80, n_test=10, seed=0)
        >>> fm = fit_model("ard", f.train_X[:40], f.train_Y[:40])
        >>> condition_on(fm, f.train_X, f.train_Y, use_keops=False).train_inputs[0].shape
        torch.Size([80, 3])
    """
    src = fitted.model
    kernel = KeOpsSO3AnisotropicKernel(nu=nu, use_keops=use_keops).to(train_X)
    kernel.lengthscale = fitted.lengthscale.reshape(1, 3).to(train_X)
    # canonical axes form a proper rotation (third column = first x second)
    kernel.rotation = so3.log_map(fitted.axes.to(train_X))
    covar = ScaleKernel(kernel).to(train_X)
    covar.outputscale = src.covar_module.outputscale.detach()
    model = SingleTaskGP(train_X, train_Y, covar_module=covar, outcome_transform=Standardize(m=1))
    # BoTorch's constructor re-fits the outcome transform to train_Y; keep the fit's standardisation instead (output
    # scale, noise and constant mean are in its units) and store the targets standardised by it.
    model.outcome_transform.load_state_dict(src.outcome_transform.state_dict())
    model.outcome_transform.eval()
    targets, _ = model.outcome_transform(train_Y)
    model.set_train_data(targets=targets.squeeze(-1), strict=False)
    model.likelihood.load_state_dict(src.likelihood.state_dict())
    model.mean_module.load_state_dict(src.mean_module.state_dict())
    return model.eval()
