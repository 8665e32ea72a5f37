r"""Scalable GPs with the SO(3) kernel: SVGP (minibatch, streaming, torchrun data-parallel) and whitened-Vecchia NNGP.

Public entry points: :func:`fit_svgp` -> :class:`SVGPResult` and :func:`fit_nngp` -> :class:`NearestNeighbourGP`.
This subpackage sits above :mod:`gpytorch_so3.fit` in the import stack (it imports BoTorch through ``fit_map``);
the core modules never import it.

Recipe: from one process to several cores, GPUs and nodes with torchrun
------------------------------------------------------------------------

:func:`fit_svgp` runs unchanged under ``torchrun``: it joins the process group that torchrun describes in the
environment (gloo for CPU tensors, NCCL for CUDA), runs the initialisation (subset MAP fit, whitened k-means) on
rank 0 and broadcasts it, splits every *global* minibatch of ``batch_size`` rows across the ranks (each rank
reads only its rows; with a ``.npy`` memmap nothing else is loaded) and sums the gradients before each step, so
every step is the one-process step on the same minibatch. A script::

    # fit_big.py
    import numpy as np, torch, torch.distributed as dist
    from gpytorch_so3.scalable import fit_svgp

    X = np.load("X.npy", mmap_mode="r")  # N x 3, every rank maps the same file (shared file system or copies)
    Y = np.load("Y.npy", mmap_mode="r")  # N
    res = fit_svgp(X, Y, num_inducing=1024, batch_size=8192, max_seconds=1800)
    if res.rank == 0:  # every rank holds the same model; one writes
        mean, var = res.predict(np.load("grid.npy"), chunk_size=65536)
        torch.save({"mean": mean.cpu(), "var": var.cpu(), "model": res.model.state_dict()}, "fit.pt")
    if dist.is_initialized():
        dist.destroy_process_group()

Run it with::

    python fit_big.py                                                    # one process
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 fit_big.py             # 2 CPU processes (gloo)
    torchrun --nproc_per_node=4 fit_big.py                               # 4 GPUs: rank i uses cuda:i (NCCL)
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST0:29500 --rdzv_id=job1 fit_big.py            # on each of 2 nodes

Each rank repeats the ``M x M`` work of a step (Cholesky of ``K_zz``, the KL term), so adding processes pays
off when the per-rank share of the batch is large compared with ``M``: raise ``batch_size`` with the number of
processes (``batch_size`` is global). A ``max_seconds`` budget is agreed across ranks after every step.
"""

from gpytorch_so3.scalable._data import Standardization, read_csv
from gpytorch_so3.scalable.nngp import NearestNeighbourGP, fit_nngp, ordered_neighbours
from gpytorch_so3.scalable.svgp import SO3SVGPModel, SVGPResult, fit_svgp, optimal_variational_update

__all__ = [
    "NearestNeighbourGP",
    "SO3SVGPModel",
    "SVGPResult",
    "Standardization",
    "fit_nngp",
    "fit_svgp",
    "optimal_variational_update",
    "ordered_neighbours",
    "read_csv",
]
