"""Which 6-D rotated fit should the do-no-harm rule weigh? Gains with and without the shrinkage prior (issue 17).

``gpytorch_so3.bo.fit_rotated_or_ard`` keeps the rotated metric when its data log-likelihood beats the ARD
reference's by a charge (``penalty="auto"``: BIC's ``log(n) / 2`` nats per so(d) coordinate in ``d >= 4``). With
the package's shrinkage rotation prior (a spike of 0.05 rad per coordinate) the 6-D rotated fit stays at the identity
at Bayesian-optimisation sample sizes, so the rule can only return ARD. This script measures, on designs shaped like
a BO run's (12 uniform points plus ``k`` points scattered around the maximiser, sd 0.1), for the 6-D problems of
``bench_bo_sod.py``: the log-likelihood gain of the rotated fit over the rule's ARD reference (the rule's ``margin``
with ``penalty=0``) with the shrinkage prior and with no rotation prior, and the RMSE of both models against the
noiseless objective on 400 points around the maximiser. What to read: whether the no-prior gains separate the
rotated problems from their axis-aligned controls at BIC's charge (``results/loo_check.json`` has the same on
uniform designs).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bo_rule6.py      # writes benchmarks/results/bo_rule6.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
D64 = torch.float64


def maximiser(name: str) -> torch.Tensor:
    """The maximiser of a 6-D or 10-D problem of ``bench_bo_sod.py`` on the unit cube."""
    import bench_bo_sod as bench

    if name.startswith("bump6"):
        return torch.tensor([0.62, 0.38, 0.55, 0.45, 0.6, 0.4], dtype=D64)
    if name == "hartmann6":
        return bench.H6_XSTAR.clone()
    if name.startswith("levy10"):  # rotated about the cube centre: the preimage of the optimum (0.6, ...) is inside
        x_star, c = torch.full((10,), 0.6, dtype=D64), torch.full((10,), 0.5, dtype=D64)
        return x_star if name == "levy10" else c + bench._rotation(10, 0).T @ (x_star - c)
    return bench.hartmann6_rotation()[1]


def bo_design(f, noise: float, center: torch.Tensor, seed: int, k: int):
    """``(X, Y, Xt, Ft)``: 12 uniform points plus ``k`` around ``center`` (sd 0.1, clamped to the cube), noisy
    targets, and 400 test points around ``center`` with the noiseless objective; all from a generator seeded ``seed``.
    """
    d = center.shape[-1]
    g = torch.Generator().manual_seed(seed)
    uniform = torch.rand(12, d, generator=g, dtype=D64)
    X = torch.cat([uniform, (center + 0.1 * torch.randn(k, d, generator=g, dtype=D64)).clamp(0, 1)])
    Y = (f(X) + noise * torch.randn(len(X), generator=g, dtype=D64)).unsqueeze(-1)
    Xt = (center + 0.1 * torch.randn(400, d, generator=g, dtype=D64)).clamp(0, 1)
    return X, Y, Xt, f(Xt)


def main(argv=None) -> None:
    import bench_bo_sod as bench
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from gpytorch_so3.bo import ard_covar_module, fit_rotated_or_ard
    from gpytorch_so3.priors import default_sod_rotation_prior

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["bump6", "bump6_axis", "hartmann6_rot", "hartmann6"])
    p.add_argument("--near", type=int, nargs="+", default=[10, 20, 30], help="points around the maximiser")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--out", type=Path, default=HERE / "results" / "bo_rule6.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows, t0 = [], time.perf_counter()
    for name in args.problems:
        f, _, noise, d = bench.problem(name)
        center = maximiser(name)
        for seed in range(args.seeds):
            for k in args.near:
                X, Y, Xt, Ft = bo_design(f, noise, center, seed, k)

                def rmse(model, Xt=Xt, Ft=Ft):
                    with torch.no_grad():
                        return float((model.posterior(Xt).mean.squeeze(-1) - Ft).square().mean().sqrt())

                ard = SingleTaskGP(X, Y, covar_module=ard_covar_module(d).to(X), outcome_transform=Standardize(1))
                fit_gpytorch_mll(ExactMarginalLogLikelihood(ard.likelihood, ard))
                row = {"problem": name, "seed": seed, "n": len(X), "rmse_ard": rmse(ard.eval())}
                for label, prior in (("shrinkage", default_sod_rotation_prior(d)), ("none", None)):
                    model = fit_rotated_or_ard(X, Y, penalty=0.0, seed=seed, num_restarts=2, rotation_prior=prior)
                    ch = model.surrogate_choice_
                    row[f"gain_{label}"] = ch.log_likelihood_rotated - ch.log_likelihood_ard
                    row[f"rmse_rotated_{label}"] = rmse(model) if ch.chosen == "rotated" else math.nan
                row["bic_charge"] = 0.5 * math.log(len(X)) * d * (d - 1) / 2
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for name in args.problems:
        rs = [r for r in rows if r["problem"] == name]
        summary[name] = {
            label: {
                "max_gain": max(r[f"gain_{label}"] for r in rs),
                "kept_at_bic": sum(r[f"gain_{label}"] > r["bic_charge"] for r in rs),
                "kept_and_rmse_better": sum(
                    r[f"gain_{label}"] > r["bic_charge"] and r[f"rmse_rotated_{label}"] < r["rmse_ard"] for r in rs
                ),
                "designs": len(rs),
            }
            for label in ("shrinkage", "none")
        }
    out = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "n_uniform": 12},
        "seconds": time.perf_counter() - t0,
        "rows": rows,
        "summary": summary,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
