"""Conditional simulation on a regular 3-D grid: wall time and peak memory of ``gpytorch_so3.simulate``.

A ``SingleTaskGP`` with ``ScaleKernel(SO3AnisotropicKernel(nu=2.5))`` (fixed, non-trivial hyperparameters: fitting is
not what is timed) is conditioned on ``--train`` scattered observations of a rotated synthetic field; then
``--samples`` conditional realisations of the latent field are drawn on an ``n x n x n`` grid covering the data's
box (``--features`` random Fourier features, BoTorch's meaning). Reference measured in the same run: the kriged
(posterior) mean on the same grid, ``m + k(X, X_train) (K + s^2 I)^-1 (y - m)`` in chunks of 8,192 rows; the record
gives ``ratio = time(simulate) / time(kriged mean)``.

Each case runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own; ``rss_baseline_mb`` is the
RSS after imports and model set-up, before simulating; ``rss_peak_mb`` is read right after ``simulate`` returns
(before the reference runs). Target (issue 18): 10^6 cells, 16 realisations, 2 cores,
<= 5 min and RSS < 4 GB.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py --threads 1            # 10^5 cells (46^3 grid)
    python benchmarks/bench_simulate.py --threads 2 --million                     # also 10^6 cells (100^3)
    python benchmarks/bench_simulate.py --cells 20000 --dtype float32 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "simulate.json"


def _rss_mb() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_case(args: argparse.Namespace) -> dict:
    import torch
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import ScaleKernel

    from gpytorch_so3 import SO3AnisotropicKernel
    from gpytorch_so3.pathwise import simulate

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    # training data: a rotated anisotropic field observed at scattered points in a 1000 x 1000 x 100 box
    box = torch.tensor([1000.0, 1000.0, 100.0], dtype=torch.float64)
    train_X = torch.rand(args.train, 3, generator=g, dtype=torch.float64) * box
    u = train_X / torch.tensor([300.0, 120.0, 15.0], dtype=torch.float64)
    train_Y = (torch.sin(u[:, 0] + 0.5 * u[:, 1]) + torch.cos(u[:, 2] - 0.3 * u[:, 0])).unsqueeze(-1)
    train_Y = train_Y + 0.05 * torch.randn(args.train, 1, generator=g, dtype=torch.float64)
    base = SO3AnisotropicKernel(nu=2.5)
    covar = ScaleKernel(base)
    model = SingleTaskGP(train_X, train_Y, covar_module=covar).to(dtype)
    base.lengthscale = torch.tensor([300.0, 120.0, 15.0], dtype=dtype)
    base.rotation = torch.tensor([0.0, 0.0, 0.4], dtype=dtype)
    covar.outputscale = 1.0
    model.likelihood.noise = 0.05**2
    model.eval()

    n = round(args.cells ** (1 / 3))
    axes = [torch.linspace(0, float(b), n, dtype=dtype) for b in box]
    X = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    rss_baseline = _current_rss_mb()

    t0 = time.perf_counter()
    draws = simulate(model, X, args.samples, seed=0, num_features=args.features)
    t_sim = time.perf_counter() - t0
    rss_peak = _rss_mb()  # before the reference runs
    finite = bool(torch.isfinite(draws).all())
    del draws

    # Reference: the kriged mean m + k(X, X_train) (K + s^2 I)^-1 (y - m), one Cholesky then chunks of 8192 rows
    # (gpytorch's posterior(X).mean on a large X also builds test-test covariance structures: far slower, GBs).
    t0 = time.perf_counter()
    with torch.no_grad():
        Xtr, ytr = model.train_inputs[0], model.train_targets
        K = covar(Xtr).to_dense() + model.likelihood.noise * torch.eye(Xtr.shape[0], dtype=dtype)
        L = torch.linalg.cholesky(K)
        mean_c = model.mean_module.constant
        alpha = torch.cholesky_solve((ytr - mean_c).unsqueeze(-1), L)
        kriged = torch.empty(X.shape[0], dtype=dtype)
        for lo in range(0, X.shape[0], 8192):
            kriged[lo : lo + 8192] = mean_c + (covar(X[lo : lo + 8192], Xtr).to_dense() @ alpha).squeeze(-1)
    t_mean = time.perf_counter() - t0

    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "cells": int(X.shape[0]),
        "grid": [n, n, n],
        "train": args.train,
        "samples": args.samples,
        "features": args.features,
        "dtype": args.dtype,
        "seconds_simulate": t_sim,
        "seconds_kriged_mean": t_mean,
        "ratio": t_sim / t_mean,
        "seconds_per_million_cell_realisations": t_sim / (X.shape[0] * args.samples) * 1e6,
        "rss_baseline_mb": rss_baseline,
        "rss_peak_mb": rss_peak,
        "finite": finite,
        "note": args.note,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, default=100_000, help="grid cells (rounded to a cube), default 10^5")
    p.add_argument("--million", action="store_true", help="also run the 10^6-cell grid")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--note", default="", help="free text stored with the record (e.g. machine load)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args)))
        return
    cases = [args.cells] + ([1_000_000] if args.million else [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for cells in cases:
        cmd = [sys.executable, __file__, "--child", "--cells", str(cells), "--train", str(args.train),
               "--samples", str(args.samples), "--features", str(args.features), "--dtype", args.dtype,
               "--threads", str(args.threads), "--note", args.note]  # fmt: skip
        # the child imports this checkout's package (not another installed copy) and uses the requested threads
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            f"{rec['cells']:>9,d} cells x {rec['samples']} draws ({rec['dtype']}, {rec['threads']} thr, "
            f"n_train={rec['train']}, F={rec['features']}): simulate {rec['seconds_simulate']:.1f} s, "
            f"kriged mean {rec['seconds_kriged_mean']:.1f} s (ratio {rec['ratio']:.2f}), "
            f"peak RSS {rec['rss_peak_mb']:.0f} MB (baseline {rec['rss_baseline_mb']:.0f} MB)"
        )
        if not math.isfinite(rec["seconds_simulate"]) or not rec["finite"]:
            raise SystemExit("non-finite draws")


if __name__ == "__main__":
    main()
