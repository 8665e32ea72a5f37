"""The command line's scalable methods: ``fit --method svgp|nngp`` (and ``auto`` above the exact threshold).

Application code: thin adapters from the CLI's arrays to :func:`gpytorch_so3.scalable.fit_svgp` /
:func:`~gpytorch_so3.scalable.fit_nngp`, held-out scores with the same definitions as the exact path
(:func:`gpytorch_so3.cli._models.evaluate`: the predictive is the latent variance plus the fitted noise), and the
principal axes of the fitted kernel in data units.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from gpytorch_so3.cli._models import Z90
from gpytorch_so3.kernels import SO3AnisotropicKernel
from gpytorch_so3.scalable import fit_nngp, fit_svgp

__all__ = ["SCALABLE_METHODS", "ScalableFit", "fit_scalable", "predict", "score", "world_size"]

SCALABLE_METHODS = ("svgp", "nngp")
#: Rows per prediction chunk (``chunk x M`` cross-covariance for SVGP, ``chunk x k x k`` for NNGP).
PREDICT_CHUNK = 4096


def world_size() -> int:
    """Number of processes torchrun launched (``WORLD_SIZE``; 1 without torchrun)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def process_rank() -> int:
    """This process's rank under torchrun (``RANK``; 0 without torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@dataclass
class ScalableFit:
    """A fitted SVGP or NNGP with what the report needs.

    Attributes:
        method: ``"svgp"`` or ``"nngp"``.
        result: the :class:`~gpytorch_so3.scalable.SVGPResult` or :class:`~gpytorch_so3.scalable.NearestNeighbourGP`.
        fit_seconds: wall-clock seconds of the fit (initialisation and training).
        noise: fitted noise variance, targets' units.
        scale: data units per scaled unit of the model's inputs.
        lengthscale: ``(3,)`` canonical (ascending) length-scales in scaled units (``None`` if no SO(3) kernel).
        axes: ``(3, 3)`` canonical principal directions (columns), or ``None``.
        steps: minibatch steps taken; epochs: epochs started.
    """

    method: str
    result: object
    fit_seconds: float
    noise: float
    scale: float
    lengthscale: Tensor | None = field(default=None, repr=False)
    axes: Tensor | None = field(default=None, repr=False)
    steps: int = 0
    epochs: int = 0
    kind: str = "so3"

    @property
    def name(self) -> str:
        """Display name."""
        return f"SO(3) {self.method.upper()}"


def _kernel_axes(covar_module) -> tuple[Tensor | None, Tensor | None]:
    base = getattr(covar_module, "base_kernel", covar_module)
    if not isinstance(base, SO3AnisotropicKernel):
        return None, None
    with torch.no_grad():
        ls, axes = base.canonical()
    return ls.detach().double().cpu().reshape(3), axes.detach().double().cpu().reshape(3, 3)


def fit_scalable(
    method: str,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    nu: float | None,
    seed: int,
    max_seconds: float | None,
    epochs: int | None,
    num_inducing: int,
    batch_size: int,
    init_restarts: int,
    progress: bool,
) -> ScalableFit:
    """Fit ``method`` on ``N x 3`` inputs and ``N`` targets (data units; the fit scales and standardises them).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=120, n_test=10, seed=0)
        >>> sf = fit_scalable("nngp", f.train_X.numpy(), f.train_Y.numpy().ravel(), nu=2.5, seed=0,
        ...                   max_seconds=None, epochs=1, num_inducing=32, batch_size=64, init_restarts=1,
        ...                   progress=False)
        >>> sf.name, sf.lengthscale.shape, sf.noise > 0
        ('SO(3) NNGP', torch.Size([3]), True)
    """
    init_size = min(1000, len(X))
    common = dict(
        nu=nu, batch_size=batch_size, epochs=epochs, max_seconds=max_seconds, seed=seed, progress=progress,
        init_size=init_size, init_restarts=init_restarts,
    )  # fmt: skip
    t0 = time.perf_counter()
    if method == "svgp":
        res = fit_svgp(X, Y, num_inducing=num_inducing, **common)
        noise, cov, std = res.noise, res.model.covar_module, res.standardization
    elif method == "nngp":
        res = fit_nngp(X, Y, **common)
        std = res.standardization
        noise = float(res.likelihood.noise.detach().reshape(-1)[0]) * std.y_std**2
        cov = res.covar_module
    else:  # pragma: no cover - the parser allows only the two
        raise ValueError(f"unknown scalable method {method!r}")
    seconds = time.perf_counter() - t0
    ls, axes = _kernel_axes(cov)
    history = getattr(res, "history", []) or []
    return ScalableFit(
        method=method,
        result=res,
        fit_seconds=seconds,
        noise=noise,
        scale=float(std.x_scale),
        lengthscale=ls,
        axes=axes,
        steps=int(sum(h.get("steps", 0) for h in history)),
        epochs=len(history),
    )


def predict(sf: ScalableFit, X: np.ndarray | Tensor, *, chunk_size: int = PREDICT_CHUNK) -> tuple[Tensor, Tensor]:
    """Latent mean and variance at ``n x 3`` data-unit points, float64 on the CPU."""
    mean, var = sf.result.predict(torch.as_tensor(np.asarray(X), dtype=torch.float64), chunk_size=chunk_size)
    return mean.detach().double().cpu(), var.detach().double().cpu().clamp_min(0.0)


def score(sf: ScalableFit, X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Held-out RMSE, NLPD, R^2 and 90% coverage of noisy observations (predictive = latent variance + noise)."""
    mean, var = predict(sf, X)
    y = torch.as_tensor(np.asarray(Y, dtype=np.float64)).reshape(-1)
    var = (var + sf.noise).clamp_min(1e-12)
    err = y - mean
    return {
        "rmse": float(err.pow(2).mean().sqrt()),
        "nlpd": float((0.5 * (err.pow(2) / var + var.log() + math.log(2 * math.pi))).mean()),
        "r2": float(1 - err.pow(2).sum() / (y - y.mean()).pow(2).sum()),
        "coverage90": float((err.abs() <= Z90 * var.sqrt()).double().mean()),
    }
