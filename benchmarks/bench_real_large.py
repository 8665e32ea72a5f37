"""Larger real data, held out by whole wells: SVGP and whitened NNGP on all training samples vs an exact SO(3) GP.

Data: pygeostat 1.2.0's ``location_plot.dat`` (:func:`gpytorch_so3.datasets.load_location_plot`): 22,517 half-metre
samples in 220 vertical wells, coordinates (X, Y, mid-elevation) in metres; target porosity (``Phi``) by default.
Not bundled: pass ``--source`` (the wheel, the file or a directory) or set ``GPYTORCH_SO3_DATA``
(``pip download --no-deps pygeostat==1.2.0 -d DIR``).

Protocol: 5 folds of whole wells (:func:`~gpytorch_so3.datasets.hole_folds`, seed 0); one fold (``--fold``) is the
test set (all its samples), all samples of the other wells the training set (~18,000). Methods, all Matern-5/2 with
the package's default priors:
- ``svgp``: :func:`gpytorch_so3.scalable.fit_svgp` on all training samples (``--inducing`` inducing points,
  ``--seconds`` of minibatch training after its subset-MAP initialisation);
- ``svgp_ard``: the same with gpytorch's ARD Matern kernel (axis-aligned baseline);
- ``nngp``: :func:`gpytorch_so3.scalable.fit_nngp` (Vecchia, neighbours in the fitted metric's whitened space);
- ``exact_subset``: an exact GP with ``ScaleKernel(SO3AnisotropicKernel)`` whose hyper-parameters are fitted by
  :func:`gpytorch_so3.fit_map` on a random ``--subset`` (2,000) training samples and which conditions on the same
  subset (coordinates centred and divided by one common factor, targets standardised);
- ``exact_all``: the same hyper-parameters conditioned on all training samples (dense kernel matrix factorised in
  place, :func:`_experiments.dense_condition`; ~2.6 GB at 18,000 samples);
- ``mean``: the training mean (the R^2 = 0 reference).
Scores on the held-out samples: RMSE and R^2 of the predictive mean, NLPD of the observations under the latent
variance plus the fitted noise, fit and prediction seconds, and the fitted principal length-scales (metres).

Writes benchmarks/results/real_large.json. Timings are wall clock on whatever machine runs it; compare methods
within one run (same load), not across runs.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_real_large.py --source /path/to/wheels   # ~8-10 min
    python benchmarks/bench_real_large.py --quick                                       # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import gpytorch
import torch
from _experiments import dense_condition

from gpytorch_so3 import fit_map
from gpytorch_so3.datasets import REAL_DATA_FILES, hole_folds, load_location_plot
from gpytorch_so3.priors import default_noise_prior, so3_covar_module
from gpytorch_so3.scalable import fit_nngp, fit_svgp

OUT = Path(__file__).resolve().parent / "results" / "real_large.json"
NU = 2.5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=None, help="pygeostat 1.2.0 wheel, location_plot.dat, or a directory")
    p.add_argument("--target", default="Phi")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--subset", type=int, default=2000, help="exact GP: training subset size")
    p.add_argument("--restarts", type=int, default=2, help="fit_map restarts (exact GP and the scalable inits)")
    p.add_argument("--inducing", type=int, default=1024)
    p.add_argument("--neighbours", type=int, default=16)
    p.add_argument("--seconds", type=float, default=120.0, help="minibatch training budget per scalable fit")
    p.add_argument("--methods", nargs="+", default=["mean", "exact_subset", "svgp", "svgp_ard", "nngp"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: small subset, short budgets")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    if a.quick:
        a.subset, a.inducing, a.seconds, a.restarts = 300, 128, 10.0, 1
    return a


def scores(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> dict:
    mean, var, y = (t.detach().double().reshape(-1) for t in (mean, var, y))
    err = mean - y
    mse = float((err**2).mean())
    nlpd = float((0.5 * torch.log(2 * math.pi * var) + 0.5 * err**2 / var).mean())
    return {"rmse": math.sqrt(mse), "r2": 1.0 - mse / float(y.var(unbiased=False)), "nlpd": nlpd}


def anisotropy(base_kernel, scale: float) -> dict:
    """Principal length-scales in metres (ascending) of a base kernel fitted on ``x / scale``, and the angle in
    degrees between the shortest principal axis and the vertical (0 for ARD when its shortest axis is z)."""
    with torch.no_grad():
        if hasattr(base_kernel, "canonical"):
            ls, R = base_kernel.canonical()
            ls, R = ls.reshape(-1), R.reshape(3, 3)
        else:
            ls, order = base_kernel.lengthscale.detach().reshape(-1).sort()
            R = torch.eye(3, dtype=ls.dtype)[:, order]
        tilt = math.degrees(math.acos(min(1.0, abs(float(R[2, 0])))))
    return {"lengthscales_m": [float(v) * scale for v in ls], "short_axis_tilt_deg": tilt}


class ExactGP(gpytorch.models.ExactGP):
    def __init__(self, X, Y):
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=default_noise_prior(), noise_constraint=gpytorch.constraints.GreaterThan(1e-4)
        )
        super().__init__(X, Y, lik)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = so3_covar_module(NU)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


_EXACT: dict = {}


def fit_exact_subset(Xtr, Ytr, a):
    """The exact SO(3) GP's hyper-parameters, fitted once on a random ``--subset`` (shared by both exact methods)."""
    if "model" not in _EXACT:
        g = torch.Generator().manual_seed(a.seed)
        idx = torch.randperm(Xtr.shape[0], generator=g)[: a.subset]
        X, Y = Xtr[idx], Ytr[idx, 0]
        lo, hi = X.min(0).values, X.max(0).values
        centre, scale = (lo + hi) / 2, float((hi - lo).max())
        mu, sd = float(Y.mean()), float(Y.std())
        model = ExactGP((X - centre) / scale, (Y - mu) / sd).to(X.dtype)
        t0 = time.perf_counter()
        fit_map(model, num_restarts=a.restarts, seed=a.seed)
        _EXACT.update(model=model.eval(), centre=centre, scale=scale, mu=mu, sd=sd, seconds=time.perf_counter() - t0)
    return _EXACT


def run_exact(Xtr, Ytr, Xte, Yte, a, *, condition_on_all: bool = False) -> dict:
    e = fit_exact_subset(Xtr, Ytr, a)
    model, centre, scale, mu, sd = (e[k] for k in ("model", "centre", "scale", "mu", "sd"))
    t0 = time.perf_counter()
    if condition_on_all:  # the same hyper-parameters, conditioned on every training sample (dense, in place)
        kern = model.covar_module
        Xs = (Xtr - centre) / scale
        ys = (Ytr[:, 0] - mu) / sd - model.mean_module.constant.detach()
        noise = float(model.likelihood.noise.detach())
        f, v = dense_condition(kern, noise, Xs, ys, (Xte - centre) / scale, variance=True)
        mean, var = (f + model.mean_module.constant.detach()) * sd + mu, v * sd**2
        n_used = int(Xtr.shape[0])
    else:
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            post = model((Xte - centre) / scale)
            mean, var = post.mean * sd + mu, post.variance * sd**2
        n_used = int(model.train_inputs[0].shape[0])
    t_pred = time.perf_counter() - t0
    noise = float(model.likelihood.noise.detach()) * sd**2
    return {
        **scores(mean, var + noise, Yte),
        "fit_seconds": e["seconds"],
        "predict_seconds": t_pred,
        "n_train_used": n_used,
        "n_hyper": int(model.train_inputs[0].shape[0]),
        "noise_var": noise,
        **anisotropy(model.covar_module.base_kernel, scale),
    }


def run_svgp(Xtr, Ytr, Xte, Yte, a, kernel: str) -> dict:
    t0 = time.perf_counter()
    res = fit_svgp(
        Xtr, Ytr, nu=NU, num_inducing=a.inducing, batch_size=4096, max_seconds=a.seconds, seed=a.seed,
        progress=False, kernel=kernel, init_restarts=a.restarts,
    )  # fmt: skip
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, var = res.predict(Xte)
    t_pred = time.perf_counter() - t0
    noise = res.noise
    return {
        **scores(mean, var + noise, Yte),
        "fit_seconds": t_fit,
        "init_seconds": res.init_seconds,
        "train_seconds": res.train_seconds,
        "predict_seconds": t_pred,
        "n_train_used": int(Xtr.shape[0]),
        "epochs": len(res.history),
        "steps": int(sum(h.get("steps", 0) for h in res.history)) if res.history else 0,
        "noise_var": noise,
        **anisotropy(res.model.covar_module.base_kernel, res.standardization.x_scale),
    }


def run_nngp(Xtr, Ytr, Xte, Yte, a) -> dict:
    t0 = time.perf_counter()
    gp = fit_nngp(
        Xtr, Ytr, nu=NU, num_neighbours=a.neighbours, max_seconds=a.seconds, seed=a.seed, progress=False,
        init_restarts=a.restarts,
    )  # fmt: skip
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, var = gp.predict(Xte)
    t_pred = time.perf_counter() - t0
    noise = float(gp.likelihood.noise.detach()) * gp.standardization.y_std**2
    return {
        **scores(mean, var + noise, Yte),
        "fit_seconds": t_fit,
        "predict_seconds": t_pred,
        "n_train_used": int(Xtr.shape[0]),
        "neighbour_refreshes": int(gp.num_refreshes),
        "noise_var": noise,
        **anisotropy(gp.covar_module.base_kernel, gp.standardization.x_scale),
    }


def main(argv=None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(1)
    data = load_location_plot(a.target, source=a.source)
    folds = hole_folds(data.hole_ids, a.n_folds, seed=a.seed)
    test = folds == a.fold
    Xtr, Ytr = data.coordinates[~test], data.targets[~test]
    Xte, Yte = data.coordinates[test], data.targets[test]
    print(f"location_plot {a.target}: {int((~test).sum())} train / {int(test.sum())} test samples", file=sys.stderr)
    f = REAL_DATA_FILES["location_plot"]
    out = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "nu": NU},
        "data": {
            "file": f"{f.distribution} {f.version} {f.member}",
            "sha256": f.sha256,
            "target": data.target_name,
            "n_train": int((~test).sum()),
            "n_test": int(test.sum()),
            "n_train_holes": int(torch.unique(data.hole_ids[~test]).numel()),
            "n_test_holes": int(torch.unique(data.hole_ids[test]).numel()),
            "coordinates": "X, Y, (from + to) / 2 in metres",
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gpytorch": gpytorch.__version__,
            "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
            "note": "shared machine: other long benchmarks were running; timings are loaded, compare within a run",
        },
        "results": {},
    }
    runners = {
        "mean": lambda: {
            **scores(torch.full_like(Yte, float(Ytr.mean())), torch.full_like(Yte, float(Ytr.var())), Yte),
            "fit_seconds": 0.0,
        },
        "exact_subset": lambda: run_exact(Xtr, Ytr, Xte, Yte, a),
        "exact_all": lambda: run_exact(Xtr, Ytr, Xte, Yte, a, condition_on_all=True),
        "svgp": lambda: run_svgp(Xtr, Ytr, Xte, Yte, a, "so3"),
        "svgp_ard": lambda: run_svgp(Xtr, Ytr, Xte, Yte, a, "ard"),
        "nngp": lambda: run_nngp(Xtr, Ytr, Xte, Yte, a),
    }
    t_all = time.perf_counter()
    for m in a.methods:
        r = runners[m]()
        out["results"][m] = r
        print(f"{m:13s} " + " ".join(f"{k}={v:.4g}" for k, v in r.items() if isinstance(v, float)), file=sys.stderr)
        out["total_seconds"] = time.perf_counter() - t_all
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
