"""Worker for the data-parallel test: ``fit_svgp`` on .npy data, rank 0 saves the fitted state and predictions.

Run as ``python tests/_scalable_ddp_worker.py DATA_DIR OUT`` (one process) or under
``python -m torch.distributed.run --nproc_per_node=2 ...`` (rank and world size from torchrun's environment).
"""

import sys

import numpy as np
import torch

from gpytorch_so3.scalable import fit_svgp


def fit_one(data_dir: str, variational: str) -> dict:
    """Fit on the memmapped data and return the state, predictions and losses (same code for 1 and 2 processes)."""
    X = np.load(f"{data_dir}/X.npy", mmap_mode="r")
    Y = np.load(f"{data_dir}/Y.npy", mmap_mode="r")
    Xt = np.load(f"{data_dir}/Xt.npy")
    res = fit_svgp(
        X, Y, num_inducing=24, batch_size=90, epochs=3, init_size=80, init_restarts=1, seed=3, progress=False,
        variational=variational, lr=0.02,
    )  # fmt: skip
    mean, var = res.predict(Xt)
    state = {k: v.detach().clone() for k, v in res.model.state_dict().items()}
    state.update({f"lik.{k}": v.detach().clone() for k, v in res.likelihood.state_dict().items()})
    return {
        "state": state, "mean": mean, "var": var, "world_size": res.world_size, "rank": res.rank,
        "losses": [h["loss"] for h in res.history],
    }  # fmt: skip


def main(data_dir: str, out: str) -> None:
    results = {v: fit_one(data_dir, v) for v in ("cholesky", "natural")}
    torch.save(results, f"{out}.rank{results['natural']['rank']}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
