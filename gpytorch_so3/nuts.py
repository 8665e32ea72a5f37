r"""Pyro NUTS for :class:`~gpytorch_so3.SO3FullyBayesianGP`: chains, seeding, thinning, robustness to bad proposals.

:func:`fit_nuts` runs Pyro's No-U-Turn sampler (``pyro.infer.mcmc.NUTS``) on the model's
:class:`~gpytorch_so3.fully_bayesian.SO3PyroModel`, one chain after another (Pyro reports one usable CPU on small
machines, and sequential chains keep the result independent of the process layout), each from its own
Haar-random initial rotation, and loads the thinned draws into the model.

A leapfrog step into a region where the kernel matrix is numerically not positive definite (or NaN) makes the
Cholesky factorisation raise. Pyro's integrator consults a registry of exception handlers
(``pyro.ops.integrator.register_exception_handler``); :func:`fit_nuts` registers one for ``LinAlgError``,
gpytorch's ``NotPSDError``/``NanError`` and Cholesky ``RuntimeError`` messages, so such a step gets a NaN
potential energy, which NUTS treats as a divergence and rejects, instead of crashing the run. These rejected
evaluations and NUTS' divergent transitions are recorded per chain in ``model.fit_nuts_info_``.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
from linear_operator.utils.errors import NanError, NotPSDError
from pyro.infer.mcmc import MCMC, NUTS
from pyro.infer.mcmc.util import initialize_model
from pyro.ops.integrator import register_exception_handler
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP

__all__ = ["EXCEPTION_HANDLER_NAME", "NutsInfo", "fit_nuts", "is_numerical_failure"]

#: Name under which :func:`fit_nuts` registers its handler in Pyro's integrator exception registry.
EXCEPTION_HANDLER_NAME = "gpytorch_so3_not_psd"

#: Initial principal length-scales of a chain as multiples of the inputs' RMS spread: unequal (with three
#: equal length-scales the rotation has zero gradient), spanning the usual range of a field on the unit cube.
INITIAL_LENGTHSCALE_FACTORS = (0.5, 1.0, 2.0)

_FAILURE_MESSAGES = ("cholesky", "positive-definite", "positive definite", "singular", "not psd", "nan")


def is_numerical_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a numerical failure of the kernel matrix that NUTS should reject rather than raise.

    True for ``torch.linalg.LinAlgError``, gpytorch/linear_operator ``NotPSDError`` and ``NanError``, and
    ``RuntimeError``s whose message mentions Cholesky / positive-definiteness / singularity / NaN (the form
    these take inside a ``torch.jit``-traced potential).

    Args:
        exc: the exception raised while evaluating the potential energy.

    Example:
        >>> try:
        ...     torch.linalg.cholesky(-torch.eye(2))
        ... except Exception as e:
        ...     print(is_numerical_failure(e))
        True
        >>> is_numerical_failure(ValueError("bad shape"))
        False
    """
    if isinstance(exc, torch.linalg.LinAlgError | NotPSDError | NanError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return any(m in msg for m in _FAILURE_MESSAGES)
    return False


def _register_handler() -> None:
    register_exception_handler(EXCEPTION_HANDLER_NAME, is_numerical_failure, warn_on_overwrite=False)


_register_handler()


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
        wall_time: per chain, seconds.
        initial_rotation: ``num_chains x 3`` initial axis-angle vectors (Haar-random unless an init strategy was
            given).
        warmup_steps, num_samples, thinning, seed, max_tree_depth, full_mass, jit_compile, dtype: the settings.
        potential: which potential energy was used: ``"analytic"`` (:meth:`SO3PyroModel.make_potential_fn`) or
            ``"pyro"`` (Pyro's generic potential of the model's ``sample``), with suffix ``"_jit"`` if traced.
        num_evaluations: per chain, potential-energy (+ gradient) evaluations, warm-up included (the cost unit of
            NUTS: wall time / evaluations is the cost of one leapfrog step).

    Example:
        >>> from gpytorch_so3 import SO3FullyBayesianGP, fit_nuts
        >>> X = torch.rand(12, 3, dtype=torch.float64); Y = torch.randn(12, 1, dtype=torch.float64)
        >>> Y = (Y - Y.mean()) / Y.std()  # the priors assume standardised outcomes
        >>> model = fit_nuts(SO3FullyBayesianGP(X, Y), warmup_steps=4, num_samples=4, thinning=2,
        ...                  max_tree_depth=2, progress=False)  # toy budget
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
        """Seconds over all chains."""
        return float(sum(self.wall_time))


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"fit_nuts: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _signed_permutations() -> Tensor:
    """The 24 signed permutation matrices with determinant +1 (the symmetry group of the metric's frame)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            P = torch.zeros(3, 3, dtype=torch.float64)
            for col, row in enumerate(perm):
                P[row, col] = signs[col]
            if torch.linalg.det(P) > 0:
                mats.append(P)
    return torch.stack(mats)


def _interior_representative(ls: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """The equivalent ``(l P, R P)`` (same metric) whose rotation angle is smallest (at most ~63 degrees).

    The axis-angle posterior has a copy of every mode for each of the 24 frame symmetries. Copies whose rotation
    angle is near pi straddle the smooth edge of the Haar prior at ``|w| = pi``: a chain started there samples a
    truncated half of the mode and diverges at the edge (observed: 63 divergences and ESS 8 in one run). Starting
    from the smallest-angle representative keeps the chain in an interior copy; the initial *metric* is
    unchanged, so chains still start from Haar-random orientations.
    """
    P = _signed_permutations()
    cand = R.unsqueeze(0) @ P
    k = int(so3.rotation_angle(cand).argmin())
    return (ls.unsqueeze(0) @ P[k].abs()).squeeze(0), cand[k]


def _initial_values(model: SO3FullyBayesianGP, generator: torch.Generator) -> dict[str, Tensor]:
    """Data-scaled initial values (constrained space) with a Haar-random orientation, for one chain."""
    pm = model.pyro_model
    X, y = pm._X, pm._y
    tk = {"dtype": pm.dtype, "device": X.device}
    spread = X.std(dim=0).pow(2).mean().sqrt().clamp_min(1e-12)
    jitter = torch.exp((torch.rand(3, generator=generator, dtype=torch.float64) - 0.5) * 0.5)
    ls = float(spread) * torch.tensor(INITIAL_LENGTHSCALE_FACTORS, dtype=torch.float64) * jitter
    ls, R = _interior_representative(ls, so3.random_rotation(generator=generator, dtype=torch.float64))
    ls = ls.to(**tk)
    vy = y.var().clamp_min(1e-6) if y.numel() > 1 else torch.ones((), **tk)
    values = {
        "outputscale": (0.9 * vy).to(**tk),
        "mean": y.mean().to(**tk) if y.numel() > 0 else torch.zeros((), **tk),
        "lengthscale": ls,
        "rotation": so3.log_map(R).to(**tk),
    }
    if "noise" in pm.sample_sites:
        values["noise"] = (0.1 * vy).to(**tk)
    return values


def fit_nuts(
    model: SO3FullyBayesianGP,
    *,
    num_samples: int = 256,
    warmup_steps: int = 512,
    num_chains: int = 1,
    thinning: int = 16,
    seed: int = 0,
    max_tree_depth: int = 6,
    jit_compile: bool = True,
    fast_potential: bool = True,
    full_mass: bool = True,
    target_accept_prob: float = 0.8,
    progress: bool = True,
    init_strategy: str | Callable = "haar",
    dtype: torch.dtype | None = torch.float64,
) -> SO3FullyBayesianGP:
    r"""Sample the hyperparameters of an :class:`~gpytorch_so3.SO3FullyBayesianGP` with Pyro NUTS and load them.

    Defaults follow BoTorch's ``fit_fully_bayesian_model_nuts`` (512 warm-up steps, 256 samples, thinning 16,
    tree depth 6, dense mass matrix). Chains run one after another; chain ``c`` is seeded from ``seed`` and
    starts from its own Haar-random rotation with unequal, data-scaled length-scales
    (``spread * (0.5, 1, 2)`` with random jitter, ``spread`` the RMS standard deviation of the inputs; of the 24
    equivalent frames the one with the smallest rotation angle is used, away from the Haar prior's edge at
    ``|w| = pi``), output-scale
    ``0.9 var(y)``, noise ``0.1 var(y)`` and mean ``mean(y)``. The global RNG state (torch, numpy, random) is
    restored afterwards, so the call does not disturb the caller's random streams.

    Args:
        model: the model to fit (its samples, if any, are replaced).
        num_samples: post-warm-up draws per chain.
        warmup_steps: warm-up (adaptation) iterations per chain.
        num_chains: number of independent chains (run sequentially).
        thinning: keep every ``thinning``-th draw of each chain in the model (all draws stay in
            ``model.fit_nuts_info_.samples`` for diagnostics).
        seed: seed of everything random in the run; same seed, same samples.
        max_tree_depth: NUTS' maximum tree depth (at most ``2^depth - 1`` leapfrog steps per iteration).
        jit_compile: trace the potential energy with ``torch.jit`` (less Python overhead per leapfrog step): the
            prior/transform part of the analytic potential, or Pyro's whole generic potential. Default True: the
            traced parts have no data-dependent control flow; on the n = 100 benchmark it cut the cost per
            leapfrog step by 15-30% (``benchmarks/README.md``).
        fast_potential: use the model's own potential with a closed-form likelihood gradient
            (:meth:`~gpytorch_so3.fully_bayesian.SO3PyroModel.make_potential_fn`: same value and gradient as Pyro's
            generic potential up to round-off; with ``jit_compile`` 1.2-1.5x cheaper per leapfrog step than Pyro's
            traced potential at n = 100, including NUTS' own per-step overhead) whenever the Pyro program is
            the default one (:attr:`~gpytorch_so3.fully_bayesian.SO3PyroModel.has_default_program`); subclasses
            that override ``sample*`` or ``noiseless_covariance`` always get Pyro's generic potential.
        full_mass: adapt a dense (True) or diagonal (False) mass matrix.
        target_accept_prob: target acceptance probability of step-size adaptation.
        progress: show Pyro's progress bar.
        init_strategy: ``"haar"`` (default, above), ``"prior"`` (draw every initial value from its prior) or a
            Pyro init strategy (e.g. ``pyro.infer.autoguide.init_to_median``).
        dtype: dtype of the computations inside the sampler (default float64, whose Cholesky factorisations of
            near-singular kernel matrices fail far less often; ``None`` uses the data's dtype). Samples are loaded
            in the dtype and on the device of the training data.

    Returns:
        The model, in eval mode, with ``num_chains * ceil(num_samples / thinning)`` samples loaded (chain-major) and
        ``model.fit_nuts_info_`` a :class:`NutsInfo`.

    Raises:
        TypeError: ``model`` is not an ``SO3FullyBayesianGP``.
        ValueError: invalid budgets or options.

    Example:
        >>> X = torch.rand(12, 3, dtype=torch.float64); Y = torch.sin(5 * X[:, :1]); Y = (Y - Y.mean()) / Y.std()
        >>> # a toy budget to keep the example fast (the defaults are 512 warm-up steps, 256 samples, depth 6)
        >>> model = fit_nuts(SO3FullyBayesianGP(X, Y), warmup_steps=8, num_samples=8, thinning=4, num_chains=2,
        ...                  max_tree_depth=2, progress=False)
        >>> model.num_mcmc_samples  # 2 chains x ceil(8 / 4) thinned draws
        4
        >>> model.fit_nuts_info_.samples["lengthscale"].shape  # all draws: chains x draws x 3
        torch.Size([2, 8, 3])
    """
    if not isinstance(model, SO3FullyBayesianGP):
        raise TypeError(f"fit_nuts expects an SO3FullyBayesianGP, got {type(model).__name__}")
    _check_int("num_samples", num_samples, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    _check_int("num_chains", num_chains, 1)
    _check_int("thinning", thinning, 1)
    _check_int("max_tree_depth", max_tree_depth, 1)
    _check_int("seed", seed, 0)
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(f"fit_nuts: target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    if not (init_strategy in ("haar", "prior") or callable(init_strategy)):
        raise ValueError(f"fit_nuts: init_strategy must be 'haar', 'prior' or a callable, got {init_strategy!r}")
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"fit_nuts: dtype must be torch.float32, torch.float64 or None, got {dtype!r}")

    _register_handler()  # idempotent; keeps the handler even if someone cleared Pyro's registry
    pm = model.pyro_model
    model.train()  # drops previously loaded samples (BoTorch semantics)
    pm.set_dtype(pm.train_X.dtype if dtype is None else dtype)
    use_fast = bool(fast_potential) and pm.has_default_program

    generator = torch.Generator().manual_seed(int(seed))
    chain_seeds = torch.randint(0, 2**31 - 1, (num_chains,), generator=generator).tolist()
    rng_state = pyro.util.get_rng_state()
    per_chain: list[dict[str, Tensor]] = []
    divergences: list[list[int]] = []
    rejected: list[int] = []
    evaluations: list[int] = []
    step_sizes: list[float] = []
    accept: list[float] = []
    times: list[float] = []
    init_rot: list[Tensor] = []
    try:
        for c in range(num_chains):
            t0 = time.perf_counter()
            pyro.set_rng_seed(int(chain_seeds[c]))
            chain_gen = torch.Generator().manual_seed(int(chain_seeds[c]))
            if init_strategy == "haar":
                strategy = pyro.infer.autoguide.init_to_value(values=_initial_values(model, chain_gen))
            elif init_strategy == "prior":
                strategy = pyro.infer.autoguide.init_to_sample
            else:
                strategy = init_strategy
            init_params, potential_fn, transforms, _ = initialize_model(
                pm.sample,
                jit_compile=jit_compile and not use_fast,
                skip_jit_warnings=True,
                init_strategy=strategy,
            )
            if use_fast:
                potential_fn = pm.make_potential_fn(transforms, jit_compile=jit_compile)
            counter = [0, 0]  # rejected (non-PSD/NaN) evaluations, all evaluations

            def counted_potential(z, _pe=potential_fn, _counter=counter):
                _counter[1] += 1
                try:
                    return _pe(z)
                except Exception as e:
                    if is_numerical_failure(e):
                        _counter[0] += 1
                    raise

            kernel = NUTS(
                potential_fn=counted_potential,
                transforms=transforms,
                max_tree_depth=max_tree_depth,
                full_mass=full_mass,
                target_accept_prob=float(target_accept_prob),
                adapt_step_size=True,
                adapt_mass_matrix=True,
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params=init_params,
                transforms=transforms,
                disable_progbar=not progress,
            )
            if "rotation" in init_params:
                init_rot.append(transforms["rotation"].inv(init_params["rotation"]).detach().reshape(3))
            mcmc.run()
            samples = mcmc.get_samples(group_by_chain=True)
            per_chain.append({k: v[0].detach() for k, v in pm.postprocess_mcmc_samples(samples).items()})
            diag = mcmc.diagnostics()
            divergences.append([int(i) for i in diag.get("divergences", {}).get("chain 0", [])])
            acc = diag.get("acceptance rate", {}).get("chain 0", math.nan)
            accept.append(float(acc))
            step_sizes.append(float(kernel.step_size))
            rejected.append(counter[0])
            evaluations.append(counter[1])
            times.append(time.perf_counter() - t0)
            if progress:
                print(
                    f"fit_nuts: chain {c}: {times[-1]:.1f} s, step size {step_sizes[-1]:.3g}, "
                    f"{len(divergences[-1])} divergences, {rejected[-1]} rejected non-PSD/NaN evaluations",
                    file=sys.stderr,
                )
    finally:
        pyro.util.set_rng_state(rng_state)

    stacked = {k: torch.stack([ch[k] for ch in per_chain]) for k in per_chain[0]}
    target = {"dtype": pm.train_X.dtype, "device": pm.train_X.device}
    thinned = {k: v[:, ::thinning].reshape(-1, *v.shape[2:]).to(**target) for k, v in stacked.items()}
    model.load_mcmc_samples(thinned)
    model.fit_nuts_info_ = NutsInfo(
        samples=stacked,
        divergences=divergences,
        num_rejected=rejected,
        step_size=step_sizes,
        accept_prob=accept,
        wall_time=times,
        initial_rotation=torch.stack(init_rot) if init_rot else None,
        warmup_steps=warmup_steps,
        num_samples=num_samples,
        thinning=thinning,
        seed=seed,
        max_tree_depth=max_tree_depth,
        full_mass=full_mass,
        jit_compile=jit_compile,
        dtype=pm.dtype,
        potential=("analytic" if use_fast else "pyro") + ("_jit" if jit_compile else ""),
        num_evaluations=evaluations,
    )
    model.eval()
    return model
