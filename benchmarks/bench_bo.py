"""Bayesian-optimisation benchmark: ARD vs SO(3) MAP vs SO(3) NUTS surrogates on 3-D problems with oblique anisotropy.

Problems (maximised on the unit cube; ``f*`` known):

* ``rotated_bump``: an anisotropic Gaussian bump ``exp(-r^2 / 2)``, ``r^2 = (x - c)^T R D^-2 R^T (x - c)``, principal
  length-scales (0.05, 0.15, 0.6) along an oblique rotation ``R``; tiny noise (sd 0.005). ``f* = 1``.
* ``rotated_hartmann3``: Hartmann-3 composed with a rotation of the cube about its centre,
  ``f(x) = H3(c + Q (x - c))``, with noise sd 0.1. ``Q`` is fixed so that the maximiser's preimage lies inside the
  cube: ``f* = 3.86278``.
* ``axis_bump`` (control): the bump of ``rotated_bump`` with ``R = I`` (axis-aligned anisotropy).
* ``hartmann3`` (control, optional): Hartmann-3 itself, noise sd 0.1.

Surrogates (all ``SingleTaskGP``-style with ``Standardize``; inputs are already in the unit cube, so no input scaling):

* ``ard``: ``ScaleKernel(MaternKernel(2.5, ard_num_dims=3))`` with the package's default length-scale and output-scale
  priors (the same priors as the SO(3) kernel), fitted by ``fit_gpytorch_mll``;
* ``botorch``: BoTorch's default ``SingleTaskGP`` (RBF, dimension-scaled LogNormal prior), ``fit_gpytorch_mll``;
* ``so3_map``: ``so3_covar_module()`` fitted by ``fit_map`` (Haar-random restarts);
* ``so3_nuts``: ``SO3FullyBayesianGP`` fitted by ``fit_nuts`` (small budget; see the CLI);
* ``so3_nuts_bnp``: the same with BoTorch's fully Bayesian noise prior ``Gamma(0.9, 10)`` instead of the package
  default ``Gamma(1.1, 0.05)`` (see benchmarks/README.md for why).

Acquisition: ``qLogNoisyExpectedImprovement`` with ``optimize_acqf`` (q = 1 by default); with ``--acq ts``, Thompson
sampling instead: BoTorch's ``PathwiseThompsonSampling`` (one Matheron sample path per iteration, maximised with
``optimize_acqf``; the package's kernels are registered with BoTorch's pathwise sampling by ``gpytorch_so3.pathwise``).
Simple regret after each iteration is ``f* - max f(x_i)`` over all points evaluated so far, using the noiseless
``f``. Every (problem, method, seed) run starts from the same seeded initial design (uniform random points) for all
methods.

Usage (the defaults are the run reported in benchmarks/README.md):

    OMP_NUM_THREADS=1 python benchmarks/bench_bo.py --workers 2      # 5 seeds x 15 iterations, NUTS on 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/bench_bo.py --methods so3_nuts --out /tmp/nuts.json   # e.g. in parallel
    OMP_NUM_THREADS=1 python benchmarks/bench_bo.py --acq ts --problems rotated_bump --methods ard so3_map \
        --seeds 10 --out benchmarks/results/bo_ts.json --plot benchmarks/results/bo_ts_regret.png   # Thompson
    python benchmarks/bench_bo.py --merge /tmp/nuts.json --plot-only    # fold in, re-draw the table and the plot

Results are appended to the JSON (``--resume`` skips runs already there, so methods can be added later).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bo.json"
DEFAULT_PLOT = HERE / "results" / "bo_regret.png"

METHODS = ("ard", "botorch", "so3_map", "so3_nuts", "so3_nuts_bnp")
PROBLEMS = ("rotated_bump", "rotated_hartmann3", "axis_bump", "hartmann3")
DEFAULT_PROBLEMS = ("rotated_bump", "rotated_hartmann3", "axis_bump")
LABELS = {
    "ard": "ARD (same priors)",
    "botorch": "BoTorch default",
    "so3_map": "SO(3) MAP",
    "so3_nuts": "SO(3) NUTS",
    "so3_nuts_bnp": "SO(3) NUTS, noise Gamma(0.9, 10)",
}
#: BoTorch's fully Bayesian models' noise prior (``botorch/models/fully_bayesian.py``: ``Gamma(0.9, 10.0)``).
BOTORCH_FB_NOISE_PRIOR = (0.9, 10.0)
#: A run counts as solved if its final simple regret is below this (5% of the bump's height, 1.3% of Hartmann-3's).
SOLVED = 0.05

D64 = torch.float64

# ------------------------------------------------------------------------------------------ test problems
HARTMANN3_ALPHA = torch.tensor([1.0, 1.2, 3.0, 3.2], dtype=D64)
HARTMANN3_A = torch.tensor([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]], dtype=D64)
HARTMANN3_P = 1e-4 * torch.tensor(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]], dtype=D64
)
HARTMANN3_XSTAR = torch.tensor([0.114614, 0.555649, 0.852547], dtype=D64)
HARTMANN3_FSTAR = 3.86278

BUMP_CENTER = torch.tensor([0.62, 0.38, 0.55], dtype=D64)
BUMP_LENGTHSCALES = torch.tensor([0.05, 0.15, 0.6], dtype=D64)
#: Oblique orientation of the bump: rotation by 1.1 rad about (1, 2, 2)/3 (no principal axis near a cube axis).
BUMP_ROTVEC = 1.1 * torch.tensor([1.0, 2.0, 2.0], dtype=D64) / 3.0
#: Rotation of the cube for rotated Hartmann-3: 0.9 rad about (-1, 1, 1)/sqrt(3); keeps the maximiser's preimage
#: inside the cube (checked in `_problem`).
HARTMANN_ROTVEC = 0.9 * torch.tensor([-1.0, 1.0, 1.0], dtype=D64) / math.sqrt(3.0)
CUBE_CENTER = torch.full((3,), 0.5, dtype=D64)


def hartmann3(x: torch.Tensor) -> torch.Tensor:
    """Hartmann-3 (to be maximised), ``... x 3 -> ...``."""
    d2 = (HARTMANN3_A * (x.unsqueeze(-2) - HARTMANN3_P) ** 2).sum(-1)
    return (HARTMANN3_ALPHA * torch.exp(-d2)).sum(-1)


def _exp_map(w: torch.Tensor) -> torch.Tensor:
    from gpytorch_so3 import so3

    return so3.exp_map(w)


def _problem(name: str):
    """Return ``(f_true, f_star, noise_sd)``; ``f_true`` maps ``n x 3`` to ``n``."""
    if name in ("rotated_bump", "axis_bump"):
        R = _exp_map(BUMP_ROTVEC) if name == "rotated_bump" else torch.eye(3, dtype=D64)
        M = (R / BUMP_LENGTHSCALES.square()) @ R.T

        def f(x):
            d = x - BUMP_CENTER
            return torch.exp(-0.5 * ((d @ M) * d).sum(-1))

        return f, 1.0, 0.005
    if name == "rotated_hartmann3":
        Q = _exp_map(HARTMANN_ROTVEC)
        pre = CUBE_CENTER + Q.T @ (HARTMANN3_XSTAR - CUBE_CENTER)
        assert bool(((pre > 0) & (pre < 1)).all()), "the rotated maximiser must lie inside the cube"

        def f(x):
            return hartmann3(CUBE_CENTER + (x - CUBE_CENTER) @ Q.T)

        return f, HARTMANN3_FSTAR, 0.1
    if name == "hartmann3":
        return hartmann3, HARTMANN3_FSTAR, 0.1
    raise ValueError(f"unknown problem {name!r}; choose from {PROBLEMS}")


# ------------------------------------------------------------------------------------------ surrogates
def _fit_surrogate(method: str, X, Y, seed: int, args):
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from gpytorch_so3.fit import fit_map
    from gpytorch_so3.priors import default_lengthscale_prior, default_outputscale_prior, so3_covar_module

    if method in ("so3_nuts", "so3_nuts_bnp"):
        from gpytorch.priors import GammaPrior

        from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP, SO3PyroModel
        from gpytorch_so3.nuts import fit_nuts

        pyro_model = None
        if method == "so3_nuts_bnp":
            pyro_model = SO3PyroModel(nu=2.5, noise_prior=GammaPrior(*BOTORCH_FB_NOISE_PRIOR))
        model = SO3FullyBayesianGP(X, Y, outcome_transform=Standardize(m=1), pyro_model=pyro_model)
        fit_nuts(
            model,
            warmup_steps=args.nuts_warmup,
            num_samples=args.nuts_samples,
            thinning=args.nuts_thinning,
            max_tree_depth=args.nuts_tree_depth,
            jit_compile=args.nuts_jit,
            seed=seed,
            progress=False,
        )
        return model
    if method == "ard":
        base = MaternKernel(nu=2.5, ard_num_dims=3, lengthscale_prior=default_lengthscale_prior())
        base.initialize(lengthscale=0.3)  # the prior's median, as so3_covar_module does
        covar = ScaleKernel(base, outputscale_prior=default_outputscale_prior())
        covar.initialize(outputscale=1.0)
        model = SingleTaskGP(X, Y, covar_module=covar.to(X), outcome_transform=Standardize(m=1))
    elif method == "botorch":
        model = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
    elif method == "so3_map":
        model = SingleTaskGP(X, Y, covar_module=so3_covar_module().to(X), outcome_transform=Standardize(m=1))
        return fit_map(model, num_restarts=args.map_restarts, seed=seed)
    else:
        raise ValueError(f"unknown method {method!r}")
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model.eval()


def run_one(job: tuple[str, str, int, argparse.Namespace]) -> dict:
    """One BO run; returns its record (regret per iteration, timings)."""
    problem, method, seed, args = job
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # BoTorch's optimisation/numerics chatter; failures are recorded below
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.thompson_sampling import PathwiseThompsonSampling
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    import gpytorch_so3.pathwise  # noqa: F401 - registers the package's kernels with BoTorch's pathwise sampling

    f, f_star, noise_sd = _problem(problem)
    gen = torch.Generator().manual_seed(1000 + seed)
    X = torch.rand(args.n_init, 3, generator=gen, dtype=D64)  # same initial design for every method
    noise_gen = torch.Generator().manual_seed(2000 + seed)

    def observe(x):
        return (f(x) + noise_sd * torch.randn(x.shape[0], generator=noise_gen, dtype=D64)).unsqueeze(-1)

    Y = observe(X)
    best = [float(f(X).max())]
    fit_s, acq_s, failures = [], [], []
    bounds = torch.stack([torch.zeros(3, dtype=D64), torch.ones(3, dtype=D64)])
    torch.manual_seed(seed)  # optimize_acqf's raw samples use the global RNG
    for it in range(args.iterations):
        t0 = time.perf_counter()
        try:
            model = _fit_surrogate(method, X, Y, seed * 1000 + it, args)
        except Exception as e:  # recorded, then the run continues with a random point
            failures.append(f"iter {it} fit: {type(e).__name__}: {e}")
            model = None
        t1 = time.perf_counter()
        cand = None
        if model is not None:
            try:
                if args.acq == "ts":
                    acq = PathwiseThompsonSampling(model)  # draws its path from the global RNG (seeded above)
                else:
                    acq = qLogNoisyExpectedImprovement(
                        model, X_baseline=X, sampler=SobolQMCNormalSampler(torch.Size([128]), seed=it)
                    )
                cand, _ = optimize_acqf(
                    acq,
                    bounds=bounds,
                    q=args.q,
                    num_restarts=args.acq_restarts,
                    raw_samples=args.raw_samples,
                    options={"maxiter": 200},
                )
                cand = cand.detach()
            except Exception as e:
                failures.append(f"iter {it} acq: {type(e).__name__}: {e}")
        if cand is None or not bool(torch.isfinite(cand).all()):
            cand = torch.rand(args.q, 3, generator=gen, dtype=D64)
        t2 = time.perf_counter()
        X = torch.cat([X, cand])
        Y = torch.cat([Y, observe(cand)])
        best.append(max(best[-1], float(f(cand).max())))
        fit_s.append(t1 - t0)
        acq_s.append(t2 - t1)
    return {
        "problem": problem,
        "method": method,
        "seed": seed,
        "f_star": f_star,
        "regret": [f_star - b for b in best],
        "fit_seconds": fit_s,
        "acq_seconds": acq_s,
        "failures": failures,
        "config": {
            k: getattr(args, k)
            for k in (
                "n_init",
                "iterations",
                "q",
                "map_restarts",
                "nuts_warmup",
                "nuts_samples",
                "nuts_thinning",
                "nuts_tree_depth",
                "nuts_jit",
                "acq_restarts",
                "raw_samples",
                "acq",
            )
        },
    }


# ------------------------------------------------------------------------------------------ reporting
def _key(r: dict) -> tuple[str, str, int]:
    return r["problem"], r["method"], r["seed"]


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return json.loads(path.read_text())["runs"]


def save(path: Path, runs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "host_cpus": os.cpu_count(), "python": sys.version.split()[0]}
    path.write_text(json.dumps({"meta": meta, "runs": sorted(runs, key=_key)}, indent=1))


def summarize(runs: list[dict]) -> str:
    """Markdown table: mean (standard error) of log10 simple regret at a few iterations, and mean fit seconds."""
    import statistics as st

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["problem"], r["method"]), []).append(r)
    n_it = max(len(r["regret"]) for r in runs) - 1
    checkpoints = sorted({0, n_it // 4, n_it // 2, n_it})
    head = "| problem | surrogate | seeds | " + " | ".join(f"regret @ {c}" for c in checkpoints)
    head += f" | log10 regret @ end | solved (regret < {SOLVED}) | fit s/iter |\n"
    head += "|" + "---|" * (len(checkpoints) + 6) + "\n"
    lines = []
    for problem in PROBLEMS:
        for method in METHODS:
            rs = groups.get((problem, method))
            if not rs:
                continue
            cells = []
            for c in checkpoints:
                vals = [r["regret"][c] for r in rs if len(r["regret"]) > c]
                se = st.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
                cells.append(f"{st.mean(vals):.3g} ± {se:.2g}")
            logs = [math.log10(max(r["regret"][-1], 1e-12)) for r in rs]
            se = st.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
            fit = st.mean(s for r in rs for s in r["fit_seconds"])
            fails = sum(len(r["failures"]) for r in rs)
            tag = f" ({fails} failures)" if fails else ""
            solved = sum(r["regret"][-1] < SOLVED for r in rs)
            lines.append(
                f"| {problem} | {LABELS[method]}{tag} | {len(rs)} | "
                + " | ".join(cells)
                + f" | {st.mean(logs):.2f} ± {se:.2f} | {solved}/{len(rs)} | {fit:.1f} |"
            )
    # paired comparison: runs with the same seed share the initial design and the noise stream
    pairs = []
    for problem in PROBLEMS:
        for a, b in (("so3_map", "ard"), ("so3_map", "botorch"), ("so3_nuts_bnp", "ard")):
            ra = {r["seed"]: r["regret"][-1] for r in groups.get((problem, a), [])}
            rb = {r["seed"]: r["regret"][-1] for r in groups.get((problem, b), [])}
            common = sorted(set(ra) & set(rb))
            if common:
                wins = sum(ra[k] < rb[k] for k in common)
                ties = sum(ra[k] == rb[k] for k in common)
                pairs.append(
                    f"- {problem}: {LABELS[a]} lower final regret than {LABELS[b]} in {wins}/{len(common)} "
                    f"seeds ({ties} ties)"
                )
    return head + "\n".join(lines) + "\n\nPaired by seed (same initial design):\n" + "\n".join(pairs) + "\n"


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = [p for p in PROBLEMS if any(r["problem"] == p for r in runs)]
    fig, axes = plt.subplots(1, len(problems), figsize=(4.6 * len(problems), 3.8), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        for method in METHODS:
            rs = [r for r in runs if r["problem"] == problem and r["method"] == method]
            if not rs:
                continue
            L = torch.tensor([[math.log10(max(v, 1e-12)) for v in r["regret"]] for r in rs])
            mean = L.mean(0)
            se = L.std(0) / math.sqrt(len(rs)) if len(rs) > 1 else torch.zeros_like(mean)
            it = range(len(mean))
            ax.plot(it, mean, label=f"{LABELS[method]} (n={len(rs)})")
            ax.fill_between(it, mean - se, mean + se, alpha=0.2)
        ax.set_title(problem)
        ax.set_xlabel("iteration")
        ax.set_ylabel("log10 simple regret (mean ± s.e.)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS), choices=PROBLEMS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..seeds-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--n-init", type=int, default=8)
    p.add_argument("--q", type=int, default=1)
    p.add_argument("--map-restarts", type=int, default=3)
    p.add_argument("--nuts-seeds", type=int, default=3, help="NUTS runs only for the first this-many seeds (slow)")
    p.add_argument("--nuts-warmup", type=int, default=32)
    p.add_argument("--nuts-samples", type=int, default=32)
    p.add_argument("--nuts-thinning", type=int, default=4)
    p.add_argument("--nuts-tree-depth", type=int, default=5)
    p.add_argument("--nuts-jit", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--acq-restarts", type=int, default=4)
    p.add_argument("--raw-samples", type=int, default=128)
    p.add_argument(
        "--acq",
        choices=["qlognei", "ts"],
        default="qlognei",
        help="acquisition: qLogNoisyExpectedImprovement (default) or pathwise Thompson sampling",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    p.add_argument("--resume", action="store_true", help="keep runs already in --out and skip them")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument(
        "--merge",
        nargs="*",
        type=Path,
        default=[],
        help="fold the runs of these JSON files (e.g. from a parallel invocation) into --out first",
    )
    args = p.parse_args(argv)

    runs = load(args.out) if (args.resume or args.plot_only) else []
    for extra in args.merge:
        new = load(extra)
        keys = {_key(r) for r in new}
        runs = [r for r in runs if _key(r) not in keys] + new
    if args.merge:
        save(args.out, runs)
    if not args.plot_only:
        done = {_key(r) for r in runs}
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        jobs = [
            (pr, m, s, args)
            for s in seeds
            for pr in args.problems
            for m in args.methods
            if (pr, m, s) not in done and (not m.startswith("so3_nuts") or s < args.first_seed + args.nuts_seeds)
        ]
        # the slow NUTS runs first, so that the pool's two workers finish at about the same time
        jobs.sort(key=lambda j: not j[1].startswith("so3_nuts"))
        print(f"{len(jobs)} runs ({len(runs)} already in {args.out})", file=sys.stderr)
        t0 = time.perf_counter()
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers) if args.workers > 1 else _Serial() as pool:
            for r in pool.imap_unordered(run_one, jobs):
                runs = [x for x in runs if _key(x) != _key(r)] + [r]
                save(args.out, runs)  # after every run: an interrupted benchmark keeps what it has
                print(
                    f"[{time.perf_counter() - t0:7.0f} s] {r['problem']:18s} {r['method']:9s} seed {r['seed']}: "
                    f"final regret {r['regret'][-1]:.3g}, fit {sum(r['fit_seconds']):.0f} s, "
                    f"acq {sum(r['acq_seconds']):.0f} s, failures {len(r['failures'])}",
                    file=sys.stderr,
                )
    if not runs:
        print("no runs", file=sys.stderr)
        return
    table = summarize(runs)
    print(table)
    plot(runs, args.plot)
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)


class _Serial:
    """A stand-in for a process pool that runs jobs in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, jobs):
        return map(fn, jobs)


if __name__ == "__main__":
    main()
