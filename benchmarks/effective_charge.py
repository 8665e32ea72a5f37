"""What ``penalty="effective"`` charges on the designs of ``bo_rule6.py`` and ``loo_check.py`` (issue 17).

``gpytorch_so3.bo.fit_rotated_or_ard(penalty="effective")`` charges BIC's ``log(n) / 2`` nats per rotation coordinate
the data *determine* (MacKay's ``gamma = sum_i lambda_i / (lambda_i + 1)`` over the eigenvalues of the negative
Hessian of the data log likelihood in the so(d) coordinates at the rotated optimum), where BIC charges all
``d (d - 1) / 2``. This script fits the rotated model without a rotation prior (as ``penalty="auto"`` does in
``d >= 4``) and records, per design: the log-likelihood gain over the rule's ARD reference, ``gamma``, the
effective charge and BIC's, and whether the rotated model predicts better (RMSE against the noiseless objective on
400 points around the maximiser for the BO-shaped designs, 2,000 uniform points for the uniform ones).

Designs: ``bo`` = 12 uniform points plus 10, 20 or 30 points around the maximiser (sd 0.1), seeds 0-3, as in
``bo_rule6.py`` (6-D bump, its axis-aligned control, Hartmann-6, rotated Hartmann-6; Levy-10 and rotated Levy-10 with
20 and 30 points); ``uniform`` = 30 or 45 uniform points, seeds 0-4, as in ``loo_check.py`` (6-D bump and control).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/effective_charge.py      # writes benchmarks/results/effective_charge.json
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


def designs(name: str, kind: str):
    """Yield ``(seed, X, Y, Xt, Ft)`` for one problem and design kind (the draws of bo_rule6.py / loo_check.py)."""
    import bench_bo_sod as bench
    from bo_rule6 import bo_design, maximiser

    f, _, noise, d = bench.problem(name)
    if kind == "uniform":
        for n in (30, 45):
            for seed in range(5):
                g = torch.Generator().manual_seed(seed)
                X = torch.rand(n, d, generator=g, dtype=D64)
                Y = (f(X) + noise * torch.randn(n, generator=g, dtype=D64)).unsqueeze(-1)
                Xt = torch.rand(2000, d, generator=g, dtype=D64)
                yield seed, X, Y, Xt, f(Xt)
        return
    center = maximiser(name)
    for seed in range(4):
        for k in (20, 30) if d == 10 else (10, 20, 30):
            yield seed, *bo_design(f, noise, center, seed, k)


def main(argv=None) -> None:
    from gpytorch_so3.bo import _effective_coordinates, fit_rotated_or_ard

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cases",
        nargs="+",
        default=[
            "bo:bump6",
            "bo:bump6_axis",
            "bo:hartmann6_rot",
            "bo:hartmann6",
            "uniform:bump6",
            "uniform:bump6_axis",
            "bo:levy10_rot",
            "bo:levy10",
        ],
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "effective_charge.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows, t0 = [], time.perf_counter()
    for case in args.cases:
        kind, name = case.split(":")
        for seed, X, Y, Xt, Ft in designs(name, kind):
            n, d = X.shape
            model = fit_rotated_or_ard(X, Y, penalty=0.0, seed=seed, num_restarts=2, rotation_prior=None)
            ch = model.surrogate_choice_
            row = {"design": kind, "problem": name, "seed": seed, "n": n, "dim": d}
            row["gain"] = ch.log_likelihood_rotated - ch.log_likelihood_ard
            row["bic_charge"] = 0.5 * math.log(n) * d * (d - 1) / 2
            if ch.chosen == "rotated":  # the rotated optimum is above ARD's: gamma and the prediction comparison
                gamma = _effective_coordinates(model)
                row["gamma"], row["effective_charge"] = gamma, 0.5 * math.log(n) * gamma
                with torch.no_grad():
                    row["rmse_rotated"] = float((model.posterior(Xt).mean.squeeze(-1) - Ft).square().mean().sqrt())
            else:  # no gain at all: every rule keeps ARD
                row["gamma"] = row["effective_charge"] = row["rmse_rotated"] = math.nan
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for case in args.cases:
        kind, name = case.split(":")
        rs = [r for r in rows if r["design"] == kind and r["problem"] == name]
        summary[case] = {
            "designs": len(rs),
            "kept_effective": sum(r["gain"] > r["effective_charge"] for r in rs),
            "kept_bic": sum(r["gain"] > r["bic_charge"] for r in rs),
            "max_gain": max(r["gain"] for r in rs),
            "gamma_range": [
                min(r["gamma"] for r in rs if r["gamma"] == r["gamma"]),
                max(r["gamma"] for r in rs if r["gamma"] == r["gamma"]),
            ],
        }
    out = {"config": {"cases": args.cases}, "seconds": time.perf_counter() - t0, "rows": rows, "summary": summary}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
