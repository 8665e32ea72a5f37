"""``fit_map`` in d = 7-10: the representative searches with and without kicks at local optima (issue 17).

Above ``REPRESENTATIVE_EXHAUSTIVE_MAX_DIM`` (6) ``fit_map`` moves each fitted rotation to a signed-permutation
representative of higher prior density by hill climbs (:func:`gpytorch_so3.fit._hill_climb_representative`), then
kicked restarts. Each case below fits the same model twice in one process, on one thread:

* ``skip``: as shipped (``gpytorch_so3.fit.REPRESENTATIVE_KICK_LOCAL_OPTIMA = False``: no kicks when neither climb
  improved the current representative);
* ``always``: ``REPRESENTATIVE_KICK_LOCAL_OPTIMA = True`` (the kicks after every search, the former behaviour);

and ``ard``: the same ``SingleTaskGP`` with ``gpytorch_so3.bo.ard_covar_module(d)`` (the same length-scale and
output-scale priors) fitted by BoTorch's ``fit_gpytorch_mll``, the baseline of the ratios. Reported: seconds, the
ratio to ARD, the final objective (total nats; identical representatives give identical fits), and the searches:
how many, how many moved the rotation, their seconds.

Cases (float64, ``Standardize`` outcome): a BO-shaped design, n points of ``U[0, 1]^d`` (seeded), of an oblique
bump ``exp(-20 ((x - 0.5) . u)^2 - 2 |x - 0.5|^2) + 0.005 eps`` with ``u`` a random unit vector (same generator):
``d7_n40``, ``d7_n60``, ``d8_n50``, ``d10_n40``, ``d10_n60``. (``gpytorch_so3.bo.fit_rotated_or_ard`` in d >= 4
fits its rotated model without a rotation prior by default, which no representative moves: its cost is unchanged.)

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_representative.py
    OMP_NUM_THREADS=1 python benchmarks/bench_representative.py --cases d7_n40 --out /tmp/r.json

writes ``benchmarks/results/bench_representative.json``. Timings come from whatever machine runs it: compare the
ratios.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize

import gpytorch_so3.fit as fit_module
from gpytorch_so3 import fit_map
from gpytorch_so3.bo import rotated_covar_module

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _experiments import ard_seconds, run_cases, timed  # noqa: E402  (sibling module)

CASES = {
    "d7_n40": (7, 40, 0),
    "d7_n60": (7, 60, 1),
    "d8_n50": (8, 50, 2),
    "d10_n40": (10, 40, 0),
    "d10_n60": (10, 60, 1),
}


def make_case(dim: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, Y)`` of a BO-shaped oblique bump in ``dim`` dimensions (float64)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, dim, generator=g, dtype=torch.float64)
    u = torch.randn(dim, generator=g, dtype=torch.float64)
    u = u / u.norm()
    c = X - 0.5
    Y = torch.exp(-20 * (c @ u) ** 2 - 2 * (c**2).sum(-1)).unsqueeze(-1)
    return X, Y + 0.005 * torch.randn(n, 1, generator=g, dtype=torch.float64)


@contextlib.contextmanager
def searches(kick_local_optima: bool):
    """Record ``fit_map``'s representative searches (moved?, seconds) with the given kick setting."""
    before_flag, before_fn = fit_module.REPRESENTATIVE_KICK_LOCAL_OPTIMA, fit_module._prior_representative
    log: list[tuple[bool, float]] = []

    def recorded(k):
        moved, seconds = timed(before_fn, k)
        log.append((moved, seconds))
        return moved

    fit_module.REPRESENTATIVE_KICK_LOCAL_OPTIMA = kick_local_optima
    fit_module._prior_representative = recorded
    try:
        yield log
    finally:
        fit_module.REPRESENTATIVE_KICK_LOCAL_OPTIMA = before_flag
        fit_module._prior_representative = before_fn


def run_fit_map(X: torch.Tensor, Y: torch.Tensor, kick_local_optima: bool) -> dict:
    model = SingleTaskGP(X, Y, covar_module=rotated_covar_module(X.shape[-1]), outcome_transform=Standardize(1))
    with searches(kick_local_optima) as log:
        _, seconds = timed(fit_map, model, seed=0)
    return {
        "seconds": seconds,
        "loss_nats": model.fit_map_info_.best_loss * X.shape[0],
        "searches": len(log),
        "searches_moved": sum(moved for moved, _ in log),
        "search_seconds": sum(s for _, s in log),
    }


def measure(name: str) -> dict:
    dim, n, seed = CASES[name]
    X, Y = make_case(dim, n, seed)
    ard = ard_seconds(X, Y)
    out = {"case": name, "dim": dim, "n": n, "seconds_ard": ard}
    for method, flag in (("skip", False), ("always", True)):
        rec = run_fit_map(X, Y, flag)
        rec["ratio_over_ard"] = rec["seconds"] / ard
        out[method] = rec
    out["speedup_skip_over_always"] = out["always"]["seconds"] / out["skip"]["seconds"]
    out["loss_skip_minus_always_nats"] = out["skip"]["loss_nats"] - out["always"]["loss_nats"]
    return out


def main(argv=None) -> None:
    run_cases(__doc__, list(CASES), str(HERE / "results" / "bench_representative.json"), measure, argv)


if __name__ == "__main__":
    main()
