"""What the evidence rules see along the ARD-guided BO trajectories of the 6-D problems (issue 17).

The shipped rule (``penalty="auto"``: BIC, no rotation prior, in ``d >= 4``) and ``penalty="effective"`` decide on
the designs the BO loop itself produces, and until the rotation is first kept those are the designs of the ARD loop
(``fit_rotated_or_ard`` returns BoTorch's ARD fit with the caller's random stream, so the trajectories coincide).
This script re-runs the ARD loop of ``bench_bo_sod.py`` (same seeds, initial designs, noise, budget), keeps its
designs, and at several sizes along each trajectory fits the rotated model without a rotation prior and records the
log-likelihood gain over the rule's ARD reference, MacKay's ``gamma``, the charges of BIC / ``effective`` / AIC, and
the RMSE of both models' posterior means against the noiseless objective on 400 points around the maximiser
(sd 0.1, as ``bo_rule6.py``). The question it answers: is there a charge that keeps the rotation on the rotated
problems' trajectories early enough to matter while never keeping it on the controls' trajectories?

Usage (~20 min per pair of problems on one core)::

    OMP_NUM_THREADS=1 python benchmarks/bo_trajectory_gains.py --problems bump6 bump6_axis --out /tmp/a.json
    OMP_NUM_THREADS=1 python benchmarks/bo_trajectory_gains.py --problems hartmann6_rot hartmann6 --out /tmp/b.json
    python benchmarks/bo_trajectory_gains.py --merge /tmp/a.json /tmp/b.json   # -> results/bo_trajectory_gains.json
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
PROBLEMS = ("bump6", "bump6_axis", "hartmann6_rot", "hartmann6")


def summarize(rows: list[dict]) -> dict:
    """Per problem and size: the gains, how often the rotated fit predicts better, kept counts per charge; and per
    size, the largest constant charge that keeps 7/10 of the rotated bump's fits (its 7th largest gain) against the
    largest gain where the rotated fit does not predict better on the other three problems (a false keep)."""
    out: dict = {"by_problem": {}, "separation": {}}
    for name in PROBLEMS:
        for n in sorted({r["n"] for r in rows}):
            rs = [r for r in rows if r["problem"] == name and r["n"] == n]
            if not rs:
                continue
            out["by_problem"][f"{name} n={n}"] = {
                "gains": [round(r["gain"], 2) for r in rs],
                "rotated_rmse_better": sum(r["rmse_rotated"] < r["rmse_ard"] for r in rs),
                "kept_bic": sum(r["gain"] > r["bic_charge"] for r in rs),
                "kept_effective": sum(r["gain"] > r["effective_charge"] for r in rs),
                "kept_aic": sum(r["gain"] > r["aic_charge"] for r in rs),
                "seeds": len(rs),
            }
    for n in sorted({r["n"] for r in rows}):
        bump = sorted((r["gain"] for r in rows if r["problem"] == "bump6" and r["n"] == n), reverse=True)
        false = [
            r["gain"] for r in rows if r["problem"] != "bump6" and r["n"] <= n and not r["rmse_rotated"] < r["rmse_ard"]
        ]
        if len(bump) >= 7 and false:
            out["separation"][f"n={n}"] = {"charge_keeping_7_of_10_bump6": bump[6], "max_false_keep_gain": max(false)}
    return out


def main(argv=None) -> None:
    import bench_bo_sod as bench
    from bo_rule6 import maximiser

    from gpytorch_so3.bo import _effective_coordinates, fit_rotated_or_ard

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--sizes", type=int, nargs="+", default=[18, 24, 30, 36, 42])
    p.add_argument("--out", type=Path, default=HERE / "results" / "bo_trajectory_gains.json")
    p.add_argument("--merge", type=Path, nargs="+", help="only merge these outputs (runs split by problem) into --out")
    args = p.parse_args(argv)
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        rows = [r for part in parts for r in part["rows"]]
        config = parts[0]["config"] | {
            "problems": [n for part in parts for n in part["config"]["problems"]],
            "out": str(args.out),
        }
        seconds = sum(part.get("seconds", math.nan) for part in parts)
        out = {"config": config, "seconds": seconds, "rows": rows, "summary": summarize(rows)}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out["summary"]["separation"], indent=1))
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    bo_args = argparse.Namespace(
        n_init=8, n_init_high=12, iterations=args.iterations, map_restarts=2, acq_restarts=2, raw_samples=64,
        keep_data=True,
    )  # fmt: skip
    rows, t0 = [], time.perf_counter()
    for name in args.problems:
        f, _, _, d = bench.problem(name)
        g = torch.Generator().manual_seed(12345)
        Xt = (maximiser(name) + 0.1 * torch.randn(400, d, generator=g, dtype=D64)).clamp(0, 1)
        Ft = f(Xt)
        for seed in range(args.seeds):
            run = bench.run_bo(name, "ard", seed, bo_args)
            X, Y = torch.tensor(run["X"], dtype=D64), torch.tensor(run["Y"], dtype=D64).unsqueeze(-1)
            for n in args.sizes:
                it = n - bo_args.n_init_high  # the loop's iteration that fits on the first n points
                model = fit_rotated_or_ard(
                    X[:n], Y[:n], penalty=0.0, seed=seed * 1000 + it, num_restarts=2, rotation_prior=None
                )
                ch = model.surrogate_choice_
                row = {"problem": name, "seed": seed, "n": n, "final_regret_ard": run["regret"][-1]}
                row["gain"] = ch.log_likelihood_rotated - ch.log_likelihood_ard
                row["bic_charge"] = 0.5 * math.log(n) * d * (d - 1) / 2
                row["aic_charge"] = d * (d - 1) / 2
                row["gamma"] = row["effective_charge"] = row["rmse_rotated"] = math.nan
                if ch.chosen == "rotated":
                    row["gamma"] = _effective_coordinates(model)
                    row["effective_charge"] = 0.5 * math.log(n) * row["gamma"]
                    with torch.no_grad():
                        row["rmse_rotated"] = float((model.posterior(Xt).mean.squeeze(-1) - Ft).square().mean().sqrt())
                ard = bench.fit_surrogate("ard", X[:n], Y[:n], seed, 2)
                with torch.no_grad():
                    row["rmse_ard"] = float((ard.posterior(Xt).mean.squeeze(-1) - Ft).square().mean().sqrt())
                rows.append(row)
                print(json.dumps(row), flush=True)
            partial = {"config": vars(args) | {"out": str(args.out), "merge": None}, "rows": rows}
            args.out.write_text(json.dumps(partial, indent=1))
    out = {
        "config": vars(args) | {"out": str(args.out), "merge": None},
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    out["summary"] = summarize(rows)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
