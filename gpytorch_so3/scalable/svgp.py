r"""Stochastic variational GP (SVGP) with the SO(3) kernel: minibatch training, streaming data, torchrun.

:func:`fit_svgp` fits ``ApproximateGP`` + ``VariationalStrategy`` (whitened, learned inducing locations) with
``ScaleKernel(SO3AnisotropicKernel(nu))`` and a ``GaussianLikelihood``, both with the package's default priors:

1. Streaming statistics: bounding box of the inputs (one common scale factor for all axes, so angles are kept)
   and mean/std of the targets, in chunks (each rank its own contiguous shard, then all-reduced).
2. Hyper-parameters from :func:`gpytorch_so3.fit_map` on an exact GP of a random subset (``init_size`` points).
3. Inducing points: k-means in the *whitened* coordinates ``z = (x - c) A`` of that fit (``A`` the kernel's
   whitening matrix), mapped back; so the inducing points are spread evenly in the metric the kernel sees.
4. ``q(u)`` in closed form (the collapsed-bound optimum for a Gaussian likelihood, one streamed pass), then
   minibatch training (natural gradients for ``q(u)``, Adam for the hyper-parameters and inducing points), then
   ``q(u)`` in closed form again for the final hyper-parameters and inducing points.

Data parallel: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE > 1``) every rank builds the same model
(initialisation on rank 0, broadcast), draws the same global minibatch indices, reads and processes its own
share of each minibatch, and the gradients are summed across ranks (one flat ``all_reduce``) before every step:
each step is the one-process step on the same global minibatch, up to floating-point summation order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import torch
from gpytorch.variational import (
    CholeskyVariationalDistribution,
    NaturalVariationalDistribution,
    VariationalStrategy,
)
from torch import Tensor

from gpytorch_so3._validation import check_int
from gpytorch_so3.functional import check_nu
from gpytorch_so3.scalable import _common as C
from gpytorch_so3.scalable._data import (
    DataSource,
    Standardization,
    as_arrays,
    standardization_from_statistics,
    working_dtype,
)

__all__ = ["SO3SVGPModel", "SVGPResult", "fit_svgp", "optimal_variational_update"]

#: Optimisation steps aimed at when neither ``epochs`` nor ``max_seconds`` is given (rounded up to whole epochs).
DEFAULT_TARGET_STEPS = 300
#: Rows per chunk in the closed-form ``q(u)`` pass (an ``M x chunk`` cross-covariance in memory).
CLOSED_FORM_CHUNK = 8192
VARIATIONAL = ("cholesky", "natural")


class SO3SVGPModel(gpytorch.models.ApproximateGP):
    """SVGP: whitened ``VariationalStrategy`` over ``M`` inducing points, constant mean, a given kernel.

    Args:
        inducing_points: ``M x 3`` initial inducing locations (scaled coordinates).
        covar_module: the kernel, e.g. ``so3_covar_module(2.5)``.
        variational: ``"cholesky"`` (``CholeskyVariationalDistribution``) or ``"natural"``
            (``NaturalVariationalDistribution``, to be trained with ``gpytorch.optim.NGD``).
        learn_inducing_locations: optimise the inducing locations.

    Example:
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> m = SO3SVGPModel(torch.rand(8, 3), so3_covar_module(2.5))
        >>> m(torch.rand(5, 3)).mean.shape
        torch.Size([5])
    """

    def __init__(
        self,
        inducing_points: Tensor,
        covar_module: gpytorch.kernels.Kernel,
        *,
        variational: str = "cholesky",
        learn_inducing_locations: bool = True,
    ) -> None:
        """Build the model (see the class docstring)."""
        if variational not in VARIATIONAL:
            raise ValueError(f"variational must be one of {VARIATIONAL}, got {variational!r}")
        M = inducing_points.shape[-2]
        dist_cls = NaturalVariationalDistribution if variational == "natural" else CholeskyVariationalDistribution
        q = dist_cls(M).to(inducing_points)
        strategy = VariationalStrategy(self, inducing_points, q, learn_inducing_locations=learn_inducing_locations)
        super().__init__(strategy)
        self.variational = variational
        self.mean_module = gpytorch.means.ConstantMean().to(inducing_points)
        self.covar_module = covar_module.to(inducing_points)

    def forward(self, x: Tensor) -> gpytorch.distributions.MultivariateNormal:
        """Prior at ``x`` (``n x 3``)."""
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _variational_params(model: SO3SVGPModel) -> list[torch.nn.Parameter]:
    return list(model.variational_strategy._variational_distribution.parameters())


@torch.no_grad()
def optimal_variational_update(
    model: SO3SVGPModel,
    likelihood: gpytorch.likelihoods.GaussianLikelihood,
    batches,
    *,
    reduce=None,
) -> None:
    r"""Set ``q(u)`` to its optimum for the current hyper-parameters and inducing points (one pass over the data).

    For a Gaussian likelihood the ELBO's optimal ``q(v)`` over the whitened inducing values ``v = L^{-1} u``
    (``L L^T = K_zz``) is Gaussian with precision ``P = I + \Phi \Phi^T / \sigma^2`` and mean
    ``P^{-1} \Phi (y - \mu) / \sigma^2``, ``\Phi = L^{-1} K_{zx}`` (Titsias 2009). ``\Phi \Phi^T`` and
    ``\Phi (y - \mu)`` are sums over data points, accumulated chunk by chunk in float64 (``O(M^2)`` memory).

    Args:
        model: the SVGP.
        likelihood: its ``GaussianLikelihood``.
        batches: iterable of ``(x, y)`` chunks in the model's (scaled, standardised) coordinates.
        reduce: optional callable summing a float64 tensor across processes in place.

    Example:
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> X, y = torch.rand(30, 3, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
        >>> m = SO3SVGPModel(X[:10].clone(), so3_covar_module(2.5)).double()
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> optimal_variational_update(m, lik, [(X, y)])
        >>> m.variational_strategy.variational_params_initialized.item()
        1
    """
    vs = model.variational_strategy
    Z = vs.inducing_points.detach()
    M = Z.shape[-2]
    Kzz = model.covar_module(Z).add_jitter(vs.jitter_val).to_dense().double()
    L = torch.linalg.cholesky(Kzz)
    G = torch.zeros(M, M, dtype=torch.float64, device=Z.device)
    b = torch.zeros(M, dtype=torch.float64, device=Z.device)
    mu = model.mean_module.constant.detach().double()
    for x, y in batches:
        if len(x) == 0:
            continue
        Phi = torch.linalg.solve_triangular(L, model.covar_module(Z, x).to_dense().double(), upper=False)
        G += Phi @ Phi.mT
        b += Phi @ (y.double() - mu)
    if reduce is not None:
        reduce(G)
        reduce(b)
    s2 = float(likelihood.noise.detach().reshape(-1)[0])
    P = torch.eye(M, dtype=torch.float64, device=Z.device) + G / s2
    P = 0.5 * (P + P.mT)
    Lp = torch.linalg.cholesky(P)
    mean = torch.cholesky_solve((b / s2).unsqueeze(-1), Lp).squeeze(-1)
    q = vs._variational_distribution
    if isinstance(q, NaturalVariationalDistribution):
        q.natural_vec.copy_((b / s2).to(q.natural_vec))
        q.natural_mat.copy_((-0.5 * P).to(q.natural_mat))
    else:
        S = torch.cholesky_inverse(Lp)
        q.variational_mean.copy_(mean.to(q.variational_mean))
        q.chol_variational_covar.copy_(torch.linalg.cholesky(0.5 * (S + S.mT)).to(q.chol_variational_covar))
    vs.variational_params_initialized.fill_(1)


def _as_input_tensor(X: object, name: str = "X") -> Tensor:
    if isinstance(X, np.ndarray):
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
        X = torch.from_numpy(np.asarray(X, dtype=np.float64))
    if not torch.is_tensor(X):
        raise TypeError(f"{name} must be a torch.Tensor or a NumPy array, got {type(X).__name__}")
    if not X.is_floating_point():
        X = X.double()
    if X.dim() != 2 or X.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or inf in {int((~torch.isfinite(X)).any(-1).sum())} row(s)")
    return X


def check_chunk_size(chunk_size: object) -> int:
    """Validate a prediction chunk size (positive int)."""
    return check_int("chunk_size", chunk_size, 1)


@dataclass
class SVGPResult:
    """A fitted SVGP: the gpytorch model and likelihood, the data maps and the training history.

    Attributes:
        model: the :class:`SO3SVGPModel` (eval mode), working in scaled coordinates and standardised targets.
        likelihood: its ``GaussianLikelihood`` (noise in standardised units).
        standardization: the data maps (:class:`~gpytorch_so3.scalable._data.Standardization`).
        history: one dict per epoch (``epoch``, ``loss``, ``seconds``, ``steps``).
        num_data: number of training points.
        rank: this process's rank (0 without torchrun).
        world_size: number of processes.
        init_seconds: time of the initialisation (statistics, subset MAP fit, k-means, first ``q(u)``).
        train_seconds: time of the minibatch training.
    """

    model: SO3SVGPModel
    likelihood: gpytorch.likelihoods.GaussianLikelihood
    standardization: Standardization
    history: list[dict] = field(default_factory=list)
    num_data: int = 0
    rank: int = 0
    world_size: int = 1
    init_seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def noise(self) -> float:
        """Noise variance in the targets' units."""
        return float(self.likelihood.noise.detach().reshape(-1)[0]) * self.standardization.y_std**2

    def predict(self, X: Tensor | np.ndarray, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
        """Mean and variance of the latent field at ``X`` (``n x 3``, data units), in the targets' units.

        Chunked (``O(chunk_size * M)`` memory), under ``torch.no_grad`` and ``gpytorch.settings.fast_pred_var``.

        Args:
            X: ``n x 3`` tensor or array of inputs.
            chunk_size: rows per chunk.

        Returns:
            ``(mean, variance)``, each of shape ``(n,)``, working dtype, on the model's device.
        """
        X = _as_input_tensor(X)
        chunk_size = check_chunk_size(chunk_size)
        p = next(self.model.parameters())
        s = self.standardization
        self.model.eval()
        means, variances = [], []
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            for a in range(0, X.shape[0], chunk_size):
                x = s.x(X[a : a + chunk_size].to(device=p.device, dtype=torch.float64)).to(p.dtype)
                f = self.model(x)
                means.append(s.y_back(f.mean))
                variances.append(f.variance.clamp_min(0.0) * s.y_std**2)
        if not means:
            return p.new_empty(0), p.new_empty(0)
        return torch.cat(means), torch.cat(variances)


def _validate_common(nu, num_inducing, batch_size, epochs, max_seconds, seed, init_size, init_restarts, kernel):
    """``(num_inducing, batch_size, seed, init_size, init_restarts, epochs, max_seconds)``, the ints as Python ints."""
    check_nu(nu)
    ints = (
        check_int("num_inducing", num_inducing, 1),
        check_int("batch_size", batch_size, 1),
        check_int("seed", seed, 0),
        check_int("init_size", init_size, 2),
        check_int("init_restarts", init_restarts, 1),
    )
    if kernel not in C.KERNELS:
        raise ValueError(f"kernel must be one of {C.KERNELS}, got {kernel!r}")
    return (*ints, *C.check_budget(epochs, max_seconds))


def fit_svgp(
    train_X: Tensor | np.ndarray | str,
    train_Y: Tensor | np.ndarray | str,
    *,
    nu: float | None = 2.5,
    num_inducing: int = 1024,
    batch_size: int = 4096,
    epochs: int | None = None,
    max_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
    kernel: str = "so3",
    variational: str = "natural",
    learn_inducing_locations: bool = True,
    closed_form: bool = True,
    lr: float = 0.01,
    ngd_lr: float = 0.1,
    init_size: int = 1000,
    init_restarts: int = 2,
    coords: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SVGPResult:
    r"""Fit an SVGP with ``ScaleKernel(SO3AnisotropicKernel(nu))`` by minibatch training (see the module docstring).

    Args:
        train_X: ``N x 3`` inputs: a tensor, a NumPy array or memmap (``np.load(path, mmap_mode="r")``; rows are
            gathered per minibatch, never all copied), or the path of a CSV file (then ``train_Y`` is the target
            column's name and ``coords`` the three coordinate columns, default ``("x", "y", "z")``; the CSV is
            parsed once, in chunks, into a ``float32`` array).
        train_Y: ``N`` or ``N x 1`` targets (or a column name, with a CSV path).
        nu: base kernel smoothness (``None``: squared exponential; 0.5, 1.5, 2.5).
        num_inducing: number of inducing points ``M`` (capped at ``N``; with ``M >= N`` they are the data).
        batch_size: global minibatch size (split across ranks under torchrun).
        epochs: passes over the data (``0``: no minibatch training, only the subset MAP fit and the closed-form
            ``q(u)``). Default: enough whole epochs for about :data:`DEFAULT_TARGET_STEPS` steps.
        max_seconds: stop training after this many seconds (checked after each step; all ranks stop together).
            With both budgets, whichever comes first.
        seed: seeds the subset, the k-means starts, the minibatch order and gpytorch's initialisations.
        progress: show a progress bar on stderr (only if it is a TTY, and on rank 0).
        kernel: ``"so3"`` (default) or ``"ard"`` (gpytorch's Matern/RBF ARD kernel, the baseline).
        variational: ``"natural"`` (default: ``NaturalVariationalDistribution`` trained by ``gpytorch.optim.NGD``,
            the rest by Adam) or ``"cholesky"`` (``CholeskyVariationalDistribution``, Adam on everything). Measured
            in ``benchmarks/bench_scalable.py`` (rotated 10:1 field, same steps and time per epoch): held-out RMSE
            0.104 vs 0.110 at ``N = 10^4`` and 0.095 vs 0.102 at ``N = 10^5``.
        learn_inducing_locations: optimise the inducing locations.
        closed_form: set ``q(u)`` to its closed-form optimum before and after the minibatch training.
        lr: Adam learning rate (hyper-parameters, inducing points, Cholesky ``q(u)``).
        ngd_lr: NGD learning rate (``variational="natural"``).
        init_size: subset size of the exact MAP fit that initialises the hyper-parameters.
        init_restarts: ``num_restarts`` of that :func:`~gpytorch_so3.fit_map` fit.
        coords: coordinate column names (CSV input only).
        dtype: working dtype (default: the inputs' float dtype; float32 for CSV and integer/float32 arrays).
        device: working device (default: the input tensor's; under torchrun with CUDA ``cuda:LOCAL_RANK``).

    Returns:
        an :class:`SVGPResult`; ``.predict(X)`` gives the latent mean and variance in the data's units. Under
        torchrun every rank returns the same model (``result.rank`` tells which process you are; let rank 0
        write files). If ``fit_svgp`` initialised the default process group (from torchrun's environment) it
        leaves it initialised for the caller's own synchronisation; call
        ``torch.distributed.destroy_process_group()`` at the end of the script.

    Raises:
        TypeError: non-numeric inputs or option of the wrong type.
        ValueError: wrong shapes, mismatched lengths, NaN/inf, bad budgets or options.

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=200, n_test=50, seed=0)
        >>> res = fit_svgp(f.train_X, f.train_Y, num_inducing=64, batch_size=100, epochs=2, init_size=100,
        ...                init_restarts=1, progress=False)
        >>> mean, var = res.predict(f.test_X, chunk_size=16)
        >>> mean.shape, bool((var > 0).all())
        (torch.Size([50]), True)
    """
    num_inducing, batch_size, seed, init_size, init_restarts, epochs, max_seconds = _validate_common(
        nu, num_inducing, batch_size, epochs, max_seconds, seed, init_size, init_restarts, kernel
    )
    if variational not in VARIATIONAL:
        raise ValueError(f"variational must be one of {VARIATIONAL}, got {variational!r}")
    for name, v in (("lr", lr), ("ngd_lr", ngd_lr)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    X, Y = as_arrays(train_X, train_Y, coords)
    dev = C.default_device(X, device)
    dt = working_dtype(X, dtype)
    src = DataSource(X, Y, dt, dev)
    info = C.setup_distributed(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _fit(
            src, info, nu=nu, num_inducing=num_inducing, batch_size=batch_size, epochs=epochs,
            max_seconds=max_seconds, seed=seed, progress=progress, kernel=kernel, variational=variational,
            learn_inducing_locations=learn_inducing_locations, closed_form=closed_form, lr=lr, ngd_lr=ngd_lr,
            init_size=init_size, init_restarts=init_restarts,
        )  # fmt: skip


def _statistics(src: DataSource, info: C.DistInfo) -> Standardization:
    start, stop = src.shard(info.rank, info.world_size)
    st = src.local_statistics(start, stop).to(src.device)
    lo, hi, rest = st[:3].clone(), st[3:6].clone(), st[6:].clone()
    C.allreduce(info, lo, "min")
    C.allreduce(info, hi, "max")
    C.allreduce(info, rest, "sum")
    return standardization_from_statistics(torch.cat([lo, hi, rest]).cpu())


def _initial_model(src, std, *, M, kind, nu, seed, init_size, init_restarts, variational, learn_inducing_locations):
    """Subset MAP fit + whitened k-means (float64), converted to the working dtype."""
    g = torch.Generator().manual_seed(seed)
    n = src.n
    sub = np.sort(torch.randperm(n, generator=g)[: min(n, init_size)].numpy())
    x, y = src.rows(sub)
    x, y = std.x(x.double()), std.y(y.double())
    kern, lik, const = C.fit_exact_init(x, y, kind=kind, nu=nu, num_restarts=init_restarts, seed=seed)
    if M >= n:
        Z = std.x(src.slice(0, n)[0].double())
    else:
        ksub = np.sort(torch.randperm(n, generator=g)[: min(n, max(10 * M, init_size))].numpy())
        xk = std.x(src.rows(ksub)[0].double())
        A = C.whitening_matrix(kern).double()
        c = xk.mean(0)
        z = (xk - c) @ A
        Z = C.kmeans(z, M, generator=g) @ torch.linalg.inv(A) + c
    model = SO3SVGPModel(Z, kern, variational=variational, learn_inducing_locations=learn_inducing_locations)
    model.mean_module.initialize(constant=const)
    return model, lik


def _fit(src: DataSource, info: C.DistInfo, **o) -> SVGPResult:
    t0 = time.perf_counter()
    std = _statistics(src, info)
    n, dt, dev = src.n, src.dtype, src.device
    M = min(o["num_inducing"], n)
    kw = {
        "M": M, "kind": o["kernel"], "nu": o["nu"], "seed": o["seed"], "init_size": o["init_size"],
        "init_restarts": o["init_restarts"], "variational": o["variational"],
        "learn_inducing_locations": o["learn_inducing_locations"],
    }  # fmt: skip
    if info.rank == 0:
        model, lik = _initial_model(src, std, **kw)
    else:  # same structure, values broadcast from rank 0
        model = SO3SVGPModel(
            torch.zeros(M, 3, dtype=torch.float64),
            C.build_kernel(o["kernel"], o["nu"]).double(),
            variational=o["variational"],
            learn_inducing_locations=o["learn_inducing_locations"],
        )
        lik = C.build_likelihood().double()
    model, lik = model.to(device=dev, dtype=dt), lik.to(device=dev, dtype=dt)
    C.broadcast_module(info, model, lik)
    start, stop = src.shard(info.rank, info.world_size)

    def shard_batches():
        for x, y in src.chunks(start, stop, CLOSED_FORM_CHUNK):
            yield std.x(x), std.y(y)

    def reduce(t):
        return C.allreduce(info, t, "sum")

    if o["closed_form"]:
        optimal_variational_update(model, lik, shard_batches(), reduce=reduce)
    init_seconds = time.perf_counter() - t0
    B = min(o["batch_size"], n)
    per_epoch = math.ceil(n / B)
    o = dict(o)
    epochs, max_seconds = o.pop("epochs"), o.pop("max_seconds")
    if epochs is None:
        epochs = math.ceil(DEFAULT_TARGET_STEPS / per_epoch) if max_seconds is None else 10**9
    history = _train(model, lik, src, std, info, epochs=epochs, B=B, max_seconds=max_seconds, **o)
    t1 = time.perf_counter()
    if o["closed_form"] and history:
        optimal_variational_update(model, lik, shard_batches(), reduce=reduce)
    train_seconds = time.perf_counter() - t1 + sum(h["seconds"] for h in history)
    model.eval()
    lik.eval()
    return SVGPResult(
        model=model, likelihood=lik, standardization=std, history=history, num_data=n, rank=info.rank,
        world_size=info.world_size, init_seconds=init_seconds, train_seconds=train_seconds,
    )  # fmt: skip


def _train(model, lik, src, std, info, *, epochs, B, max_seconds, **o) -> list[dict]:
    if epochs == 0:
        return []
    n, W, r = src.n, info.world_size, info.rank
    model.train()
    lik.train()
    var_params = _variational_params(model)
    var_ids = {id(p) for p in var_params}
    other = [p for p in list(model.parameters()) + list(lik.parameters()) if id(p) not in var_ids]
    all_params = other + var_params
    optimizers = []
    if o["variational"] == "natural":
        optimizers.append(gpytorch.optim.NGD(var_params, num_data=n, lr=o["ngd_lr"]))
        optimizers.append(torch.optim.Adam(other, lr=o["lr"]))
    else:
        optimizers.append(torch.optim.Adam(all_params, lr=o["lr"]))
    vs = model.variational_strategy
    history: list[dict] = []
    per_epoch = math.ceil(n / B)
    total = None if epochs >= 10**9 else epochs * per_epoch
    bar = C.Progress(total, "SVGP", o["progress"] and r == 0)
    t_start = time.perf_counter()
    stop = False
    try:
        for epoch in range(epochs):
            te = time.perf_counter()
            g = torch.Generator().manual_seed(o["seed"] * 1_000_003 + epoch + 1)
            perm = torch.randperm(n, generator=g).numpy()
            loss_sum = torch.zeros((), dtype=torch.float64)
            steps = 0
            for b in range(per_epoch):
                idx = perm[b * B : (b + 1) * B]
                Bg = len(idx)
                local = np.sort(np.array_split(idx, W)[r])
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                x, y = src.rows(local)
                x, y = std.x(x), std.y(y)
                if len(local):
                    ell = lik.expected_log_prob(y, model(x)).sum()
                else:
                    ell = torch.zeros((), dtype=x.dtype, device=x.device)
                kl = vs.kl_divergence()
                loss = -ell / Bg + (kl - C.log_prior(model, lik).to(kl)) / (n * W)
                loss.backward()
                C.allreduce_grads(info, all_params)
                for opt in optimizers:
                    opt.step()
                lval = loss.detach().double().cpu().reshape(1)
                C.allreduce(info, lval, "sum")
                loss_sum += lval[0]
                steps += 1
                bar.update(1, loss=float(lval[0]), epoch=epoch)
                if max_seconds is not None:
                    flag = torch.tensor([float(time.perf_counter() - t_start > max_seconds)], dtype=torch.float64)
                    if C.allreduce(info, flag, "max")[0] > 0:
                        stop = True
                        break
            history.append(
                {
                    "epoch": epoch,
                    "loss": float(loss_sum) / max(steps, 1),
                    "seconds": time.perf_counter() - te,
                    "steps": steps,
                }
            )
            if stop:
                break
    finally:
        bar.close()
    return history
