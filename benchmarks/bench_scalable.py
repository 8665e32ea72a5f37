"""Scalable GPs on large synthetic rotated fields: SVGP (SO(3) vs ARD, 1 vs 2 processes), whitened vs raw NNGP.

    OMP_NUM_THREADS=1 python benchmarks/bench_scalable.py                       # 10^4 and 10^5, short budgets
    OMP_NUM_THREADS=1 python benchmarks/bench_scalable.py --sizes 10000 --seconds 60
    OMP_NUM_THREADS=1 python benchmarks/bench_scalable.py --million --seconds 1500  # adds 10^6 (long)

Data: a stationary Matern-2.5 field with a rotated 10:1 anisotropy (length-scales 0.05, 0.25, 0.5 in the unit
cube, a fixed rotation), drawn by random Fourier features (RFF) so that 10^5-10^6 points are cheap:
``f(x) = sigma sqrt(1/D) sum_j (a_j cos(w_j . x) + b_j sin(w_j . x))`` with ``a, b ~ N(0, 1)`` and frequencies
``w_j = A g_j sqrt(2 nu / u_j)``, ``g_j ~ N(0, I_3)``, ``u_j ~ chi^2(2 nu)``, ``A = R diag(1 / l)``: the Matern-nu
spectral density is a multivariate Student-t with ``2 nu`` degrees of freedom, mapped through the whitening
matrix. Given the frequencies the field is exactly Gaussian with covariance ``sigma^2 / D sum_j cos(w_j . (x -
x'))``, a Monte-Carlo estimate of the rotated Matern kernel (error ``O(D^-1/2)``; the JSON records the measured
error at a few lags). Observations add N(0, 0.1^2) noise; the held-out RMSE is against the noise-free field on
2,000 uniform test points.

Each method runs in its own subprocess (so its peak RSS, from ``getrusage``, is its own); the 2-process SVGP runs
under ``python -m torch.distributed.run --nproc_per_node=2`` on 127.0.0.1. Training data are passed as ``.npy``
memmaps. Timings on a shared machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _experiments import dense_condition  # noqa: E402  (benchmarks/ is the script's directory)

LENGTHSCALE = (0.05, 0.25, 0.5)
ROTATION = (0.6, -0.4, 0.9)
NU = 2.5
NOISE_STD = 0.1
N_TEST = 2000
N_FEATURES = 2048


# ------------------------------------------------------------------------------------------------ data
def rff_field(n: int, seed: int, *, n_features: int = N_FEATURES):
    """Train/test inputs, noisy targets and noise-free values of one RFF draw (float32, chunked evaluation)."""
    from gpytorch_so3 import functional as F
    from gpytorch_so3 import so3

    g = torch.Generator().manual_seed(seed)
    A = F.so3_whitening_matrix(
        torch.tensor(LENGTHSCALE, dtype=torch.float64), so3.exp_map(torch.tensor(ROTATION, dtype=torch.float64))
    )
    gz = torch.randn(n_features, 3, generator=g, dtype=torch.float64)
    u = torch.from_numpy(np.random.default_rng(seed).chisquare(2 * NU, size=n_features))  # torch's Chi2: no generator
    W = (gz * torch.sqrt(2 * NU / u).unsqueeze(-1)) @ A.mT  # rows w_j = A g_j sqrt(2 nu / u_j)
    ab = torch.randn(2, n_features, generator=g, dtype=torch.float64)

    def f(X):
        out = []
        for a in range(0, len(X), 8192):
            P = X[a : a + 8192].double() @ W.mT
            out.append(((torch.cos(P) @ ab[0] + torch.sin(P) @ ab[1]) / math.sqrt(n_features)).float())
        return torch.cat(out)

    X = torch.rand(n, 3, generator=g, dtype=torch.float64).float()
    Xt = torch.rand(N_TEST, 3, generator=g, dtype=torch.float64).float()
    F_train, F_test = f(X), f(Xt)
    Y = F_train + NOISE_STD * torch.randn(n, generator=g).float()
    # spectral check: the RFF covariance (given the frequencies) vs the rotated Matern kernel at a few lags
    lags = torch.tensor(
        [[0.0, 0, 0], [0.02, 0, 0], [0, 0.05, 0], [0, 0, 0.1], [0.1, 0.1, 0.1], [0.3, -0.2, 0.1]], dtype=torch.float64
    )
    k_rff = torch.cos(lags @ W.mT).mean(-1)
    k_true = F.covariance(lags, torch.zeros(1, 3, dtype=torch.float64), A, NU).reshape(-1)
    return X, Y, Xt, F_test, float((k_rff - k_true).abs().max())


# ------------------------------------------------------------------------------------------------ workers
def _peak_rss_mb() -> float:
    """Peak RSS of this process: ``VmHWM`` of its address space (Linux), else ``ru_maxrss``.

    Not ``ru_maxrss`` first: Linux carries a forked child's inherited high-water mark through ``exec``, so a
    worker started by a driver that once held 2 GB would report at least 2 GB.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load(data: Path):
    X = np.load(data / "X.npy", mmap_mode="r")
    Y = np.load(data / "Y.npy", mmap_mode="r")
    Xt = torch.from_numpy(np.load(data / "Xt.npy"))
    Ft = torch.from_numpy(np.load(data / "Ft.npy"))
    return X, Y, Xt, Ft


def _rmse(mean, Ft) -> float:
    return float(((mean.double().cpu() - Ft.double()) ** 2).mean().sqrt())


def worker(method: str, data: Path, out: Path, a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    from gpytorch_so3.scalable import fit_nngp, fit_svgp

    X, Y, Xt, Ft = _load(data)
    n = X.shape[0]
    rec: dict = {"method": method, "n": n}
    t0 = time.perf_counter()
    if method in ("exact2000", "exact_all"):
        rec.update(_exact(X, Y, Xt, Ft, a, condition_on_all=method == "exact_all"))
        rec["fit_seconds"] = time.perf_counter() - t0
    elif method.startswith("svgp"):
        kind = "ard" if "ard" in method else "so3"
        variational = "natural" if "natural" in method else "cholesky"
        res = fit_svgp(
            X, Y, num_inducing=a.num_inducing, batch_size=a.batch_size, epochs=a.epochs, max_seconds=a.seconds,
            kernel=kind, variational=variational, seed=0, progress=False, init_size=a.init_size,
            init_restarts=a.init_restarts,
        )  # fmt: skip
        mean, _ = res.predict(Xt)
        ep = [h["seconds"] for h in res.history if h["steps"] == math.ceil(n / min(a.batch_size, n))]
        rec.update(
            rmse=_rmse(mean, Ft), fit_seconds=time.perf_counter() - t0, init_seconds=res.init_seconds,
            train_seconds=res.train_seconds, epochs=len(res.history), steps=sum(h["steps"] for h in res.history),
            seconds_per_full_epoch=(sum(ep) / len(ep)) if ep else None,
            epoch_seconds=[h["seconds"] for h in res.history],
            world_size=res.world_size, num_inducing=a.num_inducing, batch_size=a.batch_size,
        )  # fmt: skip
        if res.world_size > 1:
            import torch.distributed as dist

            rss = [None] * res.world_size
            dist.all_gather_object(rss, _peak_rss_mb())
            rec["peak_rss_mb_per_rank"] = rss
            dist.destroy_process_group()
            if res.rank != 0:
                return
    elif method.startswith("nngp"):
        mode = "euclidean" if "euclid" in method else "whitened"
        gp = fit_nngp(
            X, Y, num_neighbours=a.neighbours, batch_size=a.batch_size, epochs=a.epochs, max_seconds=a.seconds,
            neighbours=mode, seed=0, progress=False, init_size=a.init_size, init_restarts=a.init_restarts,
        )  # fmt: skip
        mean, _ = gp.predict(Xt)
        rec.update(
            rmse=_rmse(mean, Ft), fit_seconds=time.perf_counter() - t0, init_seconds=gp.init_seconds,
            train_seconds=gp.train_seconds, epochs=len(gp.history), refreshes=gp.num_refreshes,
            num_neighbours=a.neighbours,
        )  # fmt: skip
    elif method == "vnngp_raw":
        rec.update(_gpytorch_vnngp(X, Y, Xt, Ft, a))
        rec["fit_seconds"] = time.perf_counter() - t0
    else:
        raise ValueError(method)
    rec["peak_rss_mb"] = _peak_rss_mb()
    out.write_text(json.dumps(rec))


def _exact(X, Y, Xt, Ft, a, *, condition_on_all: bool) -> dict:
    """Exact SO(3) GP: MAP hyper-parameters on a 2,000-point random subset; predictions conditioned on that subset
    (``exact2000``) or on all ``n`` points (``exact_all``: the kernel matrix filled in row blocks and factorised in
    place by LAPACK, so the peak is one ``n x n`` float64 matrix, 3.2 GB at 2x10^4)."""
    from gpytorch_so3.scalable import _common as C
    from gpytorch_so3.scalable._data import DataSource
    from gpytorch_so3.scalable.svgp import _statistics

    n = X.shape[0]
    src = DataSource(X, Y, torch.float64, torch.device("cpu"))
    std = _statistics(src, C.DistInfo())
    idx = np.sort(torch.randperm(n, generator=torch.Generator().manual_seed(0))[: min(n, 2000)].numpy())
    x, y = src.rows(idx)
    xs, ys = std.x(x), std.y(y)
    t0 = time.perf_counter()
    kern, lik, const = C.fit_exact_init(xs, ys, kind="so3", nu=NU, num_restarts=a.init_restarts, seed=0)
    rec = {"hyper_seconds": time.perf_counter() - t0, "n_hyper": len(idx)}
    if condition_on_all:
        xs, ys = src.rows(np.arange(n))
        xs, ys = std.x(xs), std.y(ys)
    t0 = time.perf_counter()
    f, _ = dense_condition(kern, float(lik.noise.detach()), xs, ys - const, std.x(Xt.double()))
    mean = std.y_back(const + f)
    rec.update(rmse=_rmse(mean, Ft), n_conditioned=len(xs), condition_seconds=time.perf_counter() - t0)
    return rec


def _gpytorch_vnngp(X, Y, Xt, Ft, a) -> dict:
    """gpytorch's VNNGP (NNVariationalStrategy, mean-field q) with raw Euclidean neighbours, same initial kernel.

    gpytorch's NNUtil needs faiss or scikit-learn (neither installed here); its scikit-learn path also refits a
    tree per point for the sequential neighbours (O(N^2 log N)). The same neighbour sets (raw Euclidean,
    sequential and prediction) are computed here with scipy's cKDTree and the exact ordered search.
    """
    import gpytorch
    from gpytorch.utils.nearest_neighbors import NNUtil
    from scipy.spatial import cKDTree

    from gpytorch_so3.scalable import _common as C
    from gpytorch_so3.scalable import ordered_neighbours
    from gpytorch_so3.scalable._data import DataSource
    from gpytorch_so3.scalable.svgp import _statistics

    def set_nn_idx(self, train_x):
        self.train_n = train_x.shape[-2]
        self._tree = cKDTree(train_x.reshape(-1, self.dim).detach().cpu().double().numpy())

    def find_nn_idx(self, test_x, k=None):
        k = self.k if k is None else k
        _, i = self._tree.query(test_x.reshape(-1, self.dim).detach().cpu().double().numpy(), k=k)
        return torch.from_numpy(np.asarray(i).reshape(*test_x.shape[:-1], k)).long().to(test_x.device)

    def build_sequential_nn_idx(self, x):
        nb = ordered_neighbours(x.reshape(-1, self.dim).detach().cpu().double().numpy(), self.k)
        return torch.from_numpy(nb[self.k :]).long().to(x.device)

    NNUtil.set_nn_idx, NNUtil.find_nn_idx, NNUtil.build_sequential_nn_idx = (
        set_nn_idx,
        find_nn_idx,
        build_sequential_nn_idx,
    )

    n = X.shape[0]
    src = DataSource(X, Y, torch.float32, torch.device("cpu"))
    std = _statistics(src, C.DistInfo())
    g = torch.Generator().manual_seed(0)
    sub = np.sort(torch.randperm(n, generator=g)[: a.init_size].numpy())
    xs, ys = src.rows(sub)
    kern, lik, const = C.fit_exact_init(
        std.x(xs.double()), std.y(ys.double()), kind="so3", nu=NU, num_restarts=a.init_restarts, seed=0
    )
    Xall, Yall = src.slice(0, n)
    Xs, Ys = std.x(Xall), std.y(Yall)
    order = torch.randperm(n, generator=g)
    Xs, Ys = Xs[order].contiguous(), Ys[order].contiguous()
    k, B = a.neighbours, min(a.batch_size, n)

    class VNNGP(gpytorch.models.ApproximateGP):
        def __init__(self, Z):
            q = gpytorch.variational.MeanFieldVariationalDistribution(Z.shape[-2])
            vs = gpytorch.variational.NNVariationalStrategy(self, Z, q, k=k, training_batch_size=B)
            super().__init__(vs)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = kern.float()

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        def __call__(self, x, prior=False, **kwargs):
            return self.variational_strategy(x=x, prior=False, **kwargs)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VNNGP(Xs)
        lik = lik.float()
        model.mean_module.initialize(constant=const)
        mll = gpytorch.mlls.VariationalELBO(lik, model, num_data=n)
        opt = torch.optim.Adam([*model.parameters(), *lik.parameters()], lr=0.01)
        model.train()
        lik.train()
        t0, steps = time.perf_counter(), 0
        max_steps = (a.epochs * math.ceil(n / B)) if a.epochs is not None else 10**9
        while steps < max_steps and (a.seconds is None or time.perf_counter() - t0 < a.seconds):
            opt.zero_grad()
            out = model(x=None)
            idx = model.variational_strategy.current_training_indices
            loss = -mll(out, Ys[idx])
            loss.backward()
            opt.step()
            steps += 1
        train_seconds = time.perf_counter() - t0
        model.eval()
        lik.eval()
        with torch.no_grad():
            means = [model(std.x(Xt[i : i + 1000])).mean for i in range(0, len(Xt), 1000)]
    return {
        "rmse": _rmse(std.y_back(torch.cat(means)), Ft),
        "train_seconds": train_seconds,
        "steps": steps,
        "num_neighbours": k,
    }


# ------------------------------------------------------------------------------------------------ driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_method(method: str, data: Path, a: argparse.Namespace, nproc: int = 1, **overrides) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = data / f"{method}_{nproc}.json"
    opts = {"num_inducing": a.num_inducing, "batch_size": a.batch_size, "neighbours": a.neighbours,
            "seconds": a.seconds, "epochs": None, "init_size": a.init_size, "init_restarts": a.init_restarts,
            **overrides}  # fmt: skip
    args = ["--worker", method, "--data", str(data), "--worker-out", str(out)]
    for k, v in opts.items():
        if v is not None:
            args += [f"--{k.replace('_', '-')}", str(v)]
    script = str(Path(__file__).resolve())
    if nproc == 1:
        cmd = [sys.executable, script, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", script, *args]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"method": method, "error": proc.stderr[-500:], "nproc": nproc}
    rec = json.loads(out.read_text())
    rec.update(nproc=nproc, wall_seconds=wall)
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--million", action="store_true", help="add N = 10^6 (long)")
    p.add_argument("--seconds", type=float, default=90.0, help="training budget per method (seconds)")
    p.add_argument("--ddp-epochs", type=int, default=1, help="epochs of the 1- vs 2-process SVGP timing")
    p.add_argument("--num-inducing", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--neighbours", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--init-size", type=int, default=1000, help="subset of the MAP initialisation (SVGP/NNGP/VNNGP)")
    p.add_argument("--init-restarts", type=int, default=1, help="fit_map restarts (initialisation and exact GP)")
    p.add_argument("--methods", nargs="+", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scalable.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.data, a.worker_out, a)
        return
    torch.set_num_threads(1)
    sizes = [*a.sizes, 1_000_000] if a.million else a.sizes
    methods = a.methods or ["exact2000", "svgp_so3", "svgp_ard", "svgp_so3_natural", "nngp_whitened",
                            "nngp_euclidean", "vnngp_raw", "ddp"]  # fmt: skip
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                    "torch": torch.__version__, "note": "2 cores shared with other jobs: timings noisy"},
        "field": {"lengthscale": LENGTHSCALE, "rotation": ROTATION, "nu": NU, "noise_std": NOISE_STD,
                  "n_test": N_TEST, "rff_features": N_FEATURES},
        "budget": {"seconds": a.seconds, "num_inducing": a.num_inducing, "batch_size": a.batch_size,
                   "neighbours": a.neighbours, "ddp_epochs": a.ddp_epochs, "init_size": a.init_size,
                   "init_restarts": a.init_restarts},
        "runs": [],
    }  # fmt: skip
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            X, Y, Xt, Ft, kerr = rff_field(n, a.seed)
            for name, t in (("X", X), ("Y", Y), ("Xt", Xt), ("Ft", Ft)):
                np.save(data / f"{name}.npy", t.numpy())
            entry = {"n": n, "rff_kernel_max_abs_error": kerr, "field_std": float(Ft.std()), "methods": {}}
            print(f"N = {n}: field std {float(Ft.std()):.3f}, RFF kernel error {kerr:.3f}", flush=True)
            for m in methods:
                if m == "ddp":
                    one = run_method("svgp_so3", data, a, 1, epochs=a.ddp_epochs, seconds=None)
                    two = run_method("svgp_so3", data, a, 2, epochs=a.ddp_epochs, seconds=None)
                    r = {"one_process": one, "two_processes": two}
                    if one.get("seconds_per_full_epoch") and two.get("seconds_per_full_epoch"):
                        r["epoch_time_ratio_2_over_1"] = two["seconds_per_full_epoch"] / one["seconds_per_full_epoch"]
                        r["rmse_1"], r["rmse_2"] = one["rmse"], two["rmse"]
                else:
                    r = run_method(m, data, a, 1, epochs=a.epochs)
                entry["methods"][m] = r
                print(f"  {m}: {json.dumps(r)[:400]}", flush=True)
            results["runs"].append(entry)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
