"""Cost of ``so3.log_map``'s input validation: ``log_map(R)`` (check=True, the default) vs ``log_map(R, check=False)``.

Both run interleaved in every round on the same Haar-random rotations (batch sizes 1, 100, 10^4, 10^6; float32 and
float64); the median over rounds is reported with ``ratio = median(checked) / median(unchecked)`` from the same run,
plus ``ratio_paired`` (median of per-round ratios). Appends JSON lines to ``benchmarks/results/log_map_check.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_log_map_check.py --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gpytorch_so3 import so3


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "log_map_check.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    records = []
    for dtype in (torch.float32, torch.float64):
        for n in args.sizes:
            R = so3.random_rotation(n, generator=torch.Generator().manual_seed(0), dtype=dtype)
            checked = lambda R=R: so3.log_map(R)
            unchecked = lambda R=R: so3.log_map(R, check=False)
            for _ in range(args.warmup):
                checked(), unchecked()
            tc, tu = [], []
            for _ in range(args.repeats):
                tc.append(_time(checked))
                tu.append(_time(unchecked))
            rec = {
                **env,
                "n": n,
                "dtype": str(dtype).replace("torch.", ""),
                "median_checked_s": statistics.median(tc),
                "median_unchecked_s": statistics.median(tu),
                "ratio": statistics.median(tc) / statistics.median(tu),
                "ratio_paired": statistics.median(c / u for c, u in zip(tc, tu, strict=True)),
            }
            records.append(rec)
            print(
                f"{rec['dtype']:>8} n={n:>8}  checked {rec['median_checked_s'] * 1e3:9.3f} ms  "
                f"unchecked {rec['median_unchecked_s'] * 1e3:9.3f} ms  ratio {rec['ratio']:.2f} "
                f"(paired {rec['ratio_paired']:.2f})"
            )
    with open(args.out, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
