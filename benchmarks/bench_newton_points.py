"""Where ``fit_map``'s Newton polish stops paying: ``NEWTON_MAX_POINTS`` against L-BFGS-B above it (issue 17).

``fit_map`` polishes with a trust-region Newton method up to ``gpytorch_so3.fit.NEWTON_MAX_POINTS`` training points
and with L-BFGS-B above. Each record fits the same model in a fresh process (so the peak memory is the run's own)
with ``setting``:

* ``lbfgsb_above_1024``: ``NEWTON_MAX_POINTS = 1024`` (the value before 2026-12-01: L-BFGS-B above 1,024 points);
* ``default_2048``: ``NEWTON_MAX_POINTS = 2048`` (the value since 2026-12-01; above 2,048 points the pre-polish on
  2,048 points is Newton's and the full-data polish L-BFGS-B's);
* ``newton``: ``NEWTON_MAX_POINTS = 10**6`` (Newton at every size up to the exact-fit limit);

then BoTorch's ``fit_gpytorch_mll`` of the same ``SingleTaskGP`` with ``gpytorch_so3.bo.ard_covar_module(d)`` (the
same priors) in the same process, the baseline of the ratio. Reported: ``fit_map`` seconds, the ratio, the final
objective (total nats), each polish's seconds and evaluations (a Newton Hessian, ``P + 1`` gradient rows, counts as
one), the Hessians and peak RSS.

Cases (float64, ``Standardize`` outcome, ``fit_map(model, seed=0)`` with ``bo.rotated_covar_module(d)``):
``d = 3``: ``datasets.make_rotated_field(n_train=n, n_test=1, lengthscale=(0.15, 0.4, 1.0), seed=0)``;
``d = 4``: ``U[0, 1]^4`` (generator seed 0), ``y = sin(6 x . u) + 0.05 eps``, ``u = (1, 1, 0.5, 0) / 1.5``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_newton_points.py                       # all, ~2.5 h
    OMP_NUM_THREADS=1 python benchmarks/bench_newton_points.py --cases 4:1100 --out /tmp/n.json

writes ``benchmarks/results/bench_newton_points.json``. Timings come from whatever machine runs it (run-to-run
noise here was ~20%): compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling module _experiments
CASES = ("3:1000", "3:1100", "3:1500", "3:2000", "4:1000", "4:1100", "4:1500", "4:2000", "3:3000", "4:3000")
SETTINGS = {"lbfgsb_above_1024": 1024, "default_2048": 2048, "newton": 10**6}


def make_data(d: int, n: int):
    import torch

    from gpytorch_so3 import datasets

    if d == 3:
        f = datasets.make_rotated_field(n_train=n, n_test=1, lengthscale=(0.15, 0.4, 1.0), seed=0)
        return f.train_X.to(torch.float64), f.train_Y.to(torch.float64).reshape(n, 1)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    u = torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    u = u / u.norm()
    return X, (torch.sin(6 * X @ u) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)).unsqueeze(-1)


def run_one(d: int, n: int, setting: str) -> dict:
    """One record (runs in the current process)."""
    import torch
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    import gpytorch_so3.fit as fit_module
    from gpytorch_so3 import bo, fit_map

    torch.set_num_threads(1)
    fit_module.NEWTON_MAX_POINTS = SETTINGS[setting]
    hessians = {"calls": 0, "seconds": 0.0}
    original = fit_module._newton_hessian

    def counted(obj, x):
        t = time.perf_counter()
        try:
            return original(obj, x)
        finally:
            hessians["calls"] += 1
            hessians["seconds"] += time.perf_counter() - t

    fit_module._newton_hessian = counted
    X, Y = make_data(d, n)
    model = SingleTaskGP(X, Y, covar_module=bo.rotated_covar_module(d), outcome_transform=Standardize(1))
    t0 = time.perf_counter()
    fit_map(model, seed=0)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    info = model.fit_map_info_
    polish = [p for p in info.phases if p.name == "polish"]
    from _experiments import ard_seconds as ard_baseline

    ard_seconds = ard_baseline(X, Y)
    return {
        "d": d,
        "n": n,
        "setting": setting,
        "NEWTON_MAX_POINTS": SETTINGS[setting],
        "fit_map_seconds": seconds,
        "ard_seconds": ard_seconds,
        "ratio_fit_map_to_ard": seconds / ard_seconds,
        "loss_total_nats": info.best_loss * n,
        "polish_seconds": [p.seconds for p in polish],
        "polish_evaluations": [p.evaluations for p in polish],
        "newton_hessians": hessians["calls"],
        "newton_hessian_seconds": hessians["seconds"],
        "maxrss_mb_after_fit_map": rss,
        "phases": [
            {"name": p.name, "num_points": p.num_points, "evaluations": p.evaluations, "seconds": p.seconds}
            for p in info.phases
        ],
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=list(CASES), help="d:n pairs")
    p.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--out", default=str(HERE / "results" / "bench_newton_points.json"))
    p.add_argument("--one", nargs=3, metavar=("D", "N", "SETTING"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), int(args.one[1]), args.one[2])))
        return
    from _experiments import environment

    t0 = time.perf_counter()
    records = []
    for case in args.cases:
        d, n = (int(v) for v in case.split(":"))
        for setting in args.settings:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(d), str(n), setting], capture_output=True, text=True, check=True
            )
            records.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps({k: v for k, v in records[-1].items() if k != "phases"}), flush=True)
    note = "2-core machine, possibly shared: absolute times are noisy, compare same-run ratios"
    Path(args.out).write_text(json.dumps({"environment": environment(t0, note), "records": records}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
