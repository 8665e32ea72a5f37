r"""Anisotropy-aware nearest-neighbour GP: a Vecchia likelihood on neighbour sets found in *whitened* coordinates.

The Vecchia approximation (Vecchia 1988; Katzfuss & Guinness 2021; R's GpGp) orders the data and replaces the
joint density of the noisy responses by a product of exact conditional Gaussians,

.. math::
    p(y) \approx \prod_i p\big(y_i \mid y_{N(i)}\big),

where :math:`N(i)` are the ``m`` nearest *earlier* points of point ``i``. "Nearest" is what matters: in a field
whose correlation length is 10 times longer along one rotated direction than across it, Euclidean neighbours
of the raw coordinates are mostly in the short (weakly correlated) directions. Here the neighbours are found in
the whitened coordinates ``z = x A`` of the current metric (``A A^T = M``, :attr:`whitening_matrix` of the
kernel), where the kernel is isotropic, so the ``m`` neighbours are the ``m`` most correlated earlier points.
They are recomputed whenever ``A`` has moved by more than ``refresh_tol`` (relative Frobenius norm) since the
last computation. Prediction conditions on the nearest training points in the same whitened space.

Each term costs an ``(m + 1) x (m + 1)`` Cholesky factorisation; the terms are independent, so training uses
minibatches of terms (an unbiased estimate of the Vecchia log-likelihood) with Adam.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import gpytorch
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from gpytorch_so3._validation import check_int
from gpytorch_so3.functional import check_nu
from gpytorch_so3.scalable import _common as C
from gpytorch_so3.scalable._data import DataSource, Standardization, as_arrays, working_dtype
from gpytorch_so3.scalable.svgp import _as_input_tensor, _statistics, check_chunk_size

__all__ = ["NearestNeighbourGP", "fit_nngp", "ordered_neighbours"]

NEIGHBOURS = ("whitened", "euclidean")
#: Optimisation steps aimed at when neither ``epochs`` nor ``max_seconds`` is given (rounded up to whole epochs).
DEFAULT_TARGET_STEPS = 300
_LOG_2PI = math.log(2.0 * math.pi)


def ordered_neighbours(z: np.ndarray | Tensor, m: int, *, block: int = 2048) -> np.ndarray:
    """Exact ordered nearest neighbours: for each row ``i``, the ``m`` nearest rows among ``0 .. i-1``.

    Rows are processed in blocks of ``block``. The rows before a block are covered by at most
    ``log2(N / block)`` aligned power-of-two segments of blocks, each with its own ``cKDTree`` (a Fenwick-tree
    decomposition: ``O(N log(N / block))`` tree points in total); rows inside the block are compared by brute
    force. The candidates are merged, so the result equals a brute-force search (up to distance ties).

    Args:
        z: ``N x d`` points in their order (e.g. whitened coordinates).
        m: number of neighbours.
        block: rows per block.

    Returns:
        ``N x m`` int64 indices, nearest first; ``-1`` pads rows with fewer than ``m`` earlier points.

    Example:
        >>> z = np.array([[0.0], [10.0], [1.0], [9.0], [2.0]])
        >>> ordered_neighbours(z, 2)
        array([[-1, -1],
               [ 0, -1],
               [ 0,  1],
               [ 1,  2],
               [ 2,  0]])
    """
    z = z.detach().cpu().double().numpy() if torch.is_tensor(z) else np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must have shape (N, d), got {z.shape}")
    m = check_int("m", m, 1)
    block = check_int("block", block, 1)
    n = z.shape[0]
    out = np.full((n, m), -1, dtype=np.int64)
    trees: dict[tuple[int, int], cKDTree] = {}
    nblocks = math.ceil(n / block)
    for c in range(nblocks):
        a, b = c * block, min((c + 1) * block, n)
        zc = z[a:b]
        dists, idxs = [], []
        # earlier blocks: aligned segments [s, s + 2^k) (in blocks) from the binary expansion of c
        s = 0
        for k in reversed(range(max(c.bit_length(), 1))):
            if c & (1 << k):
                key = (s, k)
                if key not in trees:
                    trees[key] = cKDTree(z[s * block : (s + (1 << k)) * block])
                tree = trees[key]
                kk = min(m, tree.n)
                d, i = tree.query(zc, k=kk)
                d, i = d.reshape(len(zc), kk), i.reshape(len(zc), kk)
                dists.append(d)
                idxs.append(i + s * block)
                s += 1 << k
        # evict segments no later block uses: (s, k) serves blocks [s + 2^k, s + 2^(k+1))
        for key in [key for key in trees if c + 1 >= key[0] + (2 << key[1])]:
            del trees[key]
        # inside the block: brute force over earlier rows of the block
        diff = zc[:, None, :] - zc[None, :, :]
        d = np.sqrt((diff * diff).sum(-1))
        d[np.triu_indices(len(zc))] = np.inf
        kk = min(m, len(zc))
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < len(zc) else np.tile(np.arange(len(zc)), (len(zc), 1))
        dists.append(np.take_along_axis(d, part, 1))
        idxs.append(part + a)
        D, I = np.concatenate(dists, 1), np.concatenate(idxs, 1)
        order = np.argsort(D, axis=1, kind="stable")[:, :m]
        Ds, Is = np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
        Is[~np.isfinite(Ds)] = -1
        out[a:b, : Is.shape[1]] = Is
    return out


def _whiten_np(X: Tensor, A: Tensor) -> np.ndarray:
    with torch.no_grad():
        return (X.double() @ A.double().to(X.device)).cpu().numpy()


class NearestNeighbourGP(torch.nn.Module):
    """Vecchia GP with neighbour sets in the whitened coordinates of the kernel's current metric.

    Holds the (scaled, standardised) training data in memory, permuted into the Vecchia order.

    Args:
        X: ``N x 3`` scaled inputs (any order; they are permuted by ``order``).
        y: ``N`` standardised targets.
        covar_module: ``ScaleKernel`` around an SO(3) (or ARD) kernel.
        likelihood: ``GaussianLikelihood``.
        standardization: maps between data units and the model's coordinates.
        num_neighbours: ``m``, the conditioning-set size.
        neighbours: ``"whitened"`` (default) or ``"euclidean"`` (raw scaled coordinates, fixed: the classic
            choice, as gpytorch's VNNGP).
        refresh_tol: recompute whitened neighbour sets when ``|A - A_ref|_F / |A_ref|_F`` exceeds this.
        num_neighbours_predict: neighbours used for prediction (default ``2 m``).
        order: ``N`` permutation giving the Vecchia order (default: identity).

    Example:
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> from gpytorch_so3.scalable._data import Standardization
        >>> X, y = torch.rand(50, 3, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
        >>> s = Standardization(torch.zeros(3, dtype=torch.float64), 1.0, 0.0, 1.0)
        >>> gp = NearestNeighbourGP(X, y, so3_covar_module(2.5).double(),
        ...                         gpytorch.likelihoods.GaussianLikelihood().double(), s, num_neighbours=5)
        >>> gp.neighbours.shape, float(gp.vecchia_log_likelihood().detach()) < 0
        (torch.Size([50, 5]), True)
        >>> mean, var = gp.predict(torch.rand(4, 3, dtype=torch.float64))
        >>> mean.shape, var.shape
        (torch.Size([4]), torch.Size([4]))
    """

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        covar_module: gpytorch.kernels.Kernel,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        standardization: Standardization,
        *,
        num_neighbours: int = 16,
        neighbours: str = "whitened",
        refresh_tol: float = 0.05,
        num_neighbours_predict: int | None = None,
        order: Tensor | None = None,
    ) -> None:
        """Build the model and its first neighbour sets (see the class docstring)."""
        super().__init__()
        if neighbours not in NEIGHBOURS:
            raise ValueError(f"neighbours must be one of {NEIGHBOURS}, got {neighbours!r}")
        if not (isinstance(refresh_tol, int | float) and refresh_tol >= 0):
            raise ValueError(f"refresh_tol must be a non-negative number, got {refresh_tol!r}")
        self.m = check_int("num_neighbours", num_neighbours, 1)
        self.m_pred = check_int("num_neighbours_predict", num_neighbours_predict or 2 * self.m, 1)
        if order is not None:
            X, y = X[order], y[order]
        self.register_buffer("train_X", X)
        self.register_buffer("train_y", y)
        self.covar_module = covar_module.to(X)
        self.likelihood = likelihood.to(X)
        self.mean_module = gpytorch.means.ConstantMean().to(X)
        self.standardization = standardization
        self.neighbour_mode = neighbours
        self.refresh_tol = float(refresh_tol)
        self.num_refreshes = 0
        self._pred_tree: tuple[Tensor, cKDTree] | None = None
        self.refresh_neighbours()

    @property
    def num_data(self) -> int:
        """Number of training points."""
        return self.train_X.shape[0]

    def _metric_matrix(self) -> Tensor:
        if self.neighbour_mode == "euclidean":
            return torch.eye(3, dtype=torch.float64)
        return C.whitening_matrix(self.covar_module).double().cpu()

    def refresh_neighbours(self) -> None:
        """Recompute the ordered neighbour sets in the current whitened coordinates."""
        A = self._metric_matrix()
        nb = ordered_neighbours(_whiten_np(self.train_X, A), min(self.m, max(self.num_data - 1, 1)))
        self.neighbours = torch.from_numpy(nb).to(self.train_X.device)
        self._A_ref = A
        self.num_refreshes += 1

    def maybe_refresh(self) -> bool:
        """Refresh the neighbour sets if the metric moved by more than ``refresh_tol``; returns whether it did."""
        if self.neighbour_mode == "euclidean":
            return False
        A = self._metric_matrix()
        if float((A - self._A_ref).norm() / self._A_ref.norm()) > self.refresh_tol:
            self.refresh_neighbours()
            return True
        return False

    def _cholesky(self, K: Tensor) -> Tensor:
        eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
        jitter = 1e-6 if K.dtype == torch.float32 else 1e-10
        for _ in range(4):
            L, info = torch.linalg.cholesky_ex(K + jitter * eye)
            if not bool(info.any()):
                return L
            jitter *= 100.0
        raise ValueError("NearestNeighbourGP: a neighbour covariance matrix is not positive definite")

    def conditional_log_densities(self, positions: Tensor) -> Tensor:
        """``log p(y_i | y_N(i))`` for the given (ordered) positions, ``(len(positions),)``."""
        nb = self.neighbours[positions]
        valid = torch.cat([nb >= 0, torch.ones_like(nb[:, :1], dtype=torch.bool)], -1)
        idx = torch.cat([nb.clamp_min(0), positions[:, None]], -1)
        x = self.train_X[idx]
        y = torch.where(valid, self.train_y[idx] - self.mean_module.constant, torch.zeros((), dtype=x.dtype))
        K = self.covar_module(x).to_dense()
        K = K + self.likelihood.noise.reshape(()) * torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
        both = valid[:, :, None] & valid[:, None, :]
        K = torch.where(both, K, torch.eye(K.shape[-1], dtype=K.dtype, device=K.device).expand_as(K))
        L = self._cholesky(K)
        a = torch.linalg.solve_triangular(L, y.unsqueeze(-1), upper=False).squeeze(-1)
        return -0.5 * a[:, -1] ** 2 - torch.log(L[:, -1, -1]) - 0.5 * _LOG_2PI

    def vecchia_log_likelihood(self, batch_size: int = 4096) -> Tensor:
        """The full Vecchia log-likelihood of the standardised targets (sum over all terms)."""
        batch_size = check_int("batch_size", batch_size, 1, where="vecchia_log_likelihood: ")
        total = 0.0
        for a in range(0, self.num_data, batch_size):
            total = total + self.conditional_log_densities(torch.arange(a, min(a + batch_size, self.num_data))).sum()
        return total

    def predict(self, X: Tensor | np.ndarray, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
        """Latent mean and variance at ``X`` (``n x 3``, data units), in the targets' units.

        Each point conditions on its ``num_neighbours_predict`` nearest training points in whitened coordinates
        (exact Gaussian conditional on those noisy responses). Chunked, ``torch.no_grad``.

        Args:
            X: ``n x 3`` inputs.
            chunk_size: rows per chunk.

        Returns:
            ``(mean, variance)``, each ``(n,)``.
        """
        X = _as_input_tensor(X)
        chunk_size = check_chunk_size(chunk_size)
        s, dt, dev = self.standardization, self.train_X.dtype, self.train_X.device
        A = self._metric_matrix()
        if self._pred_tree is None or not torch.equal(self._pred_tree[0], A):
            self._pred_tree = (A, cKDTree(_whiten_np(self.train_X, A)))
        tree = self._pred_tree[1]
        k = min(self.m_pred, self.num_data)
        means, variances = [], []
        with torch.no_grad():
            mu = self.mean_module.constant.reshape(())
            noise = self.likelihood.noise.reshape(())
            outputscale = self.covar_module(self.train_X[:1], diag=True).reshape(())
            for a in range(0, X.shape[0], chunk_size):
                xs = s.x(X[a : a + chunk_size].to(device=dev, dtype=torch.float64)).to(dt)
                _, nb = tree.query(_whiten_np(xs, A), k=k)
                nb = torch.from_numpy(np.asarray(nb).reshape(len(xs), k)).to(dev)
                xN = self.train_X[nb]
                KNN = self.covar_module(xN).to_dense() + noise * torch.eye(k, dtype=dt, device=dev)
                kN = self.covar_module(xN, xs.unsqueeze(-2)).to_dense()
                L = self._cholesky(KNN)
                w = torch.linalg.solve_triangular(L, kN, upper=False).squeeze(-1)
                r = torch.linalg.solve_triangular(L, (self.train_y[nb] - mu).unsqueeze(-1), upper=False).squeeze(-1)
                means.append(s.y_back(mu + (w * r).sum(-1)))
                variances.append((outputscale - (w * w).sum(-1)).clamp_min(0.0) * s.y_std**2)
        if not means:
            return self.train_X.new_empty(0), self.train_X.new_empty(0)
        return torch.cat(means), torch.cat(variances)


def fit_nngp(
    train_X: Tensor | np.ndarray | str,
    train_Y: Tensor | np.ndarray | str,
    *,
    nu: float | None = 2.5,
    num_neighbours: int = 16,
    batch_size: int = 4096,
    epochs: int | None = None,
    max_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
    neighbours: str = "whitened",
    refresh_tol: float = 0.05,
    num_neighbours_predict: int | None = None,
    kernel: str = "so3",
    lr: float = 0.01,
    init_size: int = 1000,
    init_restarts: int = 2,
    coords: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> NearestNeighbourGP:
    """Fit a :class:`NearestNeighbourGP` (Vecchia, whitened neighbours) by minibatch Adam on its log-likelihood.

    Hyper-parameters start from :func:`gpytorch_so3.fit_map` on an exact GP of a random subset (as
    :func:`~gpytorch_so3.scalable.fit_svgp`); the Vecchia order is a seeded random permutation; neighbour sets
    are recomputed in whitened coordinates whenever the metric moves by more than ``refresh_tol``. Inputs are
    scaled by one common factor (angles kept) and targets standardised; predictions are in data units.
    One process (the data are held in memory: ``N x 4`` values in the working dtype).

    Args:
        train_X: ``N x 3`` tensor, NumPy array/memmap, or a CSV path (then ``train_Y`` names the target column).
        train_Y: ``N`` or ``N x 1`` targets, or a column name.
        nu: base kernel smoothness.
        num_neighbours: conditioning-set size ``m`` of the Vecchia terms.
        batch_size: Vecchia terms per step.
        epochs: passes over the terms (``0``: keep the subset MAP hyper-parameters). Default: about
            :data:`DEFAULT_TARGET_STEPS` steps in whole epochs.
        max_seconds: training time limit (checked after each step).
        seed: seeds the subset, the order and the minibatches.
        progress: progress bar on stderr (TTY only).
        neighbours: ``"whitened"`` (default) or ``"euclidean"`` (raw coordinates, fixed; the baseline).
        refresh_tol: relative change of the whitening matrix that triggers new neighbour sets.
        num_neighbours_predict: neighbours per prediction point (default ``2 * num_neighbours``).
        kernel: ``"so3"`` or ``"ard"``.
        lr: Adam learning rate.
        init_size: subset size of the initial exact MAP fit.
        init_restarts: its ``num_restarts``.
        coords: coordinate column names (CSV only).
        dtype: working dtype (default as :func:`~gpytorch_so3.scalable.fit_svgp`).
        device: working device.

    Returns:
        the fitted :class:`NearestNeighbourGP` (``.history`` holds one dict per epoch).

    Raises:
        TypeError: wrong types.
        ValueError: wrong shapes, NaN/inf, bad budgets or options.

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=200, n_test=50, seed=0)
        >>> gp = fit_nngp(f.train_X, f.train_Y, num_neighbours=8, epochs=1, batch_size=100, init_size=100,
        ...               init_restarts=1, progress=False)
        >>> mean, var = gp.predict(f.test_X)
        >>> mean.shape, bool((var >= 0).all())
        (torch.Size([50]), True)
    """
    check_nu(nu)
    num_neighbours = check_int("num_neighbours", num_neighbours, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    init_size = check_int("init_size", init_size, 2)
    init_restarts = check_int("init_restarts", init_restarts, 1)
    epochs, max_seconds = C.check_budget(epochs, max_seconds)
    if kernel not in C.KERNELS:
        raise ValueError(f"kernel must be one of {C.KERNELS}, got {kernel!r}")
    if neighbours not in NEIGHBOURS:
        raise ValueError(f"neighbours must be one of {NEIGHBOURS}, got {neighbours!r}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    X, Y = as_arrays(train_X, train_Y, coords)
    dev = C.default_device(X, device)
    src = DataSource(X, Y, working_dtype(X, dtype), dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        std = _statistics(src, C.DistInfo())
        n = src.n
        g = torch.Generator().manual_seed(seed)
        sub = np.sort(torch.randperm(n, generator=g)[: min(n, init_size)].numpy())
        xs, ys = src.rows(sub)
        kern, lik, const = C.fit_exact_init(
            std.x(xs.double()), std.y(ys.double()), kind=kernel, nu=nu, num_restarts=init_restarts, seed=seed
        )
        Xall, Yall = src.slice(0, n)
        order = torch.randperm(n, generator=g)
        gp = NearestNeighbourGP(
            std.x(Xall), std.y(Yall), kern.to(device=dev, dtype=src.dtype), lik.to(device=dev, dtype=src.dtype), std,
            num_neighbours=num_neighbours, neighbours=neighbours, refresh_tol=refresh_tol,
            num_neighbours_predict=num_neighbours_predict, order=order.to(dev),
        )  # fmt: skip
        gp.mean_module.initialize(constant=const)
        gp.init_seconds = time.perf_counter() - t0
        B = min(batch_size, n)
        per_epoch = math.ceil(n / B)
        if epochs is None:
            epochs = math.ceil(DEFAULT_TARGET_STEPS / per_epoch) if max_seconds is None else 10**9
        gp.history = _train(gp, epochs=epochs, B=B, max_seconds=max_seconds, seed=seed, lr=lr, progress=progress)
        gp.train_seconds = sum(h["seconds"] for h in gp.history)
        gp.eval()
    return gp


def _train(gp: NearestNeighbourGP, *, epochs, B, max_seconds, seed, lr, progress) -> list[dict]:
    if epochs == 0:
        return []
    n = gp.num_data
    params = [p for p in gp.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gp.train()
    per_epoch = math.ceil(n / B)
    bar = C.Progress(None if epochs >= 10**9 else epochs * per_epoch, "NNGP", progress)
    history: list[dict] = []
    t_start = time.perf_counter()
    stop = False
    try:
        for epoch in range(epochs):
            te = time.perf_counter()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1))
            total, steps, refreshes = 0.0, 0, 0
            for b in range(per_epoch):
                pos = perm[b * B : (b + 1) * B].to(gp.train_X.device)
                opt.zero_grad(set_to_none=True)
                lp = gp.conditional_log_densities(pos).mean()
                loss = -lp - C.log_prior(gp.covar_module, gp.likelihood).to(lp) / n
                loss.backward()
                opt.step()
                refreshes += int(gp.maybe_refresh())
                total += float(loss.detach())
                steps += 1
                bar.update(1, loss=float(loss.detach()))
                if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                    stop = True
                    break
            history.append(
                {
                    "epoch": epoch,
                    "loss": total / max(steps, 1),
                    "seconds": time.perf_counter() - te,
                    "steps": steps,
                    "refreshes": refreshes,
                }
            )
            if stop:
                break
    finally:
        bar.close()
    return history
