"""NUTS benchmark and acceptance experiment for SO3FullyBayesianGP (issue 5).

Speed (default, ``python benchmarks/bench_nuts.py``): on one seeded rotated field (n = 100, 3-D), 1 chain of
256 warm-up + 256 draws, compares in one run

* ``so3``: ``SO3FullyBayesianGP`` + ``fit_nuts`` (Pyro NUTS, dense mass) with the analytic potential
  (``fast_potential=True``, the default) with and without ``jit_compile``, and ``so3_pyropotential_jit`` with
  Pyro's generic (traced) potential, the default before the analytic one; ``--diag`` adds a diagonal-mass run;
* ``pyro_ard``: the Pyro model with the rotation fixed at 0 (a 3-length-scale ARD model; an overridden program,
  so it runs on Pyro's generic traced potential);
* ``botorch_ard``: BoTorch 0.18's ``FullyBayesianSingleTaskGP`` + ``fit_fully_bayesian_model_nuts`` (NumPyro/JAX),
  run in a separate interpreter that has jax + numpyro (``--jax-python``, default ``/tmp/jaxvenv/bin/python``;
  skipped with a note if unavailable). JAX is never imported by the package or by this process. It runs in
  float32 (BoTorch does not enable ``jax_enable_x64``) and, as a second entry, with ``JAX_ENABLE_X64=1``.

Reported: wall time of the whole fit call, minimum ESS (Pyro's ``effective_sample_size``) over the canonical
length-scales, output-scale (if sampled) and noise, ESS per second, and ratios against ``botorch_ard`` (or
``pyro_ard`` if BoTorch could not run). One JSON object per line is appended to ``benchmarks/results/nuts.json``.

Acceptance (``python benchmarks/bench_nuts.py acceptance --seeds 0 1 2 ...``): per seed, a rotated field with
n = 120 (``gpytorch_so3.datasets.make_rotated_field``), 2 chains x (256 + 256): R-hat and ESS of the canonical
length-scales, angle of the posterior-mean shortest direction to the truth, mixture-mean RMSE vs an ARD MAP
``SingleTaskGP``, and whether each true canonical length-scale lies in its 90% interval (calibration).
Use ``OMP_NUM_THREADS=1`` on shared machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from pyro.ops.stats import effective_sample_size

from gpytorch_so3 import so3
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP, SO3PyroModel
from gpytorch_so3.nuts import fit_nuts
from gpytorch_so3.summary import summarize_posterior

RESULTS = Path(__file__).parent / "results" / "nuts.json"


class ARDPyroModel(SO3PyroModel):
    """The SO(3) Pyro model with the rotation fixed at 0: an axis-aligned (ARD) Matern GP, same code path."""

    def sample_rotation(self):
        return torch.zeros(3, dtype=self.dtype, device=self._X.device)

    @property
    def sample_sites(self):
        sites = super().sample_sites
        sites.pop("rotation")
        return sites

    def postprocess_mcmc_samples(self, mcmc_samples):
        out = dict(mcmc_samples)
        ref = out["lengthscale"]
        out["rotation"] = torch.zeros_like(ref)
        return super().postprocess_mcmc_samples(out)


def _data(n_train: int, n_test: int, seed: int, lengthscale=None):
    from gpytorch_so3.datasets import make_rotated_field

    kw = {} if lengthscale is None else {"lengthscale": tuple(lengthscale)}
    return make_rotated_field(n_train, n_test, seed=seed, **kw)


def _standardize(Y: torch.Tensor) -> torch.Tensor:
    return (Y - Y.mean()) / Y.std()


def _min_ess_pyro(model: SO3FullyBayesianGP) -> tuple[float, dict]:
    s = model.fit_nuts_info_.samples
    ls, _ = so3.canonicalize(s["lengthscale"], so3.exp_map(s["rotation"]))
    per = {"lengthscale": effective_sample_size(ls, 0, 1).tolist()}
    for k in ("outputscale", "noise"):
        if k in s:
            per[k] = float(effective_sample_size(s[k], 0, 1))
    vals = per["lengthscale"] + [per[k] for k in ("outputscale", "noise") if k in per]
    return float(min(vals)), per


def run_pyro(kind: str, X, Y, *, jit: bool, full_mass: bool, warmup: int, samples: int, seed: int,
             fast: bool = True) -> dict:
    pyro_model = ARDPyroModel(nu=2.5) if kind == "pyro_ard" else None
    model = SO3FullyBayesianGP(X, Y, pyro_model=pyro_model)
    t0 = time.perf_counter()
    fit_nuts(model, warmup_steps=warmup, num_samples=samples, thinning=1, seed=seed, jit_compile=jit,
             full_mass=full_mass, fast_potential=fast, progress=False)
    wall = time.perf_counter() - t0
    ess, per = _min_ess_pyro(model)
    info = model.fit_nuts_info_
    return {
        "config": f"{kind}{'' if fast or kind != 'so3' else '_pyropotential'}{'_jit' if jit else ''}"
                  f"{'' if full_mass else '_diag'}",
        "potential": info.potential,
        "evaluations": sum(info.num_evaluations),
        "ms_per_evaluation": 1e3 * wall / max(sum(info.num_evaluations), 1),
        "wall_s": wall,
        "min_ess": ess,
        "ess_per_s": ess / wall,
        "ess": per,
        "divergences": info.num_divergences,
        "rejected": sum(info.num_rejected),
        "step_size": info.step_size[0],
        "median_lengthscale": model.median_lengthscale.tolist(),
    }


_BOTORCH_SCRIPT = r"""
import json, sys, time, torch
from botorch.models.fully_bayesian import FullyBayesianSingleTaskGP
from botorch.fit import fit_fully_bayesian_model_nuts
from pyro.ops.stats import effective_sample_size
d = torch.load(sys.argv[1])
out = []
for rep in range(2):  # the first call includes JAX compilation; the second shows the warm cost
    model = FullyBayesianSingleTaskGP(d["X"], d["Y"])
    t0 = time.perf_counter()
    fit_fully_bayesian_model_nuts(model, warmup_steps=d["warmup"], num_samples=d["samples"], thinning=1,
                                  disable_progbar=True, seed=d["seed"])
    wall = time.perf_counter() - t0
    ls = model.covar_module.lengthscale.detach().squeeze(-2)  # num_samples x 3, axis-aligned (no symmetry)
    noise = model.likelihood.noise.detach().reshape(ls.shape[0], -1)[:, 0]
    per = {"lengthscale": effective_sample_size(ls.unsqueeze(0), 0, 1).tolist(),
           "noise": float(effective_sample_size(noise[None], 0, 1))}
    ess = min(per["lengthscale"] + [per["noise"]])
    out.append({"wall_s": wall, "min_ess": ess, "ess_per_s": ess / wall, "ess": per,
                "median_lengthscale": model.median_lengthscale.tolist(), "warm": rep == 1})
print("RESULT" + json.dumps(out))
"""


def run_botorch(jax_python: str, X, Y, *, warmup: int, samples: int, seed: int, x64: bool) -> list[dict] | str:
    if not Path(jax_python).exists():
        return f"no interpreter with jax/numpyro at {jax_python}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.pt"
        torch.save({"X": X, "Y": Y, "warmup": warmup, "samples": samples, "seed": seed}, data)
        script = Path(tmp) / "run.py"
        script.write_text(_BOTORCH_SCRIPT)
        env = dict(os.environ)
        env["JAX_ENABLE_X64"] = "1" if x64 else "0"
        env["JAX_PLATFORMS"] = "cpu"
        proc = subprocess.run([jax_python, str(script), str(data)], capture_output=True, text=True, env=env,
                              check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        return f"BoTorch/NumPyro run failed: {proc.stderr[-2000:]}"
    res = json.loads(lines[-1][len("RESULT"):])
    for r in res:
        r["config"] = f"botorch_ard_numpyro_{'f64' if x64 else 'f32'}{'_warm' if r['warm'] else ''}"
    return res


def speed(args) -> list[dict]:
    d = _data(100, 10, seed=args.seed)
    X, Y = d.train_X.to(torch.float64), _standardize(d.train_Y.to(torch.float64))
    rows: list[dict] = []
    kw = {"warmup": args.warmup, "samples": args.samples, "seed": args.seed}
    notes = []
    for x64 in (False, True):
        res = run_botorch(args.jax_python, X, Y, x64=x64, **kw)
        if isinstance(res, str):
            notes.append(res)
            break
        rows += res
    configs = [("so3", True, True, True), ("so3", False, True, True), ("so3", True, True, False),
               ("pyro_ard", True, True, True)]
    if args.diag:
        configs.append(("so3", True, False, True))
    for kind, jit, full, fast in configs:
        rows.append(run_pyro(kind, X, Y, jit=jit, full_mass=full, fast=fast, **kw))
    ref = next((r for r in rows if r["config"] == "botorch_ard_numpyro_f32"), None)
    ref = ref or next(r for r in rows if r["config"] == "pyro_ard_jit")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta = {"n": 100, "warmup": args.warmup, "samples": args.samples, "chains": 1, "seed": args.seed,
            "reference": ref["config"], "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "time": stamp, "notes": notes}
    for r in rows:
        r["wall_ratio_vs_ref"] = r["wall_s"] / ref["wall_s"]
        r["ess_per_s_ratio_vs_ref"] = r["ess_per_s"] / ref["ess_per_s"]
        r.update({"bench": "nuts_speed", **meta})
    return rows


def acceptance(args) -> list[dict]:
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    rows = []
    for seed in args.seeds:
        d = _data(120, 400, seed=seed, lengthscale=args.lengthscale)
        X, Y = d.train_X.to(torch.float64), d.train_Y.to(torch.float64)
        model = SO3FullyBayesianGP(X, Y, outcome_transform=Standardize(m=1))
        t0 = time.perf_counter()
        fit_nuts(model, num_chains=2, warmup_steps=args.warmup, num_samples=args.samples, thinning=16, seed=seed,
                 jit_compile=True, progress=False)
        wall = time.perf_counter() - t0
        s = summarize_posterior(model)
        true_l, true_R = so3.canonicalize(torch.as_tensor(d.lengthscale, dtype=torch.float64),
                                          torch.as_tensor(d.rotation_matrix, dtype=torch.float64))
        iv = s.interval["lengthscale"]
        inside = ((iv[0] <= true_l) & (true_l <= iv[1])).tolist()
        angles = [float(so3.angle_between_axes(s.directions[:, i], true_R[:, i])) for i in range(3)]
        with torch.no_grad():
            rmse = float((model.posterior(d.test_X.double()).mixture_mean - d.test_Y.double()).pow(2).mean().sqrt())
        ard = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(ard.likelihood, ard))
        with torch.no_grad():
            rmse_ard = float((ard.posterior(d.test_X.double()).mean - d.test_Y.double()).pow(2).mean().sqrt())
        row = {
            "bench": "nuts_acceptance", "seed": seed, "field_lengthscale": args.lengthscale, "n": 120, "chains": 2,
            "warmup": args.warmup,
            "samples": args.samples, "wall_s": wall,
            "rhat_lengthscale": s.rhat["lengthscale"].tolist(), "ess_lengthscale": s.ess["lengthscale"].tolist(),
            "true_lengthscale": true_l.tolist(), "mean_lengthscale": s.posterior_mean["lengthscale"].tolist(),
            "interval_lengthscale": iv.tolist(), "inside_90": inside, "axis_angle_deg": angles,
            "rmse_fb": rmse, "rmse_ard_map": rmse_ard, "divergences": s.num_divergences,
            "rejected": sum(s.num_rejected), "weak_pairs": s.weak_pairs, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not args.no_save:  # saved as it goes: a long run can be stopped without losing finished seeds
            _save([row])
    if rows:
        k = len(rows)
        cover = [sum(r["inside_90"][i] for r in rows) / k for i in range(3)]
        summary = {
            "bench": "nuts_acceptance_summary", "num_seeds": k, "field_lengthscale": args.lengthscale,
            "coverage_90": cover,
            "rhat_max": max(max(r["rhat_lengthscale"]) for r in rows),
            "ess_min": min(min(r["ess_lengthscale"]) for r in rows),
            "short_axis_angle_max_deg": max(r["axis_angle_deg"][0] for r in rows),
            "short_axis_angle_median_deg": sorted(r["axis_angle_deg"][0] for r in rows)[k // 2],
            "fb_better_than_ard": sum(r["rmse_fb"] < r["rmse_ard_map"] for r in rows),
            "flagged_weak": sum(bool(r["weak_pairs"]) for r in rows),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        rows.append(summary)
    return rows


def _save(rows: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="speed", choices=("speed", "acceptance"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    p.add_argument("--lengthscale", type=float, nargs=3, default=None,
                   help="field length-scales for acceptance (default: the datasets default 0.15 0.4 1.0)")
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--jax-python", default=os.environ.get("JAX_PYTHON", "/tmp/jaxvenv/bin/python"))
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--diag", action="store_true", help="speed: also run the diagonal-mass SO(3) configuration")
    args = p.parse_args(argv)
    rows = speed(args) if args.mode == "speed" else acceptance(args)
    for r in rows:
        if args.mode == "speed":
            per_eval = f"  {r['ms_per_evaluation']:.2f} ms/eval" if "ms_per_evaluation" in r else ""
            print(f"{r['config']:<28} wall {r['wall_s']:7.1f} s  min ESS {r['min_ess']:7.1f}  "
                  f"ESS/s {r['ess_per_s']:6.2f}  wall x{r['wall_ratio_vs_ref']:.2f}  "
                  f"ESS/s x{r['ess_per_s_ratio_vs_ref']:.2f}{per_eval}")
    if not args.no_save:
        _save(rows if args.mode == "speed" else rows[-1:])
    if args.mode == "acceptance" and rows:
        print(json.dumps(rows[-1]))



if __name__ == "__main__":
    main()
