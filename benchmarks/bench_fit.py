"""Wall time of the default ``fit_map`` against BoTorch's ARD fit on the same data, and recovery at each size.

Issue 13, item 6. For each size ``n`` (default 100, 300, 1000; 3000 with ``--with-3000``) and seed, a rotated
field from :func:`gpytorch_so3.datasets.make_rotated_field` (Matern-2.5, principal length-scales
(0.15, 0.4, 1.0), Haar-random rotation from the seed, noise sd 0.05, float64, ``n`` training and 1000 held-out
points) is fitted by

* **SO(3)**: ``SingleTaskGP(covar_module=so3_covar_module())`` (default priors: LogNormal length-scales, the
  default rotation prior, Gamma output-scale) with the default ``fit_map(model, seed=0)`` (9 starts, batched
  successive halving, polished winner);
* **ARD**: ``SingleTaskGP(covar_module=ScaleKernel(MaternKernel(2.5, ard_num_dims=3)))`` with the *same*
  length-scale prior, constraint and output-scale prior, fitted by ``botorch.fit.fit_gpytorch_mll``;

both with ``Standardize(m=1)`` and BoTorch's default likelihood. ``ard_evaluations`` counts ARD's MLL evaluations
(BoTorch's ``fit_gpytorch_mll`` retries from new initial values when L-BFGS-B stops abnormally, which shows as
counts well above ~100), ``so3_batched_calls`` the SO(3) objective calls (each for all active starts). The two
fits alternate (ARD first) so that drift of a shared machine hits both; the figure is the same-run ratio
``time(SO3) / time(ARD)`` per (n, seed), and the median over seeds. Recovery: angle between fitted and true
canonical axes (shortest, middle, longest; degrees), relative length-scale errors, held-out RMSE of both models
(noisy targets) and their ratio.

Also timed (``evaluation``): one objective + gradient evaluation at each ``n`` through gpytorch's
``ExactMarginalLogLikelihood`` (SO(3) and ARD models) and through ``fit_map``'s batched objective for one start
and for 9 starts, median of interleaved repeats.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_fit.py                       # n = 100 300 1000, seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/bench_fit.py --sizes 300 --seeds 0 --out /tmp/f.json
    OMP_NUM_THREADS=1 python benchmarks/bench_fit.py --with-3000           # adds n = 3000 (ARD alone ~minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import gpytorch
import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

import gpytorch_so3.fit as fit_module
from gpytorch_so3 import so3
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.fit import fit_map
from gpytorch_so3.priors import (
    default_lengthscale_constraint,
    default_lengthscale_prior,
    default_outputscale_prior,
    so3_covar_module,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_fit.json"
LENGTHSCALE = (0.15, 0.4, 1.0)
NOISE = 0.05
N_TEST = 1000


def so3_model(X, Y) -> SingleTaskGP:
    return SingleTaskGP(X, Y, covar_module=so3_covar_module(), outcome_transform=Standardize(m=1))


def ard_model(X, Y) -> SingleTaskGP:
    base = MaternKernel(
        nu=2.5,
        ard_num_dims=3,
        lengthscale_prior=default_lengthscale_prior(),
        lengthscale_constraint=default_lengthscale_constraint(),
    )
    covar = ScaleKernel(base, outputscale_prior=default_outputscale_prior())
    return SingleTaskGP(X, Y, covar_module=covar.to(X), outcome_transform=Standardize(m=1))


def rmse(model, X, Y) -> float:
    with torch.no_grad():
        mean = model.posterior(X).mean
    return float((mean - Y).square().mean().sqrt())


def fit_pair(field, seed: int) -> dict:
    X, Y = field.train_X, field.train_Y
    ard = ard_model(X, Y)
    calls = [0]
    forward = ard.forward

    def counted(x):
        calls[0] += 1
        return forward(x)

    ard.forward = counted  # counts MLL evaluations (BoTorch may retry from new initial values)
    t0 = time.perf_counter()
    fit_gpytorch_mll(ExactMarginalLogLikelihood(ard.likelihood, ard))
    t_ard = time.perf_counter() - t0
    del ard.forward
    model = so3_model(X, Y)
    t0 = time.perf_counter()
    fit_map(model, seed=0)
    t_so3 = time.perf_counter() - t0
    info = model.fit_map_info_
    ls, R = model.covar_module.base_kernel.canonical()
    t_ls, t_R = field.canonical()
    rm_so3, rm_ard = rmse(model, field.test_X, field.test_Y), rmse(ard, field.test_X, field.test_Y)
    return {
        "n": X.shape[0],
        "seed": seed,
        "seconds_so3": t_so3,
        "seconds_ard": t_ard,
        "ratio_so3_over_ard": t_so3 / t_ard,
        "ard_evaluations": calls[0],
        "so3_batched_calls": sum(p.evaluations for p in info.phases),
        "angle_error_deg": [round(float(a), 3) for a in so3.angle_between_axes(R.T, t_R.T)],
        "lengthscale_rel_error": [round(float(v), 4) for v in (ls / t_ls - 1).abs()],
        "rmse_so3": rm_so3,
        "rmse_ard": rm_ard,
        "rmse_ratio_so3_over_ard": rm_so3 / rm_ard,
        "strategy": info.strategy,
        "best_start": info.best_restart,
        "phases": [
            {
                "name": p.name,
                "starts": len(p.starts),
                "points": p.num_points,
                "evaluations": p.evaluations,
                "seconds": round(p.seconds, 3),
            }
            for p in info.phases
        ],
    }


def time_evaluations(n: int, repeats: int) -> dict:
    """Median seconds of one objective + gradient evaluation (interleaved repeats)."""
    field = make_rotated_field(n_train=n, n_test=1, lengthscale=LENGTHSCALE, noise_std=NOISE, seed=0)
    so3m, ardm = so3_model(field.train_X, field.train_Y), ard_model(field.train_X, field.train_Y)

    def gpytorch_eval(model):
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()

        def run():
            loss = -mll(model(*model.train_inputs), model.train_targets).sum()
            loss.backward()

        return run

    params = {k: p for k, p in so3m.named_parameters() if p.requires_grad}
    _, bounds = fit_module.get_parameters_and_bounds(ExactMarginalLogLikelihood(so3m.likelihood, so3m))
    obj = fit_module._BatchedObjective(so3m, params, bounds)
    row = torch.cat([p.detach().reshape(-1) for p in params.values()]).double().numpy()
    g = torch.Generator().manual_seed(1)

    def batched_eval(starts):
        x = obj.to_internal(np.stack([row] * starts))
        x[:, -3:] += torch.randn(starts, 3, generator=g, dtype=torch.float64).numpy()  # distinct rotations

        def run():
            xt = obj.tensor(x).requires_grad_(True)
            torch.autograd.grad(obj.losses(xt).sum(), xt)

        return run

    runs = {
        "gpytorch_mll_so3": gpytorch_eval(so3m),
        "gpytorch_mll_ard": gpytorch_eval(ardm),
        "batched_1_start": batched_eval(1),
    }
    if n <= 1000:  # above, nine n x n batches are memory-bound (fit_map chunks them: BATCH_MAX_ELEMENTS)
        runs["batched_9_starts"] = batched_eval(9)
    times = {k: [] for k in runs}
    with gpytorch.settings.max_cholesky_size(n + 1):
        for run in runs.values():
            run()  # warm-up
        for _ in range(repeats):
            for k, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["batched_1_start_over_gpytorch_so3"] = out["batched_1_start"] / out["gpytorch_mll_so3"]
    if "batched_9_starts" in out:
        out["batched_9_starts_per_start_over_gpytorch_so3"] = out["batched_9_starts"] / 9 / out["gpytorch_mll_so3"]
    return {"n": n, **out}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 300, 1000])
    p.add_argument("--with-3000", action="store_true", help="also n = 3000 (slow: ARD alone takes minutes)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--eval-repeats", type=int, default=5)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = list(args.sizes) + ([3000] if args.with_3000 and 3000 not in args.sizes else [])
    rows, evals = [], []
    for n in sizes:
        evals.append(time_evaluations(n, args.eval_repeats if n <= 1000 else 2))
        print(json.dumps(evals[-1]), flush=True)
        for seed in args.seeds:
            field = make_rotated_field(n_train=n, n_test=N_TEST, lengthscale=LENGTHSCALE, noise_std=NOISE, seed=seed)
            rows.append(fit_pair(field, seed))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "phases"}), flush=True)
    summary = []
    for n in sizes:
        r = [row for row in rows if row["n"] == n]
        summary.append(
            {
                "n": n,
                "median_ratio_so3_over_ard": statistics.median(x["ratio_so3_over_ard"] for x in r),
                "max_ratio_so3_over_ard": max(x["ratio_so3_over_ard"] for x in r),
                "median_seconds_so3": statistics.median(x["seconds_so3"] for x in r),
                "median_seconds_ard": statistics.median(x["seconds_ard"] for x in r),
                "max_shortest_axis_error_deg": max(x["angle_error_deg"][0] for x in r),
                "max_longest_axis_error_deg": max(x["angle_error_deg"][2] for x in r),
                "max_lengthscale_rel_error": max(max(x["lengthscale_rel_error"]) for x in r),
                "max_rmse_ratio_so3_over_ard": max(x["rmse_ratio_so3_over_ard"] for x in r),
            }
        )
        print(json.dumps(summary[-1]), flush=True)
    meta = {
        "torch": torch.__version__,
        "gpytorch": gpytorch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "loadavg_1min_at_end": os.getloadavg()[0],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "field": {"lengthscale": LENGTHSCALE, "noise_std": NOISE, "n_test": N_TEST, "nu": 2.5},
        "note": "same-run ratios on a shared 2-core machine (other jobs running): absolute seconds are noisy",
    }
    out = {"meta": meta, "summary": summary, "evaluation": evals, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
