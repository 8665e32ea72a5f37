"""``fit_map``'s polish: trust-region Newton (the default) against L-BFGS-B (the former one), and BoTorch's ARD fit.

For each case below the same model is fitted three times in one process, alternating, on one thread:

* ``newton``: ``fit_map(model, seed=0)`` as shipped (``gpytorch_so3.fit.NEWTON_POLISH = True``: the polish and
  pre-polish on at most ``NEWTON_MAX_POINTS`` points run :func:`gpytorch_so3.fit._newton_polish`);
* ``lbfgsb``: the same call with ``NEWTON_POLISH = False`` (BoTorch's batched L-BFGS-B, the former polish);
* ``ard``: the same ``SingleTaskGP`` with ``gpytorch_so3.bo.ard_covar_module(d)`` (ARD Matern-2.5, the same
  length-scale and output-scale priors) fitted by BoTorch's ``fit_gpytorch_mll`` (the baseline of the ratios).

Reported per case and method: wall seconds, the same-run ratio to ARD, the final objective of ``fit_map`` (negative
penalised log marginal likelihood, in total nats: per-point loss times ``n``; lower is better), the objective
evaluations of each polish phase (a Newton Hessian, one batched call of ``P + 1`` rows, counts as one), and the
fast direction's angle to the truth where the case has one. The halving rounds are identical in both ``fit_map``
runs (same seed, same L-BFGS-B rounds): the methods differ only from the polish on.

Cases (float64, noise as stated, ``Standardize`` outcome):

* ``readme_6d``: the README's "Any dimension" example: ``sin(8 (x1 + x2))`` on ``U[0, 1]^6``, n = 200, noise sd 0.05
  (varies along one direction: five unseen length-scales);
* ``readme_6d_noise_free``: the same function at n = 300 without noise (the noise runs to its lower bound);
* ``field_2d``, ``field_6d``: GP draws of ``benchmarks/sod_recovery.py`` (``make_sod_field``; 2-D n = 200
  length-scales (0.15, 0.6); 6-D n = 600, length-scales 0.2-2.0), seed 0;
* ``field_3d``: ``gpytorch_so3.datasets.make_rotated_field`` (length-scales (0.15, 0.4, 1.0), noise 0.05), n = 300,
  seed 0, with ``so3_covar_module``-like defaults (``bo.rotated_covar_module(3)``);
* ``bo_6d_n20/40/60``: one BO surrogate fit, ``gpytorch_so3.bo.fit_rotated_or_ard(X, Y, seed=0)`` (an ARD and a
  rotated ``SingleTaskGP``, the rotated one by ``fit_map`` with the BO defaults), on n points of ``U[0, 1]^6`` (seeded
  by n) of a noise-free oblique bump ``exp(-20 ((x - c) . (1, 1, 0, 0, 0, 0))^2 - |x - c|^2 / 2)``, ``c = 0.5``;
  reported: its seconds with each polish, over BoTorch's default ``SingleTaskGP`` fit, and which model it chose.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_polish.py                    # all cases
    OMP_NUM_THREADS=1 python benchmarks/bench_polish.py --cases readme_6d --out /tmp/p.json

writes ``benchmarks/results/bench_polish.json``. Timings come from whatever machine runs it: compare the ratios.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize

import gpytorch_so3.fit as fit_module
from gpytorch_so3 import fit_map
from gpytorch_so3.bo import rotated_covar_module
from gpytorch_so3.datasets import make_rotated_field

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _experiments import ard_seconds, fit_botorch, run_cases, timed  # noqa: E402  (sibling modules)
from sod_recovery import LENGTHSCALES, make_sod_field  # noqa: E402

CASES = ("readme_6d", "readme_6d_noise_free", "field_2d", "field_3d", "field_6d", "bo_6d_n20", "bo_6d_n40", "bo_6d_n60")


def make_case(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(X, Y, fast_direction or None)`` of a case (float64)."""
    if name.startswith("readme_6d"):
        noise, n = (0.0, 300) if name.endswith("noise_free") else (0.05, 200)
        gen = torch.Generator().manual_seed(0)
        X = torch.rand(n, 6, dtype=torch.float64, generator=gen)
        Y = torch.sin(8 * X[:, :2].sum(-1, keepdim=True))
        Y = Y + noise * torch.randn(n, 1, dtype=torch.float64, generator=gen)
        return X, Y, torch.tensor([1.0, 1, 0, 0, 0, 0], dtype=torch.float64) / math.sqrt(2)
    if name == "field_3d":
        f = make_rotated_field(n_train=300, n_test=1, lengthscale=(0.15, 0.4, 1.0), seed=0)
        return f.train_X, f.train_Y, f.rotation_matrix[:, 0].to(torch.float64)
    dim, n = (2, 200) if name == "field_2d" else (6, 600)
    f = make_sod_field(dim, n, 1, LENGTHSCALES[dim], seed=0)
    return f["train_X"], f["train_Y"], f["R"][:, 0]


def angle_deg(u: torch.Tensor, v: torch.Tensor) -> float:
    """Angle between two directions up to sign."""
    c = abs(float(u @ v) / float(u.norm() * v.norm()))
    return math.degrees(math.acos(min(1.0, c)))


@contextlib.contextmanager
def polish(newton: bool):
    """Inside the block ``fit_map`` polishes with Newton (``True``) or L-BFGS-B (``False``)."""
    before = fit_module.NEWTON_POLISH
    fit_module.NEWTON_POLISH = newton
    try:
        yield
    finally:
        fit_module.NEWTON_POLISH = before


def run_fit_map(X, Y, newton: bool) -> dict:
    model = SingleTaskGP(X, Y, covar_module=rotated_covar_module(X.shape[-1]), outcome_transform=Standardize(1))
    with polish(newton):
        _, seconds = timed(fit_map, model, seed=0)
    info = model.fit_map_info_
    n = X.shape[0]
    ls, axes = model.covar_module.base_kernel.canonical()
    return {
        "seconds": seconds,
        "loss_nats": info.best_loss * n,
        "best_start_kind": info.start_kinds[info.best_restart],
        "polish_evaluations": [p.evaluations for p in info.phases if "polish" in p.name],
        "polish_seconds": [round(p.seconds, 3) for p in info.phases if "polish" in p.name],
        "polish_losses_nats": [min(p.losses.values()) * p.num_points for p in info.phases if "polish" in p.name],
        "fitted_lengthscale": [round(v, 4) for v in ls.reshape(-1).tolist()],
        "fast_axis": axes[:, 0],
    }


def measure_bo(n: int) -> dict:
    """One ``fit_rotated_or_ard`` call with each polish, against BoTorch's default ``SingleTaskGP`` fit."""
    from gpytorch_so3.bo import fit_rotated_or_ard

    g = torch.Generator().manual_seed(n)
    X = torch.rand(n, 6, generator=g, dtype=torch.float64)
    u = torch.tensor([1.0, 1, 0, 0, 0, 0], dtype=torch.float64)
    Y = torch.exp(-20 * ((X - 0.5) @ u) ** 2 - 0.5 * ((X - 0.5) ** 2).sum(-1)).unsqueeze(-1)
    out = {"case": f"bo_6d_n{n}", "n": n, "dim": 6, "seconds_botorch_default": fit_botorch(SingleTaskGP(X, Y))}
    for method in ("newton", "lbfgsb"):
        with polish(method == "newton"):
            model, seconds = timed(fit_rotated_or_ard, X, Y, seed=0)
        choice = model.surrogate_choice_
        out[method] = {
            "seconds": seconds,
            "ratio_over_botorch_default": seconds / out["seconds_botorch_default"],
            "chosen": choice.chosen,
            "margin": choice.margin,
        }
    out["speedup_newton_over_lbfgsb"] = out["lbfgsb"]["seconds"] / out["newton"]["seconds"]
    return out


def measure(name: str) -> dict:
    if name.startswith("bo_6d_n"):
        return measure_bo(int(name.removeprefix("bo_6d_n")))
    X, Y, truth = make_case(name)
    ard = ard_seconds(X, Y)
    out = {"case": name, "n": X.shape[0], "dim": X.shape[1], "seconds_ard": ard}
    for method in ("newton", "lbfgsb"):
        rec = run_fit_map(X, Y, method == "newton")
        axis = rec.pop("fast_axis")
        if truth is not None:
            rec["fast_axis_error_deg"] = angle_deg(axis, truth)
        rec["ratio_over_ard"] = rec["seconds"] / ard
        out[method] = rec
    out["speedup_newton_over_lbfgsb"] = out["lbfgsb"]["seconds"] / out["newton"]["seconds"]
    out["loss_newton_minus_lbfgsb_nats"] = out["newton"]["loss_nats"] - out["lbfgsb"]["loss_nats"]
    return out


def main(argv=None) -> None:
    run_cases(__doc__, list(CASES), str(HERE / "results" / "bench_polish.json"), measure, argv)


if __name__ == "__main__":
    main()
