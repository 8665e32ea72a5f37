"""KeOps benchmark of the SO(3) kernel: matvec and exact-MLL+gradient time/memory vs N, and an end-to-end fit.

Measurements (each in its own subprocess, so that peak RSS is per measurement):

* ``matvec``: time of ``kernel(x) @ v`` (kernel evaluation + product with one vector) for ``so3_keops``
  (KeOpsSO3AnisotropicKernel) and ``gpytorch_keops_rbf`` (gpytorch.kernels.keops.RBFKernel, ARD, on the same points),
  interleaved in one process (ratio = median / median, and the median of per-round ratios), and for ``so3_dense``
  (SO3AnisotropicKernel, which builds the N x N matrix; only for N <= --dense-max-matvec) in its own process.
* ``mll``: one exact marginal log likelihood + backward pass of a ScaleKernel GP with Gaussian noise, through
  gpytorch's CG / stochastic Lanczos (N >= 1000 > max_cholesky_size = 800), for the same implementations
  (gpytorch only for N <= --mll-max-gpytorch, dense only for N <= --dense-max-mll). The SO(3) rotation is 0 here
  and the probe vectors are the same, so SO(3) and RBF-ARD are the same matrix and take the same CG path: their
  time ratio is the per-product overhead of the SO(3) kernel.
* ``precision``: float32 vs float64 on the KeOps path at N = --precision-n: MLL, its gradient and the predictive
  mean (same probe vectors).
* ``e2e``: exact GP training end to end: hyper-parameters fitted on a 2,000-point subset (dense, Cholesky, Adam
  from a few random rotations), then --e2e-steps Adam steps with CG on all N points (KeOps, or with --e2e-kernel
  dense the dense N x N matrix, which is faster on a CPU while it fits in memory); held-out RMSE (against the
  noise-free field) of both models on 2,000 test points.

gpytorch's default solver settings are used in every worker (BoTorch, imported by gpytorch_so3, changes them):
max_cholesky_size 800, max_eager_kernel_size 512, and fast computations on (gpytorch_so3.large.cg_settings).

Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker (the g++ compiler of KeOps runs as a
child and is not counted), and ``torch.cuda.max_memory_allocated`` on CUDA. Times are wall clock (median of
--repeats after one warm-up that also compiles the KeOps formulas), with ``torch.cuda.synchronize()`` inside the
timed region on CUDA.

Usage::

    python benchmarks/bench_keops.py                       # CPU defaults (see --help)
    python benchmarks/bench_keops.py --device cuda --sizes 1000 10000 100000 1000000 --dense-max-matvec 20000
    python benchmarks/bench_keops.py --tasks mll --sizes 100000   # the N = 1e5 MLL + gradient memory check

Results are appended as JSON lines to benchmarks/results/keops.json (one object per measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "keops.json"

# The synthetic field: rotated anisotropic length-scales in the unit cube.
TRUE_LENGTHSCALE = (0.1, 0.2, 0.4)
TRUE_ROTATION = (0.5, -0.4, 0.8)
NOISE_STD = 0.1


# --------------------------------------------------------------------------------------------------------------
# helpers used inside workers
# --------------------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KB on Linux


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _field(n, *, seed, dtype, device, num_features=1024, chunk=16384):
    """Points in the unit cube and a random-Fourier-feature sample of the rotated RBF field (+ noise).

    Built in chunks so that generating 1e5+ points needs O(N + F) memory, not O(N F).
    """
    import torch

    from gpytorch_so3 import functional as F
    from gpytorch_so3 import so3

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    R = so3.exp_map(torch.tensor(TRUE_ROTATION, dtype=torch.float64))
    A = F.so3_whitening_matrix(torch.tensor(TRUE_LENGTHSCALE, dtype=torch.float64), R)
    fgen = torch.Generator(device="cpu").manual_seed(12345)  # the same field for every n and seed
    W = torch.randn(3, num_features, generator=fgen, dtype=torch.float64)
    b = 2 * math.pi * torch.rand(num_features, generator=fgen, dtype=torch.float64)
    a = torch.randn(num_features, generator=fgen, dtype=torch.float64)
    f = torch.cat([torch.cos(F.whiten(xc, A) @ W + b) @ a for xc in x.split(chunk)]) * math.sqrt(2.0 / num_features)
    y = f + NOISE_STD * torch.randn(n, generator=gen, dtype=torch.float64)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype), f.to(device=device, dtype=dtype)


def _make_kernel(impl, nu, dtype, device, rotation):
    import gpytorch
    import torch

    from gpytorch_so3 import SO3AnisotropicKernel
    from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel

    if impl == "so3_keops":
        k = KeOpsSO3AnisotropicKernel(nu=nu, use_keops=True)
    elif impl == "so3_dense":
        k = SO3AnisotropicKernel(nu=nu)
    elif impl == "gpytorch_keops_rbf":
        if nu is not None:
            k = gpytorch.kernels.keops.MaternKernel(nu=nu, ard_num_dims=3)
        else:
            k = gpytorch.kernels.keops.RBFKernel(ard_num_dims=3)
    else:
        raise ValueError(impl)
    k = k.to(device=device, dtype=dtype)
    k.lengthscale = torch.tensor([TRUE_LENGTHSCALE], dtype=dtype, device=device)
    if impl.startswith("so3"):
        k.rotation = torch.tensor(rotation, dtype=dtype, device=device)
    return k


def _make_gp(x, y, kernel):
    import gpytorch

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(kernel)

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))

    model = GP().to(device=x.device, dtype=x.dtype)
    model.likelihood.noise = NOISE_STD**2
    return model


def _solver_settings(cg_tolerance=1.0, max_cg_iterations=1000):
    """gpytorch's default solver settings: CG / Lanczos for N > max_cholesky_size = 800.

    ``cg_settings`` switches gpytorch's fast computations back on (``import botorch`` turns them off) and keeps
    gpytorch's other defaults; max_cholesky_size stays 800 (not 0) because gpytorch's own KeOps kernels send
    every block with >= max_cholesky_size rows to KeOps, single rows and 1 x 1 diagonal blocks included.
    """
    from contextlib import ExitStack

    import gpytorch

    from gpytorch_so3.large import cg_settings

    stack = ExitStack()
    stack.enter_context(
        cg_settings(max_cholesky_size=800, cg_tolerance=cg_tolerance, max_cg_iterations=max_cg_iterations)
    )
    # Lanczos quadrature (log-determinant) reads its tridiagonal matrix off the CG run: at most that many steps.
    lanczos = min(gpytorch.settings.max_lanczos_quadrature_iterations.value(), max_cg_iterations)
    stack.enter_context(gpytorch.settings.max_lanczos_quadrature_iterations(lanczos))
    return stack


# --------------------------------------------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------------------------------------------
def _interleaved(fns, repeats, device):
    """Warm-up each fn once, then `repeats` rounds calling every fn once (load changes hit all alike)."""
    warm = {k: _timed(f, device)[0] for k, f in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(_timed(f, device)[0])
    return warm, times


def _median(xs):
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def work_matvec(spec, device, dtype):
    """``kernel(x) @ v`` for one or more implementations, interleaved."""
    import torch

    n = spec["n"]
    x, _, _ = _field(n, seed=0, dtype=dtype, device=device)
    v = torch.randn(n, 1, dtype=dtype, device=device)
    kernels = {impl: _make_kernel(impl, spec["nu"], dtype, device, rotation=TRUE_ROTATION) for impl in spec["impls"]}
    base = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # evaluation + product, as in every CG iteration with KeOps (the operator is rebuilt from the parameters)
    fns = {impl: (lambda k=k: k(x) @ v) for impl, k in kernels.items()}
    with torch.no_grad():
        warm, times = _interleaved(fns, spec["repeats"], device)  # warm-up compiles KeOps on a cold cache
    res = {"baseline_rss_mb": base, "warmup_s": warm, "times_s": times}
    res["time_s"] = {k: _median(t) for k, t in times.items()}
    _add_ratio(res, times)
    return res


def _add_ratio(res, times):
    if "so3_keops" in times and "gpytorch_keops_rbf" in times:
        a, b = times["so3_keops"], times["gpytorch_keops_rbf"]
        res["so3_over_gpytorch"] = _median(a) / _median(b)
        res["so3_over_gpytorch_paired"] = _median([x / y for x, y in zip(a, b, strict=True)])


def _mll_and_grad(x, y, kernel):
    import gpytorch
    import torch

    model = _make_gp(x, y, kernel)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    model.zero_grad()
    loss = -mll(model(x), y)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads


def work_mll(spec, device, dtype):
    """One exact MLL + backward per implementation (interleaved rounds, same probe vectors)."""
    import torch

    n = spec["n"]
    x, y, _ = _field(n, seed=0, dtype=dtype, device=device)
    kernels = {impl: _make_kernel(impl, spec["nu"], dtype, device, rotation=(0.0, 0.0, 0.0)) for impl in spec["impls"]}
    base = _rss_mb()
    out = {}

    def run(k, xs, ys):
        torch.manual_seed(1)  # same probe vectors for every implementation
        out["last"] = _mll_and_grad(xs, ys, k)

    with _solver_settings(max_cg_iterations=spec.get("max_cg_iterations") or 1000):
        if any(impl != "so3_dense" for impl in kernels):
            # Warm-up on <= 2,000 points compiles the same KeOps formulas (they depend on the number of right-hand
            # sides, not on N; N = 2000 = min_preconditioning_size also builds the preconditioner).
            m = min(n, 2000)
            for impl, k in kernels.items():
                if impl != "so3_dense":
                    run(k, x[:m], y[:m])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = {impl: [] for impl in kernels}
        losses = {}
        for _ in range(spec["repeats"]):
            for impl, k in kernels.items():
                t, _ = _timed(lambda k=k: run(k, x, y), device)
                times[impl].append(t)
                losses[impl] = -out["last"][0]
    res = {
        "baseline_rss_mb": base,
        "times_s": times,
        "time_s": {k: _median(t) for k, t in times.items()},
        "mll_per_point": losses,  # gpytorch's ExactMarginalLogLikelihood is divided by N
    }
    _add_ratio(res, times)
    return res


def _randn_via_float64():
    """Context in which torch.randn draws in float64 and casts, so both dtypes see the same random numbers.

    torch's float32 and float64 normal generators give different numbers for the same seed (beyond a few values),
    so without this the float32-vs-float64 comparison would measure the variance of the stochastic log-determinant
    (different probe vectors), not rounding.
    """
    from contextlib import contextmanager

    import torch

    @contextmanager
    def ctx():
        orig = torch.randn

        def randn(*size, dtype=None, device=None, **kwargs):
            out = orig(*size, dtype=torch.float64, device=device, **kwargs)
            return out.to(dtype or torch.get_default_dtype())

        torch.randn = randn
        try:
            yield
        finally:
            torch.randn = orig

    return ctx()


def work_precision(spec, device, dtype_unused):
    """float32 vs float64 on the KeOps path, next to the effect of the CG tolerance itself."""
    import torch

    from gpytorch_so3.large import predict_in_chunks

    n = spec["n"]
    out = {}
    runs = (("f64", torch.float64, 1.0), ("f32", torch.float32, 1.0), ("f64_tol0.01", torch.float64, 0.01))
    for name, dt, tol in runs:
        x, y, _ = _field(n, seed=0, dtype=dt, device=device)
        xt, _, _ = _field(1000, seed=7, dtype=dt, device=device)
        kernel = _make_kernel("so3_keops", spec["nu"], dt, device, rotation=TRUE_ROTATION)
        with _solver_settings(cg_tolerance=tol), _randn_via_float64():
            torch.manual_seed(1)
            loss, grads = _mll_and_grad(x, y, kernel)
            mean = None
            if tol == 1.0:  # predictions use gpytorch's eval_cg_tolerance (0.01) in any case
                mean, _ = predict_in_chunks(_make_gp(x, y, kernel), xt, chunk_size=1000, return_variance=False)
        out[name] = (loss, grads.double().cpu(), None if mean is None else mean.double().cpu())

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    (l64, g64, m64), (l32, g32, m32), (lt, gt, _) = out["f64"], out["f32"], out["f64_tol0.01"]
    return {
        # gpytorch's ExactMarginalLogLikelihood is already divided by N
        "mll_per_point_f64": -l64,
        "mll_per_point_f32": -l32,
        "mll_per_point_f64_cg_tol_0.01": -lt,
        "mll_abs_diff_f32_vs_f64": abs(l32 - l64),
        "mll_abs_diff_cg_tol_1_vs_0.01": abs(l64 - lt),
        "grad_rel_diff_f32_vs_f64": rel(g32, g64),
        "grad_rel_diff_cg_tol_1_vs_0.01": rel(g64, gt),
        "pred_mean_max_abs_diff_f32_vs_f64": float((m32 - m64).abs().max()),
        "pred_mean_rms": float(m64.pow(2).mean().sqrt()),
    }


def work_e2e(spec, device, dtype):
    import gpytorch
    import torch

    from gpytorch_so3 import SO3AnisotropicKernel, so3
    from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel
    from gpytorch_so3.large import cg_settings, predict_in_chunks

    n, subset, steps = spec["n"], spec["subset"], spec["steps"]
    x, y, _ = _field(n, seed=0, dtype=dtype, device=device)
    xt, _, ft = _field(spec["n_test"], seed=7, dtype=dtype, device=device)
    base = _rss_mb()

    # 1) the subset fit: dense kernel, exact (Cholesky) Adam from a few Haar-random rotations, best loss kept
    t0 = time.perf_counter()
    xs, ys = x[:subset], y[:subset]
    best = None
    rotations = so3.log_map(so3.random_rotation(spec["subset_restarts"], generator=torch.Generator().manual_seed(0)))
    for w in rotations:
        sub = _make_gp(xs, ys, SO3AnisotropicKernel(nu=spec["nu"]))
        sub.covar_module.base_kernel.rotation = w.to(device=device, dtype=dtype)
        sub.covar_module.base_kernel.lengthscale = torch.full((1, 3), 0.3, dtype=dtype, device=device)
        sub.likelihood.noise = 0.1
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(sub.likelihood, sub)
        opt = torch.optim.Adam(sub.parameters(), lr=0.05)
        sub.train()
        with gpytorch.settings.fast_computations(False, False, False):
            for _ in range(spec["subset_steps"]):
                loss = _step(sub, mll, opt, xs, ys)
        if best is None or loss < best[0]:
            best = (loss, sub)
    sub = best[1]
    _sync(device)
    t_sub = time.perf_counter() - t0
    mean_sub, _ = predict_in_chunks(sub, xt, return_variance=False, iterative=False)  # Cholesky, exact
    rmse_sub = float((mean_sub - ft).pow(2).mean().sqrt())

    # 2) the full fit: KeOps (or dense, --e2e-kernel) kernel started at the subset's hyper-parameters, Adam steps
    #    with CG
    if spec.get("kernel", "keops") == "keops":
        full_kernel = KeOpsSO3AnisotropicKernel(nu=spec["nu"])
    else:  # the dense N x N matrix, CG on it: faster than KeOps on a CPU while it fits in memory
        full_kernel = SO3AnisotropicKernel(nu=spec["nu"])
    full = _make_gp(x, y, full_kernel)
    full.load_state_dict(sub.state_dict(), strict=False)  # same parameter names; train data are not in the dict
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(full.likelihood, full)
    opt = torch.optim.Adam(full.parameters(), lr=0.02)
    full.train()
    # Same data split and same start: the difference between the two RMSEs is what the extra data buys.
    with cg_settings():
        mean0, _ = predict_in_chunks(full, xt, return_variance=False)  # subset hyper-parameters, all data
        rmse_full_start = float((mean0 - ft).pow(2).mean().sqrt())
        full.train()
        step_times = []
        for _ in range(steps):
            t, _ = _timed(lambda: _step(full, mll, opt, x, y), device)
            step_times.append(t)
        t_pred, (mean_full, _) = _timed(lambda: predict_in_chunks(full, xt, return_variance=False), device)
    rmse_full = float((mean_full - ft).pow(2).mean().sqrt())
    kern = full.covar_module.base_kernel
    return {
        "subset": subset,
        "subset_restarts": spec["subset_restarts"],
        "subset_steps": spec["subset_steps"],
        "subset_fit_s": t_sub,
        "rmse_subset": rmse_sub,
        "rmse_full_at_subset_hypers": rmse_full_start,
        "rmse_full": rmse_full,
        "noise_std": NOISE_STD,
        "steps": steps,
        "step_times_s": step_times,
        "train_s": sum(step_times),
        "predict_s": t_pred,
        "n_test": spec["n_test"],
        "fitted_lengthscale": kern.lengthscale.detach().cpu().reshape(-1).tolist(),
        "fitted_rotation": kern.rotation.detach().cpu().reshape(-1).tolist(),
        "baseline_rss_mb": base,
    }


def _step(model, mll, opt, x, y):
    opt.zero_grad()
    loss = -mll(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


WORKERS = {"matvec": work_matvec, "mll": work_mll, "precision": work_precision, "e2e": work_e2e}


def run_worker(spec_json: str, result_path: str) -> None:
    import gpytorch
    import pykeops
    import torch

    import gpytorch_so3  # noqa: F401 - imports botorch, which changes gpytorch's global defaults; undone below

    spec = json.loads(spec_json)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    dtype = None if spec["dtype"] == "both" else getattr(torch, spec["dtype"])
    t0 = time.perf_counter()
    # gpytorch's defaults: `import botorch` (done by gpytorch_so3) raises max_cholesky_size and
    # max_eager_kernel_size to 4096, which would keep gpytorch's KeOps kernels dense below 4096 points.
    with gpytorch.settings.max_cholesky_size(800), gpytorch.settings.max_eager_kernel_size(512):
        res = WORKERS[spec["task"]](spec, device, dtype)
    res.update(spec)
    res.update(
        {
            "bench": "keops",
            "wall_s": time.perf_counter() - t0,
            "peak_rss_mb": _peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpytorch": gpytorch.__version__,
            "pykeops": pykeops.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_1min_at_end": os.getloadavg()[0],
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    if device.type == "cuda":
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        res["cuda_device"] = torch.cuda.get_device_name(device)
    Path(result_path).write_text(json.dumps(res))


# --------------------------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------------------------
def _run(spec, out_path, timeout):
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        path = tmp.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), "--result", path]
    label = " ".join(f"{k}={spec[k]}" for k in ("task", "impls", "n", "dtype") if k in spec)
    print(f"[bench_keops] {label} ...", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        text = Path(path).read_text() if proc.returncode == 0 else ""
    except subprocess.TimeoutExpired:
        proc, text = None, ""
    finally:
        Path(path).unlink(missing_ok=True)
    if not text:
        err = "timeout" if proc is None else proc.stderr.strip().splitlines()[-5:]
        res = dict(spec, bench="keops", error=err)
    else:
        res = json.loads(text)
    with open(out_path, "a") as f:
        f.write(json.dumps(res) + "\n")
    keys = ("time_s", "so3_over_gpytorch", "peak_rss_mb", "rmse_full", "rmse_subset", "grad_rel_diff_f32_vs_f64")
    keys = (*keys, "error")
    summary = {k: res[k] for k in keys if k in res}
    print(f"[bench_keops]   -> {summary}", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--nu", type=float, default=None, help="Matern smoothness (default: RBF)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    p.add_argument("--tasks", nargs="+", default=["matvec", "mll", "precision", "e2e"], choices=sorted(WORKERS))
    p.add_argument("--dense-max-matvec", type=int, default=20000, help="largest N for the dense matvec")
    p.add_argument("--dense-max-mll", type=int, default=10000, help="largest N for the dense MLL + gradient")
    p.add_argument("--mll-max-gpytorch", type=int, default=10000, help="largest N for gpytorch's KeOps MLL")
    p.add_argument("--mll-sizes", type=int, nargs="+", default=None, help="sizes for mll (default: --sizes)")
    p.add_argument(
        "--mll-max-cg-iterations",
        type=int,
        default=None,
        help="cap on CG iterations in the mll task (default gpytorch's 1000; memory does not depend on it, time does)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (1 for N >= 50000)")
    p.add_argument("--precision-n", type=int, default=5000)
    p.add_argument("--e2e-sizes", type=int, nargs="+", default=[20000])
    p.add_argument("--e2e-steps", type=int, default=5)
    p.add_argument(
        "--e2e-kernel",
        default="keops",
        choices=["keops", "dense"],
        help="kernel of the full-data fit: KeOps (O(N) memory) or dense (N x N matrix; CPU-friendly up to ~3e4)",
    )
    p.add_argument("--e2e-subset", type=int, default=2000)
    p.add_argument("--e2e-subset-restarts", type=int, default=3, help="random starting rotations of the subset fit")
    p.add_argument("--e2e-subset-steps", type=int, default=150, help="Adam steps per start of the subset fit")
    p.add_argument("--threads", type=int, default=None, help="torch threads in workers (default: torch's)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.result)
        return
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda requested but CUDA is not available")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    common = {"device": args.device, "dtype": args.dtype, "nu": args.nu, "threads": args.threads}
    rows = []
    if "matvec" in args.tasks:
        for n in sorted(args.sizes):
            reps = args.repeats if n < 50000 else 1
            pair = ["so3_keops", "gpytorch_keops_rbf"]
            rows.append(_run(dict(common, task="matvec", impls=pair, n=n, repeats=reps), out, args.timeout))
            if n <= args.dense_max_matvec:
                spec = dict(common, task="matvec", impls=["so3_dense"], n=n, repeats=reps)
                rows.append(_run(spec, out, args.timeout))
    if "mll" in args.tasks:
        for n in sorted(args.mll_sizes or args.sizes):
            reps = args.repeats if n <= 10000 else 1
            impls = ["so3_keops", "gpytorch_keops_rbf"] if n <= args.mll_max_gpytorch else ["so3_keops"]
            cap = args.mll_max_cg_iterations
            spec = dict(common, task="mll", impls=impls, n=n, repeats=reps, max_cg_iterations=cap)
            rows.append(_run(spec, out, args.timeout))
            if n <= args.dense_max_mll:
                rows.append(_run(dict(common, task="mll", impls=["so3_dense"], n=n, repeats=reps), out, args.timeout))
    if "precision" in args.tasks:
        rows.append(_run(dict(common, task="precision", n=args.precision_n, dtype="both"), out, args.timeout))
    if "e2e" in args.tasks:
        for n in args.e2e_sizes:
            spec = dict(
                common,
                task="e2e",
                n=n,
                steps=args.e2e_steps,
                subset=args.e2e_subset,
                subset_restarts=args.e2e_subset_restarts,
                subset_steps=args.e2e_subset_steps,
                n_test=2000,
                kernel=args.e2e_kernel,
            )
            rows.append(_run(spec, out, args.timeout))
    _print_table(rows)


def _print_table(rows):
    print("\n task    N        implementation        time [s]   peak RSS [MB]  SO3/gpytorch (paired)")
    for r in rows:
        if r.get("task") not in ("matvec", "mll") or "time_s" not in r:
            continue
        for impl, t in r["time_s"].items():
            ratio = ""
            if impl == "so3_keops" and "so3_over_gpytorch" in r:
                ratio = f"{r['so3_over_gpytorch']:.3f} ({r['so3_over_gpytorch_paired']:.3f})"
            print(f" {r['task']:7s} {r['n']:<8d} {impl:21s} {t:9.3f}   {r['peak_rss_mb']:12.0f}   {ratio}")


if __name__ == "__main__":
    main()
