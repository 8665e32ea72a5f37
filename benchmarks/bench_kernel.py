"""Forward + backward time of the SO(3) kernel against gpytorch's ARD kernels on the same data.

For each size N and dtype this times ``ScaleKernel(k)(x).to_dense()`` followed by ``.sum().backward()`` (every
hyperparameter gets a gradient) for the pairs

* ``so3_rbf``       vs ``ard_rbf``      (``SO3AnisotropicKernel()`` vs ``RBFKernel(ard_num_dims=3)``),
* ``so3_matern25``  vs ``ard_matern25`` (``nu=2.5`` vs ``MaternKernel(2.5, ard_num_dims=3)``),
* ``fullspd_rbf``   vs ``ard_rbf``      (``FullSPDKernel()``),

and writes one JSON line per (candidate, N, dtype) with the median times and the ratio candidate / reference,
both measured in the same run with the repeats interleaved (so drift of the machine hits both alike).

Usage::

    python benchmarks/bench_kernel.py                          # N = 500 1000 2000 4000, float32 and float64
    python benchmarks/bench_kernel.py --sizes 2000 --repeats 15 --out /tmp/k.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import gpytorch
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel

from gpytorch_so3 import FullSPDKernel, SO3AnisotropicKernel

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "kernel.json"

# candidate -> (factory, reference name)
PAIRS = {
    "so3_rbf": (lambda: ScaleKernel(SO3AnisotropicKernel()), "ard_rbf"),
    "so3_matern25": (lambda: ScaleKernel(SO3AnisotropicKernel(nu=2.5)), "ard_matern25"),
    "fullspd_rbf": (lambda: ScaleKernel(FullSPDKernel()), "ard_rbf"),
}
REFERENCES = {
    "ard_rbf": lambda: ScaleKernel(RBFKernel(ard_num_dims=3)),
    "ard_matern25": lambda: ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=3)),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make(factory, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """A kernel with non-trivial hyperparameters (same length-scales for every kernel)."""
    k = factory().to(dtype=dtype, device=device)
    base = k.base_kernel
    if hasattr(base, "rotation"):
        base.rotation = torch.tensor([0.4, -0.3, 0.8], dtype=dtype, device=device)
    if base.has_lengthscale:
        base.lengthscale = torch.tensor([[0.2, 0.5, 1.0]], dtype=dtype, device=device)
    if hasattr(base, "cholesky_offdiag"):
        base.cholesky_diag = torch.tensor([5.0, 2.0, 1.0], dtype=dtype, device=device)
        base.initialize(cholesky_offdiag=torch.tensor([0.5, -0.2, 0.3], dtype=dtype, device=device))
    return k


def _step(kernel, x: torch.Tensor, device: torch.device) -> float:
    """One timed forward + backward; returns seconds."""
    for p in kernel.parameters():
        p.grad = None
    _sync(device)
    t0 = time.perf_counter()
    K = kernel(x).to_dense()
    K.sum().backward()
    _sync(device)
    return time.perf_counter() - t0


def bench(sizes, dtypes, repeats: int, warmup: int, device: torch.device, candidates=None, seed: int = 0) -> list[dict]:
    """Run the pairs at every size and dtype; returns one record per (candidate, N, dtype)."""
    pairs = {c: PAIRS[c] for c in (candidates or PAIRS)}
    records = []
    for dtype in dtypes:
        for n in sizes:
            g = torch.Generator().manual_seed(seed + n)
            x = torch.rand(n, 3, generator=g, dtype=dtype).to(device)
            kernels = {ref: _make(REFERENCES[ref], dtype, device) for _, ref in pairs.values()}
            kernels.update({name: _make(f, dtype, device) for name, (f, _) in pairs.items()})
            times = {name: [] for name in kernels}
            for _ in range(warmup):
                for k in kernels.values():
                    _step(k, x, device)
            for _ in range(repeats):  # interleaved: every kernel once per round
                for name, k in kernels.items():
                    times[name].append(_step(k, x, device))
            med = {name: statistics.median(t) for name, t in times.items()}
            for name, (_, ref) in pairs.items():
                records.append(
                    {
                        "kernel": name,
                        "reference": ref,
                        "n": n,
                        "dtype": str(dtype).replace("torch.", ""),
                        "device": str(device),
                        "median_s": med[name],
                        "reference_median_s": med[ref],
                        "ratio": med[name] / med[ref],
                        # Median of the per-round ratios (candidate and reference ran in the same round): less
                        # sensitive to slow drifts of the machine's load than the ratio of medians.
                        "ratio_paired": statistics.median(a / b for a, b in zip(times[name], times[ref], strict=True)),
                        "times_s": times[name],
                        "reference_times_s": times[ref],
                        "repeats": repeats,
                        "warmup": warmup,
                    }
                )
    return records


def _environment() -> dict:
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "gpytorch": gpytorch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000], help="numbers of points N")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--kernels", nargs="+", default=list(PAIRS), choices=list(PAIRS), help="candidates to time")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per size (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before timing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON-lines file to append to")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes = [getattr(torch, d) for d in args.dtypes]
    env = _environment()
    records = bench(args.sizes, dtypes, args.repeats, args.warmup, device, candidates=args.kernels)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for rec in records:
            fh.write(json.dumps({**env, **rec}) + "\n")

    print(f"torch {env['torch']}, gpytorch {env['gpytorch']}, {env['threads']} threads, device {device}")
    print(f"{'kernel':<14} {'vs':<13} {'dtype':<8} {'N':>5} {'median ms':>10} {'ref ms':>9} {'ratio':>6} {'paired':>6}")
    for r in records:
        print(
            f"{r['kernel']:<14} {r['reference']:<13} {r['dtype']:<8} {r['n']:>5} "
            f"{1e3 * r['median_s']:>10.2f} {1e3 * r['reference_median_s']:>9.2f} "
            f"{r['ratio']:>6.3f} {r['ratio_paired']:>6.3f}"
        )
    print(f"appended {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
