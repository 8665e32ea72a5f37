"""End-to-end time of ``gpytorch-so3 demo`` (issue 13 target: <= 30 s on 2 cores), new defaults vs the old ones.

Runs ``python -m gpytorch_so3 demo`` in a fresh interpreter per configuration (so the import cost counts, as a user
sees it) and records wall time and the child's CPU time (user + system). On a shared machine the wall time is
inflated by other processes; the CPU time and the ratio between configurations measured in the same run are the
comparable figures.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_demo.py          # writes benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONFIGS = {
    "default (n=300, 2 restarts, ARD+SO(3))": [],
    "old default (n=300, 8 restarts, ARD+full SPD+SO(3))": ["--restarts", "8", "--models", "ard,spd,so3"],
}


def run(extra: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "gpytorch_so3", "demo", "--quiet", *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"demo {extra} failed with exit code {res.returncode}: {res.stderr.strip()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ratio = [line for line in res.stdout.splitlines() if line.startswith("RMSE ratio")]
    return {
        "args": extra,
        "returncode": res.returncode,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "rmse_ratio_line": ratio[0] if ratio else None,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE / "results" / "demo.json"))
    args = p.parse_args(argv)
    rows = {}
    for name, extra in CONFIGS.items():
        rows[name] = run(extra)
        print(name, json.dumps(rows[name]), flush=True)
    new, old = rows[next(iter(CONFIGS))], rows[list(CONFIGS)[1]]
    result = {
        "environment": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg": os.getloadavg(),
        },
        "runs": rows,
        "ratio_old_over_new": {
            "wall": old["wall_seconds"] / new["wall_seconds"],
            "cpu": old["cpu_seconds"] / new["cpu_seconds"],
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["ratio_old_over_new"]))


if __name__ == "__main__":
    main()
