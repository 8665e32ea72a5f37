"""Shared pieces of the scalable fits: budgets, progress, torch.distributed set-up, MAP initialisation, k-means."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import gpytorch
import torch
import torch.distributed as dist
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3._validation import check_int
from gpytorch_so3.fit import fit_map
from gpytorch_so3.kernels import SO3AnisotropicKernel
from gpytorch_so3.priors import (
    default_lengthscale_prior,
    default_noise_prior,
    default_outputscale_prior,
    so3_covar_module,
)

__all__ = ["DistInfo", "Progress", "build_kernel", "kmeans", "whitening_matrix"]

KERNELS = ("so3", "ard")


def check_budget(epochs: object, max_seconds: object) -> tuple[int | None, float | None]:
    """Validate the training budget (``epochs`` >= 0 int, ``max_seconds`` > 0 finite)."""
    epochs = check_int("epochs", epochs, 0, allow_none=True)
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float):
            raise TypeError(f"max_seconds must be a number, got {type(max_seconds).__name__}")
        if not (math.isfinite(max_seconds) and max_seconds > 0):
            raise ValueError(f"max_seconds must be positive and finite, got {max_seconds}")
        max_seconds = float(max_seconds)
    return epochs, max_seconds


def build_kernel(kind: str, nu: float | None) -> ScaleKernel:
    """``ScaleKernel(SO3AnisotropicKernel(nu))`` with the package's default priors, or the ARD counterpart."""
    F.check_nu(nu)
    if kind == "so3":
        return so3_covar_module(nu)
    if kind == "ard":
        kw = {"ard_num_dims": 3, "lengthscale_prior": default_lengthscale_prior()}
        base = RBFKernel(**kw) if nu is None else MaternKernel(nu=nu, **kw)
        base.initialize(lengthscale=0.3)
        k = ScaleKernel(base, outputscale_prior=default_outputscale_prior())
        k.initialize(outputscale=1.0)
        return k
    raise ValueError(f"kernel must be one of {KERNELS}, got {kind!r}")


def build_likelihood() -> gpytorch.likelihoods.GaussianLikelihood:
    """``GaussianLikelihood`` with the package's default noise prior (noise >= 1e-4, BoTorch's floor)."""
    lik = gpytorch.likelihoods.GaussianLikelihood(
        noise_prior=default_noise_prior(), noise_constraint=gpytorch.constraints.GreaterThan(1e-4)
    )
    lik.initialize(noise=0.1)
    return lik


def whitening_matrix(covar_module: ScaleKernel) -> Tensor:
    """``3 x 3`` whitening matrix ``A`` of the base kernel (``z = x A``; ARD: ``diag(1 / l)``), detached."""
    base = covar_module.base_kernel
    with torch.no_grad():
        if isinstance(base, SO3AnisotropicKernel):
            return base.whitening_matrix.detach().clone()
        return torch.diag_embed(1.0 / base.lengthscale.detach().reshape(-1)).clone()


def log_prior(*modules: torch.nn.Module) -> Tensor:
    """Sum of the log densities of every registered prior (what gpytorch's MLLs add)."""
    total = 0.0
    for m in modules:
        for _, module, prior, closure, _ in m.named_priors():
            total = total + prior.log_prob(closure(module)).sum()
    return torch.as_tensor(total)


class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, X: Tensor, Y: Tensor, kernel: ScaleKernel, likelihood) -> None:
        super().__init__(X, Y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = kernel

    def forward(self, x: Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def fit_exact_init(
    X: Tensor, Y: Tensor, *, kind: str, nu: float | None, num_restarts: int, seed: int
) -> tuple[ScaleKernel, gpytorch.likelihoods.GaussianLikelihood, float]:
    """MAP hyper-parameters of an exact GP on a subset (scaled ``X``, standardised ``Y``).

    SO(3): :func:`gpytorch_so3.fit_map` with ``num_restarts`` Haar restarts (+ its data-aligned start).
    ARD: BoTorch's ``fit_gpytorch_mll`` (L-BFGS-B). Returns the kernel, the likelihood and the constant mean.
    """
    kernel, lik = build_kernel(kind, nu).to(X), build_likelihood().to(X)
    if kind == "so3":
        model = _ExactGP(X, Y, kernel, lik)
        fit_map(model, num_restarts=num_restarts, seed=seed)
    else:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP

        model = SingleTaskGP(X, Y.unsqueeze(-1), covar_module=kernel, likelihood=lik, outcome_transform=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(gpytorch.mlls.ExactMarginalLogLikelihood(lik, model))
    model.eval()
    return model.covar_module, model.likelihood, float(model.mean_module.constant.detach())


def kmeans(z: Tensor, k: int, *, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """Lloyd's k-means on ``n x d`` points from ``k`` distinct random starts; empty clusters keep their centre.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.cat([torch.randn(50, 2) * 0.1, torch.randn(50, 2) * 0.1 + 5.0])
        >>> c = kmeans(z, 2, generator=g)
        >>> sorted(round(float(v)) for v in c[:, 0])
        [0, 5]
    """
    n = z.shape[0]
    if k >= n:
        return z.clone()
    idx = torch.randperm(n, generator=generator)[:k].to(z.device)
    c = z[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(z, c).argmin(-1)
        sums = torch.zeros_like(c).index_add_(0, assign, z)
        counts = torch.zeros(k, dtype=z.dtype, device=z.device).index_add_(0, assign, torch.ones_like(z[:, 0]))
        nonempty = counts > 0
        c[nonempty] = sums[nonempty] / counts[nonempty, None]
    return c


@dataclass
class DistInfo:
    """Process-group facts of a run: ``rank``, ``world_size`` and whether this call created the group."""

    rank: int = 0
    world_size: int = 1
    created: bool = False

    @property
    def active(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE``/``RANK``/``MASTER_*`` env), or a running one.

    Backend: NCCL for CUDA devices, gloo otherwise. Without ``WORLD_SIZE > 1`` and no initialised group this is
    a one-process run.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this torch build")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), True)


def default_device(X: object, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else the input tensor's, else ``cuda:LOCAL_RANK`` under torchrun with CUDA, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.is_tensor(X):
        return X.device
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cpu")


def broadcast_module(info: DistInfo, *modules: torch.nn.Module) -> None:
    """Copy every parameter and buffer of ``modules`` from rank 0 to all ranks (in place)."""
    if not info.active:
        return
    for m in modules:
        for t in m.state_dict(keep_vars=True).values():
            if torch.is_tensor(t):
                dist.broadcast(t.data, src=0)


def allreduce_grads(info: DistInfo, params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over ranks, in one flat buffer (missing gradients count as zero)."""
    if not info.active:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def allreduce(info: DistInfo, t: Tensor, op: str = "sum") -> Tensor:
    """All-reduce a tensor in place (``sum``, ``min``, ``max``); identity in one process."""
    if info.active:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return t


class Progress:
    """A progress bar on stderr: tqdm if installed, else one rewritten line; silent unless enabled and a TTY."""

    def __init__(self, total: int | None, desc: str, enabled: bool) -> None:
        self.enabled = bool(enabled) and sys.stderr.isatty()
        self._bar = None
        self._last = 0.0
        self.n, self.total, self.desc = 0, total, desc
        if self.enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
            except ImportError:
                self._bar = None

    def update(self, n: int = 1, **postfix: float) -> None:
        """Advance by ``n`` steps and show ``postfix`` values."""
        if not self.enabled:
            return
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            return
        now = time.perf_counter()
        if now - self._last > 0.5:
            self._last = now
            extra = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
            total = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\r{self.desc}: {self.n}{total} {extra}   ")
            sys.stderr.flush()

    def close(self) -> None:
        """Finish the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()
