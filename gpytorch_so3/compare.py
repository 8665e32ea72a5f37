r"""Fit and compare isotropic, ARD, full-SPD and SO(3) surrogates on one data set (used by the CLI and notebooks).

Inputs are centred and scaled by *one* common factor (never per axis: per-axis scaling shears space and
changes the angles a rotation is meant to recover); fitted length-scales are mapped back to data units.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import gpytorch
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.fit import fit_map
from gpytorch_so3.geo import azimuth_dip  # re-exported here for the CLI and old imports
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.priors import default_lengthscale_prior, default_rotation_prior

__all__ = [
    "MODEL_KINDS",
    "FittedModel",
    "IsotropicScaling",
    "azimuth_dip",
    "build_model",
    "evaluate",
    "fit_model",
    "principal_axes",
]

#: Model kinds understood by :func:`build_model`, with display names.
MODEL_KINDS = {"iso": "Isotropic", "ard": "ARD", "spd": "Full SPD", "so3": "SO(3)"}


@dataclass(frozen=True)
class IsotropicScaling:
    """``x_scaled = (x - center) / scale`` with one scalar ``scale`` for all axes (angles are preserved).

    Attributes:
        center: ``(3,)`` centre (midpoint of the bounding box).
        scale: the largest side of the bounding box, so scaled inputs lie in a cube of side 1.
    """

    center: Tensor
    scale: float

    @classmethod
    def from_data(cls, X: Tensor) -> IsotropicScaling:
        """Fit to ``n x 3`` inputs."""
        lo, hi = X.min(0).values, X.max(0).values
        scale = float((hi - lo).max())
        if not scale > 0:
            raise ValueError("all input points coincide; cannot scale coordinates")
        return cls(center=0.5 * (lo + hi), scale=scale)

    def __call__(self, X: Tensor) -> Tensor:
        """Scale ``... x 3`` inputs."""
        return (X - self.center.to(X)) / self.scale


def build_model(kind: str, train_X: Tensor, train_Y: Tensor, *, nu: float | None = 2.5) -> SingleTaskGP:
    """A BoTorch ``SingleTaskGP`` (``Standardize`` outcome) with the kernel ``kind`` and default priors.

    Args:
        kind: ``"iso"``, ``"ard"``, ``"spd"`` or ``"so3"`` (see :data:`MODEL_KINDS`).
        train_X: ``n x 3`` inputs, already scaled isotropically.
        train_Y: ``n x 1`` targets.
        nu: ``None`` (RBF) or Matern smoothness.

    Returns:
        an unfitted model.
    """
    if kind in ("iso", "ard"):
        ard = 3 if kind == "ard" else None
        prior = default_lengthscale_prior()
        base = (
            RBFKernel(ard_num_dims=ard, lengthscale_prior=prior)
            if nu is None
            else MaternKernel(nu=nu, ard_num_dims=ard, lengthscale_prior=prior)
        )
    elif kind == "spd":
        base = FullSPDKernel(nu=nu)
    elif kind == "so3":
        base = SO3AnisotropicKernel(
            nu=nu, lengthscale_prior=default_lengthscale_prior(), rotation_prior=default_rotation_prior()
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    base = base.to(train_X)
    return SingleTaskGP(train_X, train_Y, covar_module=ScaleKernel(base), outcome_transform=Standardize(m=1))


@dataclass
class FittedModel:
    """A fitted model with its kind, fit time and canonical principal axes (in scaled units)."""

    kind: str
    model: SingleTaskGP
    fit_seconds: float
    lengthscale: Tensor = field(repr=False)  # (3,) canonical ascending, scaled units
    axes: Tensor = field(repr=False)  # (3, 3) canonical directions as columns

    @property
    def name(self) -> str:
        """Display name."""
        return MODEL_KINDS[self.kind]


def principal_axes(model: SingleTaskGP) -> tuple[Tensor, Tensor]:
    """Canonical ``(lengthscale (3,), axes (3, 3))`` of the model's covariance (columns are directions)."""
    base = model.covar_module.base_kernel
    with torch.no_grad():
        if isinstance(base, SO3AnisotropicKernel):
            return base.canonical()
        if isinstance(base, FullSPDKernel):
            return base.principal()
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
) -> FittedModel:
    """Build and fit one model by MAP (:func:`~gpytorch_so3.fit_map` with restarts for SPD/SO(3) kernels).

    Args:
        kind: see :func:`build_model`.
        train_X: ``n x 3`` scaled inputs.
        train_Y: ``n x 1`` targets.
        nu: base kernel smoothness.
        num_restarts: restarts for the rotated kernels.
        seed: restart seed.

    Returns:
        the fitted model with its timing and principal axes.
    """
    model = build_model(kind, train_X, train_Y, nu=nu)
    t0 = time.perf_counter()
    if kind in ("spd", "so3"):
        fit_map(model, num_restarts=num_restarts, seed=seed)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BoTorch's optimisation-warning chatter
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        model.eval()
    seconds = time.perf_counter() - t0
    ls, axes = principal_axes(model)
    return FittedModel(kind=kind, model=model, fit_seconds=seconds, lengthscale=ls, axes=axes)


def evaluate(model: SingleTaskGP, test_X: Tensor, test_Y: Tensor) -> dict[str, float]:
    """Held-out RMSE, NLPD (Gaussian predictive with noise) and R^2 of a fitted model.

    Args:
        model: a fitted model.
        test_X: ``m x 3`` scaled inputs.
        test_Y: ``m x 1`` targets (noisy observations: NLPD uses the predictive including noise).

    Returns:
        dict with ``rmse``, ``nlpd`` (mean negative log predictive density) and ``r2``.
    """
    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        post = model.posterior(test_X, observation_noise=True)
        mean, var = post.mean, post.variance.clamp_min(1e-12)
    err = test_Y - mean
    rmse = float(err.pow(2).mean().sqrt())
    nlpd = float((0.5 * (err.pow(2) / var + var.log() + math.log(2 * math.pi))).mean())
    r2 = float(1 - err.pow(2).sum() / (test_Y - test_Y.mean()).pow(2).sum())
    return {"rmse": rmse, "nlpd": nlpd, "r2": r2}


def compare_models(
    train_X: Tensor,
    train_Y: Tensor,
    *,
    kinds: Sequence[str] = ("ard", "spd", "so3"),
    nu: float | None = 2.5,
    num_restarts: int = 8,
    seed: int | None = 0,
) -> list[FittedModel]:
    """Fit several model kinds on the same (scaled) data; see :func:`fit_model`."""
    return [fit_model(k, train_X, train_Y, nu=nu, num_restarts=num_restarts, seed=seed) for k in kinds]
