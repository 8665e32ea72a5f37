r"""Pyro NUTS for the fully Bayesian models: chains in parallel, seeding, thinning, bad proposals.

:func:`fit_nuts` runs Pyro's No-U-Turn sampler (``pyro.infer.mcmc.NUTS``) on the Pyro model of an
:class:`~gpytorch_so3.SO3FullyBayesianGP` or a :class:`~gpytorch_so3.fully_bayesian.RotatedFullyBayesianGP` (``d``
inputs), each chain from its own Haar-random initial rotation in SO(d) and with its own seed, and loads the thinned
draws into the model. Its arguments follow BoTorch's
``fit_fully_bayesian_model_nuts`` where they overlap (``max_tree_depth``, ``warmup_steps``, ``num_samples``,
``thinning``, ``disable_progbar``, ``jit_compile``, ``seed``), with the package's extras on top (chains, workers,
initialisation, potential).

**Parallel chains.** Pyro's own multi-chain ``MCMC`` uses ``cpu_count() - 1`` processes and runs the chains one
after another on a 2-core machine. :func:`fit_nuts` instead runs each chain in a worker process of a ``spawn``
pool (one single-chain NUTS per worker, one torch thread per worker), so ``C`` chains on ``C`` free cores take
about the wall time of one, plus a few seconds to start the workers (each imports the package). On a busy shared
machine the operating system may give all processes of a session one share of the CPUs (Linux autogroup
scheduling), and parallel chains then gain little; ``model.fit_nuts_info_.cpu_time`` shows the CPU seconds per
chain. A chain's result does not depend on where it runs: chain ``c`` gets the same seed, the same initial values
and the same computations in a worker as in the calling process, so its draws are identical.

**Rejected proposals.** A leapfrog step into a region where the kernel matrix is numerically not positive
definite (or NaN) makes the Cholesky factorisation raise. For the duration of :func:`fit_nuts` only (see
:func:`rejecting_numerical_failures`), an exception handler in Pyro's integrator registry turns exceptions of the
types in :data:`NUMERICAL_FAILURES` into a NaN potential energy, which NUTS treats as a divergence and rejects;
other exceptions propagate. These rejected evaluations and NUTS' divergent transitions are recorded per chain in
``model.fit_nuts_info_``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from linear_operator.utils.errors import NanError, NotPSDError
from pyro.infer.mcmc import MCMC, NUTS
from pyro.infer.mcmc.util import initialize_model
from pyro.ops import integrator
from torch import Tensor
from tqdm.auto import tqdm

from gpytorch_so3 import so3, sod
from gpytorch_so3._validation import check_int
from gpytorch_so3.fully_bayesian import RotatedFullyBayesianGP, RotatedPyroModel

__all__ = [
    "EXCEPTION_HANDLER_NAME",
    "MIN_TRAINING_POINTS",
    "NUMERICAL_FAILURES",
    "NutsInfo",
    "divergence_advice",
    "fit_nuts",
    "initial_lengthscale_factors",
    "is_numerical_failure",
    "rejecting_numerical_failures",
]

#: Name under which :func:`rejecting_numerical_failures` registers its handler in Pyro's integrator registry.
EXCEPTION_HANDLER_NAME = "gpytorch_so3_numerical_failure"

#: Exception types that mark a proposal as numerically infeasible (rejected as a divergence, not raised):
#: ``torch.linalg.LinAlgError`` (what ``torch.linalg.cholesky`` raises for a matrix that is not positive definite
#: *or* contains NaN, in the analytic and the generic potential, eager or ``torch.compile``-d) and
#: linear_operator's ``NotPSDError`` / ``NanError`` (gpytorch's Cholesky with jitter, e.g. in custom programs).
NUMERICAL_FAILURES: tuple[type[BaseException], ...] = (torch.linalg.LinAlgError, NotPSDError, NanError)

#: Fewest training points :func:`fit_nuts` accepts: with one point the outcome's scale (and the standardisation
#: the priors assume) is undefined, and Pyro fails deep inside with a support error.
MIN_TRAINING_POINTS = 2

#: Initial principal length-scales of a chain as multiples of the inputs' RMS spread: unequal (with three
#: equal length-scales the rotation has zero gradient), spanning the usual range of a field on the unit cube.
#: In ``d != 3`` dimensions: ``d`` factors spaced geometrically over that range (:func:`initial_lengthscale_factors`).
INITIAL_LENGTHSCALE_FACTORS = (0.5, 1.0, 2.0)

#: Largest ``d`` for which the start's frame is chosen by enumerating all ``2^(d-1) d!`` signed permutations
#: (192 for ``d = 4``); above it, by an assignment problem (:func:`_interior_representative`).
MAX_ENUMERATED_DIM = 4


def initial_lengthscale_factors(dim: int) -> tuple[float, ...]:
    """Initial principal length-scales of a chain in ``dim`` dimensions, as multiples of the inputs' RMS spread.

    :data:`INITIAL_LENGTHSCALE_FACTORS` for ``dim = 3``; otherwise ``dim`` values from 0.5 to 2 spaced geometrically
    (all unequal: with equal length-scales the rotation has zero gradient).

    Example:
        >>> initial_lengthscale_factors(3), initial_lengthscale_factors(2)
        ((0.5, 1.0, 2.0), (0.5, 2.0))
        >>> [round(f, 3) for f in initial_lengthscale_factors(5)]
        [0.5, 0.707, 1.0, 1.414, 2.0]
    """
    dim = check_int("dim", dim, 2, where="initial_lengthscale_factors: ")
    if dim == 3:
        return INITIAL_LENGTHSCALE_FACTORS
    return tuple(0.5 * 4.0 ** (i / (dim - 1)) for i in range(dim))


def is_numerical_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a numerical failure of the kernel matrix that NUTS should reject rather than raise.

    True exactly for instances of :data:`NUMERICAL_FAILURES` (types, not message text).

    Args:
        exc: the exception raised while evaluating the potential energy.

    Example:
        >>> try:
        ...     torch.linalg.cholesky(-torch.eye(2))
        ... except Exception as e:
        ...     print(is_numerical_failure(e))
        True
        >>> is_numerical_failure(RuntimeError("nan in cholesky"))  # message text does not count
        False
    """
    return isinstance(exc, NUMERICAL_FAILURES)


@contextlib.contextmanager
def rejecting_numerical_failures() -> Iterator[None]:
    """Within the block, Pyro's integrator rejects potential evaluations that raise :data:`NUMERICAL_FAILURES`.

    Registers :func:`is_numerical_failure` under :data:`EXCEPTION_HANDLER_NAME` with
    ``pyro.ops.integrator.register_exception_handler`` and restores the registry on exit (also on exceptions):
    Pyro has no public way to unregister, so the entry is removed from (or restored in) the registry dict
    ``pyro.ops.integrator._EXCEPTION_HANDLERS`` that ``register_exception_handler`` writes. Outside the block
    (e.g. after ``import gpytorch_so3``) other Pyro models in the process are unaffected.

    Example:
        >>> from pyro.ops.integrator import _EXCEPTION_HANDLERS
        >>> with rejecting_numerical_failures():
        ...     EXCEPTION_HANDLER_NAME in _EXCEPTION_HANDLERS
        True
        >>> EXCEPTION_HANDLER_NAME in _EXCEPTION_HANDLERS
        False
    """
    registry = integrator._EXCEPTION_HANDLERS
    had, previous = EXCEPTION_HANDLER_NAME in registry, registry.get(EXCEPTION_HANDLER_NAME)
    integrator.register_exception_handler(EXCEPTION_HANDLER_NAME, is_numerical_failure, warn_on_overwrite=False)
    try:
        yield
    finally:
        if had:
            registry[EXCEPTION_HANDLER_NAME] = previous
        else:
            registry.pop(EXCEPTION_HANDLER_NAME, None)


def divergence_advice(num_divergences: int, num_draws: int) -> str:
    """What divergent NUTS transitions mean and what to change (empty string if there are none).

    Args:
        num_divergences: divergent post-warm-up transitions (all chains).
        num_draws: post-warm-up draws (all chains).

    Example:
        >>> divergence_advice(0, 512)
        ''
        >>> text = divergence_advice(16, 512)
        >>> text.split(":")[0]
        '16 of 512 post-warm-up transitions (3.1%) diverged'
        >>> "target_accept_prob" in text and "warmup_steps" in text
        True
    """
    if num_divergences <= 0:
        return ""
    share = 100.0 * num_divergences / max(num_draws, 1)
    return (
        f"{num_divergences} of {num_draws} post-warm-up transitions ({share:.1f}%) diverged: NUTS trajectories ran "
        "into regions where the posterior curves too sharply for the step size (e.g. tiny noise or length-scales), "
        "so the draws may miss part of the posterior.\n"
        "To fix: raise target_accept_prob (e.g. 0.9 or 0.95), use more warmup_steps, and rescale all input "
        "coordinates by one common factor so that the length-scales are of order one (e.g. IsotropicNormalize), "
        "with standardised outcomes.\n"
        "A handful among hundreds of draws is usually harmless if R-hat < 1.05 and the ESS is adequate."
    )


@dataclass
class NutsInfo:
    """Bookkeeping of a :func:`fit_nuts` run, stored on the model as ``model.fit_nuts_info_``.

    Attributes:
        samples: name -> ``num_chains x num_samples x ...``: every post-warm-up draw of every chain (not thinned),
            in the sampler's dtype, chain identity kept (for R-hat/ESS).
        divergences: per chain, the post-warm-up iterations whose trajectory diverged.
        num_rejected: per chain, potential evaluations rejected because the kernel matrix was not positive
            definite or NaN (warm-up included).
        step_size: per chain, the adapted step size.
        accept_prob: per chain, the mean acceptance probability after warm-up.
        wall_time: per chain, seconds spent sampling that chain (in its worker if parallel).
        initial_rotation: ``num_chains x d (d - 1) / 2`` initial so(d) coordinates (``d = 3``: axis-angle vectors;
            Haar-random unless another init strategy was given).
        warmup_steps, num_samples, thinning, seed, max_tree_depth, full_mass, jit_compile, dtype: the settings.
        chain_seeds: per chain, the seed of its random streams (derived from ``seed``).
        potential: which potential energy was used: ``"analytic"`` (:meth:`RotatedPyroModel.make_potential_fn`) or
            ``"pyro"`` (Pyro's generic potential of the model's ``sample``), with suffix ``"_compiled"`` under
            ``jit_compile`` (``torch.compile``).
        num_evaluations: per chain, potential-energy (+ gradient) evaluations, warm-up included (the cost unit of
            NUTS: wall time / evaluations is the cost of one leapfrog step).
        num_workers: worker processes that ran the chains (``1``: in the calling process, one after another).
        elapsed: seconds for the whole call (with parallel chains less than the sum of :attr:`wall_time`).
        cpu_time: per chain, CPU seconds of its process while sampling it (on a busy machine ``wall_time`` can
            exceed it by far; with parallel chains on free cores ``elapsed`` approaches ``max(cpu_time)``).

    Example:
        >>> from gpytorch_so3 import SO3FullyBayesianGP, fit_nuts
        >>> X = torch.rand(12, 3, dtype=torch.float64); Y = torch.randn(12, 1, dtype=torch.float64)
        >>> Y = (Y - Y.mean()) / Y.std()  # the priors assume standardised outcomes
        >>> model = fit_nuts(SO3FullyBayesianGP(X, Y), warmup_steps=4, num_samples=4, thinning=2,
        ...                  max_tree_depth=2, disable_progbar=True)  # toy budget
        >>> info = model.fit_nuts_info_
        >>> info.num_chains, info.num_samples, sorted(info.samples)
        (1, 4, ['lengthscale', 'mean', 'noise', 'outputscale', 'rotation'])
        >>> info.num_divergences == sum(len(d) for d in info.divergences), info.total_wall_time > 0
        (True, True)
    """

    samples: dict[str, Tensor]
    divergences: list[list[int]]
    num_rejected: list[int]
    step_size: list[float]
    accept_prob: list[float]
    wall_time: list[float]
    initial_rotation: Tensor | None
    warmup_steps: int
    num_samples: int
    thinning: int
    seed: int
    max_tree_depth: int
    full_mass: bool
    jit_compile: bool
    dtype: torch.dtype
    extra: dict = field(default_factory=dict)
    potential: str = "pyro"
    num_evaluations: list[int] = field(default_factory=list)
    chain_seeds: list[int] = field(default_factory=list)
    num_workers: int = 1
    elapsed: float = math.nan
    cpu_time: list[float] = field(default_factory=list)

    @property
    def num_chains(self) -> int:
        """Number of chains."""
        return len(self.divergences)

    @property
    def num_divergences(self) -> int:
        """Total number of divergent post-warm-up transitions over all chains."""
        return sum(len(d) for d in self.divergences)

    @property
    def total_wall_time(self) -> float:
        """Seconds of sampling summed over chains (the cost; :attr:`elapsed` is the wall time of the call)."""
        return float(sum(self.wall_time))


# -- one chain ------------------------------------------------------------------------------------------------
@dataclass
class _ChainTask:
    """Everything one chain needs; picklable, so that it runs the same in a worker process as in the caller."""

    pyro_model: RotatedPyroModel
    chain: int
    seed: int
    init: dict[str, Tensor] | str | Callable
    num_samples: int
    warmup_steps: int
    max_tree_depth: int
    full_mass: bool
    target_accept_prob: float
    analytic: bool
    compile: bool


@dataclass
class _ChainResult:
    samples: dict[str, Tensor]
    divergences: list[int]
    accept_prob: float
    step_size: float
    num_rejected: int
    num_evaluations: int
    wall_time: float
    initial_rotation: Tensor | None
    cpu_time: float = math.nan


def _run_chain(task: _ChainTask, report: Callable[[int, int], None] | None = None) -> _ChainResult:
    """One single-chain NUTS run; ``report(chain, iterations_done)`` is called as it goes (if given)."""
    t0, c0 = time.perf_counter(), time.process_time()
    pm = task.pyro_model
    pyro.set_rng_seed(task.seed)
    if isinstance(task.init, dict):
        strategy = pyro.infer.autoguide.init_to_value(values=task.init)
    elif task.init == "prior":
        strategy = pyro.infer.autoguide.init_to_sample
    else:
        strategy = task.init
    with rejecting_numerical_failures():
        init_params, potential_fn, transforms, _ = initialize_model(pm.sample, init_strategy=strategy)
        if task.analytic:
            potential_fn = pm.make_potential_fn(transforms)
        if task.compile:
            potential_fn = torch.compile(potential_fn, dynamic=False)
        counter = [0, 0]  # rejected (non-PSD/NaN) evaluations, all evaluations

        def counted_potential(z, _pe=potential_fn, _counter=counter):
            _counter[1] += 1
            try:
                return _pe(z)
            except NUMERICAL_FAILURES:
                _counter[0] += 1
                raise

        kernel = NUTS(
            potential_fn=counted_potential,
            transforms=transforms,
            max_tree_depth=task.max_tree_depth,
            full_mass=task.full_mass,
            target_accept_prob=task.target_accept_prob,
            adapt_step_size=True,
            adapt_mass_matrix=True,
        )
        hook = None
        if report is not None:

            def hook(_kernel, _samples, stage, i, _chain=task.chain, _warmup=task.warmup_steps):
                # Pyro's stages are "Warmup" and "Sample" (with " [chain]" in multi-chain MCMC).
                report(_chain, i + 1 + (0 if str(stage).startswith("Warmup") else _warmup))

        mcmc = MCMC(
            kernel,
            num_samples=task.num_samples,
            warmup_steps=task.warmup_steps,
            initial_params=init_params,
            transforms=transforms,
            disable_progbar=True,
            hook_fn=hook,
        )
        init_rot = None
        if "rotation" in init_params:
            init_rot = transforms["rotation"].inv(init_params["rotation"]).detach().reshape(-1)
        mcmc.run()
    samples = mcmc.get_samples(group_by_chain=True)
    diag = mcmc.diagnostics()
    return _ChainResult(
        samples={k: v[0].detach() for k, v in pm.postprocess_mcmc_samples(samples).items()},
        divergences=[int(i) for i in diag.get("divergences", {}).get("chain 0", [])],
        accept_prob=float(diag.get("acceptance rate", {}).get("chain 0", math.nan)),
        step_size=float(kernel.step_size),
        num_rejected=counter[0],
        num_evaluations=counter[1],
        wall_time=time.perf_counter() - t0,
        initial_rotation=init_rot,
        cpu_time=time.process_time() - c0,
    )


# -- worker processes -----------------------------------------------------------------------------------------
_WORKER_QUEUE: Any = None


def _worker_init(progress_queue: Any) -> None:
    """Worker set-up: one torch thread (the chains share the cores), the progress queue."""
    global _WORKER_QUEUE
    torch.set_num_threads(1)
    _WORKER_QUEUE = progress_queue


def _worker_report(chain: int, done: int) -> None:
    _WORKER_QUEUE.put((chain, done))


def _worker_run(task: _ChainTask) -> _ChainResult:
    return _run_chain(task, None if _WORKER_QUEUE is None else _worker_report)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Progress:
    """One tqdm bar per chain (stderr); silent when disabled."""

    def __init__(self, num_chains: int, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.bars = []
        if enabled:
            for c in range(num_chains):
                self.bars.append(
                    tqdm(total=total, desc=f"chain {c}", position=c, leave=True, file=sys.stderr, dynamic_ncols=True)
                )

    def __call__(self, chain: int, done: int) -> None:
        if self.enabled:
            bar = self.bars[chain]
            bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


def _references_main(payload: bytes) -> bool:
    """Whether a pickle refers to an object of the ``__main__`` module (which spawn workers could not import)."""
    return b"__main__" in payload


@contextlib.contextmanager
def _spawn_without_main_script() -> Iterator[None]:
    """Let spawn workers start without re-running the caller's ``__main__`` script (restored afterwards).

    The ``spawn`` start method imports the parent's main module in every worker (by its ``__spec__`` name or
    ``__file__`` path) so that objects defined there can be unpickled. A script without an
    ``if __name__ == "__main__":`` guard (the README snippet pasted into a file) would then run again in each
    worker, call ``fit_nuts`` while the worker is still bootstrapping and die, and ``multiprocessing.Pool`` would
    keep replacing the dead workers: the call hangs. The chains' payload never refers to ``__main__`` (checked by
    :func:`fit_nuts` before it starts workers), so the workers do not need the script: its ``__file__`` and
    ``__spec__`` are hidden while the pool starts and replaces workers.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            if "__spec__" in saved:
                main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _run_parallel(tasks: list[_ChainTask], num_workers: int, progress: _Progress) -> list[_ChainResult]:
    with _spawn_without_main_script():
        return _run_pool(tasks, num_workers, progress)


def _run_pool(tasks: list[_ChainTask], num_workers: int, progress: _Progress) -> list[_ChainResult]:
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue() if progress.enabled else None
    pool = ctx.Pool(processes=num_workers, initializer=_worker_init, initargs=(progress_queue,))
    try:
        pending = [pool.apply_async(_worker_run, (t,)) for t in tasks]
        while not all(p.ready() for p in pending):
            if any(p.ready() and not p.successful() for p in pending):
                break  # a chain failed: raise its exception now (below) instead of waiting for the others
            if progress_queue is None:
                time.sleep(0.05)
                continue
            with contextlib.suppress(queue.Empty):
                progress(*progress_queue.get(timeout=0.1))
        for p in pending:  # failed chains first: their exception is raised without waiting for the others
            if p.ready() and not p.successful():
                p.get()
        results = [p.get() for p in pending]
        pool.close()
    except BaseException:
        pool.terminate()  # an interrupt or a failing chain stops every worker
        raise
    finally:
        pool.join()
    if progress_queue is not None:
        with contextlib.suppress(queue.Empty):
            while True:
                progress(*progress_queue.get_nowait())
    return results


# -- initial values -------------------------------------------------------------------------------------------
def _interior_representative(ls: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """The equivalent ``(l P, R P)`` (same metric) closest to the identity (smallest rotation).

    The posterior of the rotation coordinates has a copy of every mode for each of the ``2^(d-1) d!`` frame
    symmetries. In 3-D, copies whose rotation angle is near pi straddle the smooth edge of the Haar prior at
    ``|w| = pi``: a chain started there samples a truncated half of the mode and diverges at the edge (observed:
    63 divergences and ESS 8 in one run); the copy with the smallest rotation angle (at most ~63 degrees) is
    interior. In ``d != 3`` dimensions the copy with the largest ``trace(R P)`` (the nearest to the identity in
    Frobenius norm; for ``d = 3`` the same as the smallest angle) is also the one the default shrinkage prior
    (towards the identity) favours, and it keeps the planar angles away from pi, where the logarithm is not unique.
    ``d <=`` :data:`MAX_ENUMERATED_DIM`: exact by enumeration; above: by
    :func:`gpytorch_so3.sod.nearest_signed_permutation`. The initial *metric* is unchanged, so chains still start from
    Haar-random orientations.
    """
    d = R.shape[-1]
    if d == 3:  # the measured SO(3) path, unchanged
        P = sod.signed_permutations(3, dtype=torch.float64)
        cand = R.unsqueeze(0) @ P
        k = int(so3.rotation_angle(cand).argmin())
        return (ls.unsqueeze(0) @ P[k].abs()).squeeze(0), cand[k]
    if d <= MAX_ENUMERATED_DIM:
        P = sod.signed_permutations(d, dtype=torch.float64)
        cand = R.unsqueeze(0) @ P
        best = P[int(cand.diagonal(dim1=-2, dim2=-1).sum(-1).argmax())]
    else:
        best = sod.nearest_signed_permutation(R)
    return (ls.unsqueeze(0) @ best.abs()).squeeze(0), R @ best


def _initial_values(pm: RotatedPyroModel, generator: torch.Generator, identity: bool = False) -> dict[str, Tensor]:
    """Data-scaled initial values (constrained space) with a Haar-random orientation (or the identity), for one chain.

    ``d = 3``: ``so3.random_rotation`` (the measured SO(3) path); otherwise ``sod.random_rotation(d)``; then the
    representative nearest to the identity (:func:`_interior_representative`). ``identity=True``: rotation 0 (the
    ARD frame), length-scales as for Haar starts.
    """
    X, y = pm.sampler_X, pm.sampler_y
    d = pm.dim
    tk = {"dtype": pm.dtype, "device": X.device}
    spread = X.std(dim=0).pow(2).mean().sqrt().clamp_min(1e-12)
    jitter = torch.exp((torch.rand(d, generator=generator, dtype=torch.float64) - 0.5) * 0.5)
    ls = float(spread) * torch.tensor(initial_lengthscale_factors(d), dtype=torch.float64) * jitter
    if identity:
        w = torch.zeros(sod.num_coordinates(d), dtype=torch.float64)
    elif d == 3:
        ls, R = _interior_representative(ls, so3.random_rotation(generator=generator, dtype=torch.float64))
        w = so3.log_map(R)
    else:
        ls, R = _interior_representative(ls, sod.random_rotation(d, generator=generator, dtype=torch.float64))
        w = sod.log_map(R)
    vy = y.var().clamp_min(1e-6)
    values = {
        "outputscale": (0.9 * vy).to(**tk),
        "mean": y.mean().to(**tk),
        "lengthscale": ls.to(**tk),
        "rotation": w.to(**tk),
    }
    if "noise" in pm.sample_sites:
        values["noise"] = (0.1 * vy).to(**tk)
    return values


# -- the public entry point -----------------------------------------------------------------------------------
def fit_nuts(
    model: RotatedFullyBayesianGP,
    *,
    num_samples: int = 256,
    warmup_steps: int = 512,
    num_chains: int = 1,
    thinning: int = 16,
    seed: int = 0,
    max_tree_depth: int = 6,
    disable_progbar: bool = False,
    jit_compile: bool = False,
    num_workers: int | None = None,
    fast_potential: bool = True,
    full_mass: bool = True,
    target_accept_prob: float = 0.8,
    init_strategy: str | Callable = "auto",
    dtype: torch.dtype | None = torch.float64,
    progress: bool | None = None,
) -> RotatedFullyBayesianGP:
    r"""Sample the hyperparameters of a fully Bayesian rotated-kernel GP with Pyro NUTS and load them.

    ``model`` is an :class:`~gpytorch_so3.SO3FullyBayesianGP` or a
    :class:`~gpytorch_so3.fully_bayesian.RotatedFullyBayesianGP` (``d >= 2`` inputs).

    Defaults and the overlapping argument names follow BoTorch's ``fit_fully_bayesian_model_nuts``
    (``max_tree_depth=6``, ``warmup_steps=512``, ``num_samples=256``, ``thinning=16``, ``disable_progbar=False``,
    ``jit_compile=False``, ``seed``; dense mass matrix). Unlike BoTorch's (which returns ``None``) it returns the
    model, as the package's SPEC requires; like BoTorch's it leaves the model in eval mode with the thinned
    samples loaded.

    Chain ``c`` is seeded from ``seed`` and starts from its own Haar-random rotation with unequal, data-scaled
    length-scales (``spread * (0.5, 1, 2)`` with random jitter, ``spread`` the RMS standard deviation of the
    inputs; of the 24 equivalent frames the one with the smallest rotation angle is used, away from the Haar
    prior's edge at ``|w| = pi``), output-scale ``0.9 var(y)``, noise ``0.1 var(y)`` and mean ``mean(y)``. In
    ``d != 3`` dimensions the same recipe: a Haar-random rotation in SO(d) (``sod.random_rotation``), ``d``
    length-scale factors from 0.5 to 2 (:func:`initial_lengthscale_factors`), and of the ``2^(d-1) d!`` equivalent
    frames the one nearest the identity (largest ``trace``), the copy the default shrinkage prior favours; and by
    default (``init_strategy="auto"``) chain 0 starts in the identity frame instead (rotation 0: the ARD kernel), as
    :func:`gpytorch_so3.fit_map`'s identity start: the axis-aligned mode is always explored, and further chains
    start from dispersed (Haar) orientations, as R-hat needs. Several
    chains run in parallel worker processes (see the module docstring); the draws of each chain are the same
    whichever way the chains run. The caller's global RNG state (torch, numpy, random) is restored afterwards.

    The model is only changed once sampling has finished: if the run fails or is interrupted
    (``KeyboardInterrupt``), a model fitted earlier keeps its samples.

    Args:
        model: the model to fit (its samples, if any, are replaced when the run completes).
        num_samples: post-warm-up draws per chain.
        warmup_steps: warm-up (adaptation) iterations per chain.
        num_chains: number of independent chains.
        thinning: keep every ``thinning``-th draw of each chain in the model (all draws stay in
            ``model.fit_nuts_info_.samples`` for diagnostics).
        seed: seed of everything random in the run; same seed, same samples.
        max_tree_depth: NUTS' maximum tree depth (at most ``2^depth - 1`` leapfrog steps per iteration).
        disable_progbar: no progress output (one bar per chain on stderr otherwise, and a line per chain at the
            end with its step size, divergences and rejected evaluations).
        jit_compile: compile the potential energy with ``torch.compile`` (``torch.jit.trace``, which Pyro's own
            ``jit_compile`` uses, is deprecated in torch 2.13). Default False, as in BoTorch: compilation costs
            13-65 s per process (each parallel worker compiles its own; needs a C++ compiler), and only long runs
            recover it (``benchmarks/bench_nuts.py potential``: 1.6-3x cheaper per evaluation at n = 100-200).
        num_workers: processes for the chains. ``None``: ``min(num_chains, usable CPUs)`` worker processes if that
            is at least 2 and the Pyro model can be pickled, else the calling process. ``1``: chains one after
            another in the calling process (no start-up cost: best for toy budgets). ``k > 1``: a spawn pool of
            ``k`` workers (the Pyro model must pickle: a subclass must be importable, not defined inside a
            function).
        fast_potential: use the model's potential with a closed-form likelihood gradient
            (:meth:`~gpytorch_so3.fully_bayesian.RotatedPyroModel.make_potential_fn`: same value and gradient as Pyro's
            generic potential up to round-off; 1.5-1.8x cheaper per potential + gradient evaluation at n = 100-200,
            1.0-1.3x per NUTS step including Pyro's own overhead) whenever the Pyro
            program is the default one (:attr:`~gpytorch_so3.fully_bayesian.RotatedPyroModel.has_default_program`);
            subclasses that override ``sample*`` or ``noiseless_covariance`` always get Pyro's generic potential.
        full_mass: adapt a dense (True) or diagonal (False) mass matrix.
        target_accept_prob: target acceptance probability of step-size adaptation (raise it, e.g. to 0.9, if
            there are divergences).
        init_strategy: ``"auto"`` (default): ``"haar"`` for ``d = 3``; for ``d != 3`` chain 0 as ``"identity"``
            and the others as ``"haar"``. ``"haar"``: every chain from a Haar-random orientation (above);
            ``"identity"``: the same but rotation 0 (every chain starts in the ARD frame); ``"prior"`` (draw every
            initial value from its prior) or a
            Pyro init strategy (e.g. ``pyro.infer.autoguide.init_to_median``).
        dtype: dtype of the computations inside the sampler (default float64, whose Cholesky factorisations of
            near-singular kernel matrices fail far less often; ``None`` uses the data's dtype). Samples are loaded
            in the dtype and on the device of the training data.
        progress: deprecated alias of ``not disable_progbar`` (kept for earlier callers); if given, it wins.

    Returns:
        The model, in eval mode, with ``num_chains * ceil(num_samples / thinning)`` samples loaded (chain-major) and
        ``model.fit_nuts_info_`` a :class:`NutsInfo`.

    Raises:
        TypeError: ``model`` is not a ``RotatedFullyBayesianGP`` (or ``SO3FullyBayesianGP``); ``num_workers > 1``
            with a Pyro model that cannot
            be pickled.
        ValueError: invalid budgets or options; fewer than :data:`MIN_TRAINING_POINTS` training points.

    Example:
        >>> X = torch.rand(12, 3, dtype=torch.float64); Y = torch.sin(5 * X[:, :1]); Y = (Y - Y.mean()) / Y.std()
        >>> # a toy budget to keep the example fast (the defaults are 512 warm-up steps, 256 samples, depth 6)
        >>> from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
        >>> model = fit_nuts(SO3FullyBayesianGP(X, Y), warmup_steps=8, num_samples=8, thinning=4, num_chains=2,
        ...                  max_tree_depth=2, num_workers=1, disable_progbar=True)
        >>> model.num_mcmc_samples  # 2 chains x ceil(8 / 4) thinned draws
        4
        >>> model.fit_nuts_info_.samples["lengthscale"].shape  # all draws: chains x draws x 3
        torch.Size([2, 8, 3])
    """
    t_start = time.perf_counter()
    if not isinstance(model, RotatedFullyBayesianGP):
        raise TypeError(
            f"fit_nuts expects an SO3FullyBayesianGP or a RotatedFullyBayesianGP, got {type(model).__name__}"
        )
    # numpy integers are accepted and passed on as Python ints (Pyro and the worker processes see plain ints)
    num_samples = check_int("num_samples", num_samples, 1, where="fit_nuts: ")
    warmup_steps = check_int("warmup_steps", warmup_steps, 0, where="fit_nuts: ")
    num_chains = check_int("num_chains", num_chains, 1, where="fit_nuts: ")
    thinning = check_int("thinning", thinning, 1, where="fit_nuts: ")
    max_tree_depth = check_int("max_tree_depth", max_tree_depth, 1, where="fit_nuts: ")
    seed = check_int("seed", seed, 0, 2**63 - 1, where="fit_nuts: ")
    num_workers = check_int("num_workers", num_workers, 1, allow_none=True, where="fit_nuts: ")
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(f"fit_nuts: target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    if not (init_strategy in ("auto", "haar", "identity", "prior") or callable(init_strategy)):
        raise ValueError(
            f"fit_nuts: init_strategy must be 'auto', 'haar', 'identity', 'prior' or a callable, got {init_strategy!r}"
        )
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"fit_nuts: dtype must be torch.float32, torch.float64 or None, got {dtype!r}")
    pm = model.pyro_model
    n = pm.train_X.shape[0]
    if n < MIN_TRAINING_POINTS:
        raise ValueError(
            f"fit_nuts: the model has {n} training point(s); NUTS needs at least {MIN_TRAINING_POINTS} (the priors "
            "assume standardised outcomes, which one point cannot give)"
        )
    show = (not disable_progbar) if progress is None else bool(progress)

    # Everything up to loading the samples leaves the model as it is (interrupts keep an earlier fit).
    old_dtype = pm.dtype
    pm.set_dtype(pm.train_X.dtype if dtype is None else dtype)
    analytic = bool(fast_potential) and pm.has_default_program
    generator = torch.Generator().manual_seed(int(seed))
    chain_seeds = [int(s) for s in torch.randint(0, 2**31 - 1, (num_chains,), generator=generator)]
    tasks = []
    for c in range(num_chains):
        init = init_strategy
        if init_strategy in ("auto", "haar", "identity"):
            identity = init_strategy == "identity" or (init_strategy == "auto" and pm.dim != 3 and c == 0)
            init = _initial_values(pm, torch.Generator().manual_seed(chain_seeds[c]), identity=identity)
        tasks.append(
            _ChainTask(
                pyro_model=pm,
                chain=c,
                seed=chain_seeds[c],
                init=init,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                max_tree_depth=max_tree_depth,
                full_mass=bool(full_mass),
                target_accept_prob=float(target_accept_prob),
                analytic=analytic,
                compile=bool(jit_compile),
            )
        )
    workers = min(num_chains, _available_cpus()) if num_workers is None else min(num_workers, num_chains)
    if workers > 1:
        try:
            if _references_main(pickle.dumps(tasks[0])):
                raise TypeError(
                    "it refers to an object defined in the __main__ script, which worker processes cannot import"
                )
        except Exception as e:
            if num_workers is not None:
                raise TypeError(
                    f"fit_nuts: num_workers={num_workers} needs a picklable Pyro model for the worker processes, "
                    f"but {type(pm).__name__} cannot be pickled ({e}); define it at module level of an importable "
                    "module or use num_workers=1"
                ) from e
            workers = 1
    bars = _Progress(num_chains, warmup_steps + num_samples, show)
    rng_state = pyro.util.get_rng_state()
    try:
        if workers > 1:
            results = _run_parallel(tasks, workers, bars)
        else:
            results = [_run_chain(t, bars if show else None) for t in tasks]
    except BaseException:
        pm.set_dtype(old_dtype)
        raise
    finally:
        bars.close()
        pyro.util.set_rng_state(rng_state)

    stacked = {k: torch.stack([r.samples[k] for r in results]) for k in results[0].samples}
    target = {"dtype": pm.train_X.dtype, "device": pm.train_X.device}
    thinned = {k: v[:, ::thinning].reshape(-1, *v.shape[2:]).to(**target) for k, v in stacked.items()}
    model.train()  # BoTorch's reset (drops the old samples and prediction caches), then the new samples
    model.load_mcmc_samples(thinned)
    init_rot = [r.initial_rotation for r in results if r.initial_rotation is not None]
    info = NutsInfo(
        samples=stacked,
        divergences=[r.divergences for r in results],
        num_rejected=[r.num_rejected for r in results],
        step_size=[r.step_size for r in results],
        accept_prob=[r.accept_prob for r in results],
        wall_time=[r.wall_time for r in results],
        initial_rotation=torch.stack(init_rot) if len(init_rot) == num_chains else None,
        warmup_steps=warmup_steps,
        num_samples=num_samples,
        thinning=thinning,
        seed=seed,
        max_tree_depth=max_tree_depth,
        full_mass=bool(full_mass),
        jit_compile=bool(jit_compile),
        dtype=pm.dtype,
        potential=("analytic" if analytic else "pyro") + ("_compiled" if jit_compile else ""),
        num_evaluations=[r.num_evaluations for r in results],
        chain_seeds=chain_seeds,
        num_workers=workers,
        elapsed=time.perf_counter() - t_start,
        cpu_time=[r.cpu_time for r in results],
    )
    model.fit_nuts_info_ = info
    model.eval()
    if show:
        for c, r in enumerate(results):
            print(
                f"fit_nuts: chain {c}: {r.wall_time:.1f} s, step size {r.step_size:.3g}, {len(r.divergences)} "
                f"divergences, {r.num_rejected} rejected non-PSD/NaN evaluations",
                file=sys.stderr,
            )
        advice = divergence_advice(info.num_divergences, num_chains * num_samples)
        if advice:
            print(f"fit_nuts: {advice}", file=sys.stderr)
    return model
