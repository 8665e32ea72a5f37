r"""Type-II MAP fitting with Haar-random restarts over rotations.

The marginal likelihood of a rotated-anisotropy kernel is multimodal in the rotation: the 24 signed axis
permutations give equal optima, and between them lie saddles and poorer local optima in which an axis is
assigned the wrong length-scale. A single L-BFGS run from ``rotation = 0`` often lands in one of those.
:func:`fit_map` therefore restarts from Haar-uniform rotations with *unequal* initial length-scales (with
three equal ones the rotation has zero gradient), and keeps the restart with the best penalised likelihood.

All starts are optimised together as one batch-mode copy of the model (every hyperparameter with a leading
dimension of size ``starts``), one objective evaluation per iteration for all of them, with BoTorch's batched
L-BFGS-B (an independent L-BFGS-B state per start, each converging on its own). Successive halving keeps the cost
near one fit: a short screening round on a subset of the data, the most promising starts continue, and the winner
is polished alone with the exact objective, by a trust-region Newton method (:data:`NEWTON_POLISH`): near a MAP
optimum the objective is too badly conditioned for L-BFGS-B to finish quickly.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.fit import fit_gpytorch_mll_scipy
from botorch.optim.utils import get_parameters, get_parameters_and_bounds
from botorch.optim.utils.numpy_utils import get_per_element_bounds
from gpytorch.kernels import Kernel
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

from gpytorch_so3 import sod
from gpytorch_so3._validation import check_int
from gpytorch_so3.botorch_utils import check_input_scaling
from gpytorch_so3.exceptions import DegenerateInputsWarning, RestartFailedWarning
from gpytorch_so3.kernels.full_spd_kernel import FullSPDKernel
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.priors import HaarAnglePrior, HaarRotationPrior

try:  # BoTorch's batched port of scipy's L-BFGS-B (uses scipy internals; BoTorch supports scipy 1.13-1.16)
    from botorch.optim.batched_lbfgs_b import fmin_l_bfgs_b_batched
except ImportError:  # pragma: no cover - a BoTorch/scipy without it: fit_map falls back to the sequential path
    fmin_l_bfgs_b_batched = None

__all__ = ["DEFAULT_HALVING", "FitMapInfo", "FitPhase", "fit_map"]

#: Initial principal length-scales of a restart, as multiples of the inputs' spread (one short, one medium,
#: one long axis): unequal so that the rotation has a gradient from the first step, and spanning the range
#: where the MLL of a field on the unit cube usually has its optimum.
INITIAL_LENGTHSCALE_FACTORS = (0.5, 1.0, 2.0)

#: Initial length-scales of a data-aligned restart as multiples of the inputs' standard deviation along each
#: principal axis (smallest extent first): about 0.4-0.9 of the cloud's width along that axis (a uniform
#: distribution of width ``w`` has standard deviation ``w / sqrt(12)``), unequal so that the rotation has a
#: gradient even for a round cloud. Measured on the drill holes (n = 150, 14 subsamples): a start with the
#: shortest length-scale at half a standard deviation (as the Haar restarts' ``0.5``) was too short to see the
#: layering and missed it in 10 of 14, this one found it in 14 of 14 (issue 4).
ALIGNED_LENGTHSCALE_FACTORS = (1.5, 2.25, 3.0)

#: Floor of a principal extent relative to the largest one, so that a degenerate (planar or collinear) input
#: cloud still gives positive initial length-scales.
MIN_EXTENT_RATIO = 1e-3

#: Inputs up to this many points are fitted with exact Cholesky solves (instead of gpytorch's CG/Lanczos
#: above its default `max_cholesky_size` of 800), so restarts are compared on the exact objective.
EXACT_FIT_MAX_POINTS = 5000

#: Default options of L-BFGS-B. The iteration cap guards against a flat direction (a length-scale the data do not
#: bound, with no prior) that scipy's default of 15,000 iterations would follow for minutes; with the default
#: priors a restart converges in well under this many iterations.
DEFAULT_OPTIMIZER_OPTIONS = {"maxiter": 1000}

#: Successive-halving schedule of the batched path: rounds of ``(max_points, max_iterations, keep)``. Round ``i``
#: runs batched L-BFGS-B for up to ``max_iterations`` iterations on ``min(n, max_points)`` points (``None``: all;
#: nested random subsets drawn from the seed), then keeps the best ``ceil(keep * starts)`` starts (at least one).
#: The best start of the last round is then polished alone on all points with ``optimizer_options``.
#: Measured in ``benchmarks/bench_fit.py`` (fit time and recovery at n = 100-3000).
DEFAULT_HALVING: tuple[tuple[int | None, int, float], ...] = ((128, 30, 1 / 3), (512, 20, 1 / 3))

#: A cloud whose smallest principal extent is below this fraction of its largest is *thin* (drill holes: ~0.01).
#: There the data-aligned start is protected in the batched path: it survives every halving round and is polished
#: besides the round winner. Measured on the drill holes (n = 150, fold 0): Haar starts end 89 degrees off the
#: layering, and the data-aligned start needs ~240 L-BFGS-B evaluations to reach it, with a worse objective than
#: the Haar starts for the first ~100: a screening round would drop it.
THIN_EXTENT_RATIO = 0.2

#: Above this many training points, the starts that reach the polish (the winner of the last round, and a protected
#: data-aligned start) are first run to convergence on a nested random subset of this many points; only the best of
#: them on that subset is then polished on all points, from where it stopped (the issue's "fit on a subset, refine
#: on all"). One objective evaluation on 2,048 points costs about a tenth of one on 4,600 (Cholesky is cubic), so the
#: expensive full-data evaluations are spent on one start that is already near its optimum. Without this stage a
#: protected start is polished on all points from its initial state (~240 evaluations, see THIN_EXTENT_RATIO) besides
#: the winner. With it, the drill holes' all-sample fits (~4,600 points, ``benchmarks/results/oilsands_all.md``)
#: took 808-2,001 s on a loaded 2-core machine, 1.07x (fold 0) and 0.45x (fold 4) BoTorch's ARD fit on the same samples.
PREPOLISH_POINTS = 2048

#: The gradient start (``gradient_start``): the pilot GP of :func:`_gradient_outer_product` uses at most this many
#: training points (a random subset above), its length-scale is chosen from these multiples of the inputs' RMS
#: spread and its noise-to-signal variance ratio from these values (40 Cholesky factorisations of at most
#: 1,024 x 1,024 per pass: a few seconds at 1,024 points, milliseconds in a BO loop).
GRADIENT_PILOT_POINTS = 1024
GRADIENT_PILOT_LENGTHSCALE_FACTORS = (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 4.0)
GRADIENT_PILOT_NOISE_RATIOS = (1e-3, 1e-2, 0.1, 0.3)

#: Largest ratio of the gradient start's length-scales: eigenvalues of the gradient outer product below
#: ``1 / GRADIENT_MAX_ANISOTROPY**2`` of the largest are raised to it.
GRADIENT_MAX_ANISOTROPY = 10.0

#: ``gradient_start=None`` turns the gradient start on for kernels of at least this many dimensions. It is protected
#: (polished besides the round winner: it ranked last or nearly so in every 128-point screening round it entered on
#: the 6-D recovery fields, yet won 2 of 5 seeds after the polish), so it costs about one more polish. In 6-D
#: (``benchmarks/sod_recovery.py``, n = 600) that bought 7.8 and 4.6 nats on 2 of 5 seeds; in 2-D (n = 200) the
#: restarts already reached the optimum from a truth start on 5 of 5 seeds and the extra polish only cost time
#: (fit time 2.0-2.6x ARD's without it, 2.7-4.3x with it), and the 3-D defaults were measured without it.
GRADIENT_START_MIN_DIM = 4

#: Passes of the pilot GP of the gradient start (the first isotropic, each next one with the last pass's metric).
GRADIENT_PILOT_ITERATIONS = 3

#: Starts are evaluated together while ``starts x points^2`` stays below this (larger batches are split into chunks of
#: starts evaluated one after another): the batch saves Python overhead at small ``n`` but is memory-bound at large
#: ``n``. Measured (``benchmarks/results/bench_fit.json``, ``evaluation``): 9 starts in one call cost 0.28x (n = 100)
#: and 0.42x (n = 300) of 9 single-start calls per start, but 1.8x at n = 1000.
BATCH_MAX_ELEMENTS = 1_000_000

#: The polish (and pre-polish) minimiser in float64 when the objective has no finite bounds (BoTorch's models: the
#: noise's lower bound is optimised in log coordinates, see :class:`_BatchedObjective`): a trust-region Newton method
#: whose Hessian comes from forward differences of the exact gradient, all ``P`` perturbed rows in one batched
#: evaluation, updated by SR1 between evaluations (:func:`_newton_polish`). Near a MAP optimum the objective is badly
#: conditioned (the README's 6-D example, n = 200: Hessian eigenvalues from 5e-2 to 1.3e5 in total nats, the
#: length-scales of directions the data do not vary along against the rotations that tilt the fast axis) and
#: L-BFGS-B crawled: 652 and 1,173 evaluations for its two polishes (19.9 s), where this method took 23 and 34
#: (2.7 s) to a lower loss. ``benchmarks/results/bench_polish.json``: whole fits 4.3x (that example) and 3.8x (its
#: noise-free variant, 0.6 nats lower) faster, 1.6x on a 3-D and 1.4x on a 6-D GP field and 1.15x in 2-D (the same
#: optimum), a 6-D BO surrogate fit 3.0-4.7x. ``False``: L-BFGS-B (BoTorch's batched port of scipy's) as before.
NEWTON_POLISH = True

#: The Newton polish runs on at most this many points (more: L-BFGS-B). Its Hessian costs ``P + 1`` gradient
#: evaluations (``P`` hyperparameters: 12 in 3-D, 24 in 6-D; one at a time above ~700 points, so memory stays that of
#: one evaluation). Measured from 1,100 to 2,000 points (``benchmarks/bench_newton_points.py``): Newton 1.7-1.9x
#: faster than L-BFGS-B in 3-D at the same optimum, and in 4-D (one oblique direction) 5.4-7.3x faster and 0.04-0.36
#: nats lower: L-BFGS-B crawled 970-1,630 evaluations there. The value was 1,024 until that showed a cliff at 1,025
#: points (a 4-D fit 42 s at 1,000 points, 253 s at 1,100), then 2,048 (= :data:`PREPOLISH_POINTS`). At 3,000 points
#: (the pre-polish on 2,048 points, then the full-data polish), Newton throughout against L-BFGS-B throughout: 3-D
#: 84 s against 163 s at the same optimum, 4-D 363 s against 1,792 s (L-BFGS-B crawled 983 evaluations in the
#: pre-polish) and 0.38 nats lower; peak memory the same (``results/bench_newton_points.json``). Above 3,000 points
#: (the drill holes' all-sample fits, ~4,600) nothing was measured and L-BFGS-B polishes.
NEWTON_MAX_POINTS = 3000

#: Relative step of the forward differences of :func:`_newton_polish`'s Hessian (times ``max(1, |x_i|)``). Measured on
#: the README's 6-D example (n = 200) and its noise-free variant (n = 300): forward differences with 1e-6 or 1e-7 and
#: central differences with 1e-5 took the same iterations to the same optimum; forward ones cost half (P + 1 rows).
NEWTON_DIFFERENCE_STEP = 1e-6

#: The Newton polish stops when its last :data:`NEWTON_STALL_STEPS` accepted steps lowered the objective by less than
#: this many nats in all (the per-point objective times the number of points). In a valley that is flat but not
#: exactly so (rotations among directions the data barely see) the steps keep finding ever smaller decreases: on a
#: 6-D BO design (n = 40, ``bench_polish.py``'s ``bo_6d_n40``, no rotation prior) the last ~200 of 331 evaluations
#: gained 0.002 nats; with this test its two polishes took 177 + 68 evaluations instead of 331 + 196, 0.0016 nats
#: higher.
NEWTON_STALL_NATS = 1e-3
NEWTON_STALL_STEPS = 10

#: Largest accepted seed (exclusive): seeds are 63-bit non-negative ints, as ``torch.Generator.manual_seed`` takes.
MAX_SEED = 2**63


class _NonFiniteLoss(ArithmeticError):
    """A start's objective or gradient became NaN/inf (``rows``: positions in the evaluated batch)."""

    def __init__(self, rows: list[int], what: str = "objective") -> None:
        super().__init__(f"non-finite {what}")
        self.rows = rows


#: Numerical failures of one start: caught per start (recorded, warned, the start dropped); anything else propagates.
_FAILURES = (NotPSDError, NanError, torch.linalg.LinAlgError, _NonFiniteLoss)


@dataclass
class FitPhase:
    """One round of a :func:`fit_map` run (a batched round, the polish of the winner, or a sequential restart).

    Attributes:
        name: ``"round 0"``, ``"round 1"``, ... (batched), ``"pre-polish"`` (large ``n``), ``"polish"``, or
            ``"sequential"``.
        starts: indices of the starts that took part.
        num_points: number of training points the objective used (a nested random subset in early rounds).
        max_iterations: iteration cap per start (L-BFGS-B iterations, or Newton steps in a Newton polish;
            ``None``: ``optimizer_options``).
        losses: objective (negative penalised log marginal likelihood per data point, on this round's points) of
            each start at the end of the round, ``nan`` for a start that failed in it.
        kept: starts that went on to the next round (the best ones).
        evaluations: batched objective evaluations (one call evaluates every active start; a Newton polish's
            finite-difference Hessian, one call of ``P + 1`` rows, counts as one).
        seconds: wall-clock seconds of the round.

    Example:
        >>> FitPhase(name="round 0", starts=[0, 1], num_points=256, max_iterations=30,
        ...          losses={0: 0.9, 1: 0.7}, kept=[1]).kept
        [1]
    """

    name: str
    starts: list[int]
    num_points: int
    max_iterations: int | None
    losses: dict[int, float] = field(default_factory=dict)
    kept: list[int] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0


@dataclass
class FitMapInfo:
    """Bookkeeping of a :func:`fit_map` run, stored on the model as ``model.fit_map_info_``.

    Attributes:
        losses: per start, its objective (negative penalised log marginal likelihood per data point) at the end of
            the last round it took part in, on that round's points (``loss_points``); for the kept start the
            full-data loss after the polish; ``nan`` for a failed start.
        best_restart: index of the start that was kept.
        times: per start, wall-clock seconds of the rounds it took part in (a batched round counts in full for
            each of its starts).
        failures: messages of failed starts, by index (numerical failures only: non-PSD, NaN, Cholesky errors,
            non-finite objective).
        strategy: ``"batched"`` or ``"sequential"`` (the path that ran).
        fallback_reason: why the sequential path ran although the batched one was asked for (``None`` otherwise).
        phases: the rounds, in order (:class:`FitPhase`).
        dropped: start index -> name of the round after which it was dropped (not among the best).
        loss_points: per start, the number of training points its ``losses`` entry refers to.
        seconds: wall-clock seconds of the whole fit.
        start_kinds: per start, how it was initialised: ``"aligned"`` (data-aligned), ``"identity"`` (rotation 0),
            ``"gradient"`` (the targets' gradient outer product) or ``"haar"`` (a Haar-random rotation).
            When every rotated kernel has a frozen parameter, the data-driven starts all keep its current values:
            that one state runs once, under the first one's kind, before the Haar ones.

    Example:
        >>> info = FitMapInfo(losses=[0.92, float("nan"), 0.71], best_restart=2, times=[0.1, 0.1, 0.1],
        ...                   failures={1: "NotPSDError: ..."})
        >>> info.best_loss, sorted(info.failures)
        (0.71, [1])
    """

    losses: list[float] = field(default_factory=list)
    best_restart: int = -1
    times: list[float] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    strategy: str = "sequential"
    fallback_reason: str | None = None
    phases: list[FitPhase] = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)
    loss_points: list[int] = field(default_factory=list)
    seconds: float = 0.0
    start_kinds: list[str] = field(default_factory=list)

    @property
    def best_loss(self) -> float:
        """Loss of the kept start (on all training points)."""
        return self.losses[self.best_restart]


def _anisotropic_kernels(model: torch.nn.Module) -> list[RotatedAnisotropicKernel | FullSPDKernel]:
    """The rotated (SO(3) included) and full-SPD kernels of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, RotatedAnisotropicKernel | FullSPDKernel)]


def _kernel_dim(kernel: torch.nn.Module) -> int:
    return int(getattr(kernel, "dim", 3))


def _train_inputs(model: gpytorch.models.ExactGP) -> Tensor:
    X = model.train_inputs[0]
    tf = getattr(model, "input_transform", None)
    if tf is not None:
        with torch.no_grad():
            X = tf.transform(X)
    return X


def _active_inputs(X: Tensor, kernel: torch.nn.Module | None) -> Tensor:
    """The kernel's active input columns (all with ``kernel=None``), leading batch dimensions pooled: ``N x d``."""
    if kernel is not None and kernel.active_dims is not None:
        X = X.index_select(-1, kernel.active_dims.to(X.device))
    return X.reshape(-1, X.shape[-1])


def _input_spread(X: Tensor, kernel: torch.nn.Module) -> Tensor:
    """Root-mean-square spread of the kernel's active input columns (a scalar tensor)."""
    X = _active_inputs(X, kernel)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("fit_map: the training inputs contain NaN or infinite values")
    spread = X.std(dim=0).pow(2).mean().sqrt()
    if not bool(torch.isfinite(spread)) or float(spread) <= 0:
        raise ValueError("fit_map: the training inputs have zero spread; cannot initialise length-scales")
    return spread


#: Singular values of the centred active inputs below this fraction of the largest count as directions the inputs do
#: not span (:func:`_warn_if_degenerate`).
DEGENERATE_INPUT_RTOL = 1e-6


def _warn_if_degenerate(X: Tensor, kernel: torch.nn.Module) -> None:
    """:class:`~gpytorch_so3.exceptions.DegenerateInputsWarning` if the kernel's inputs span fewer than ``d`` dims."""
    Xa = _active_inputs(X, kernel).detach().to(torch.float64)
    d = Xa.shape[-1]
    if Xa.shape[-2] < 2:
        return
    s = torch.linalg.svdvals(Xa - Xa.mean(-2, keepdim=True))
    rank = int((s > DEGENERATE_INPUT_RTOL * s[..., :1]).sum(-1).min())
    if rank < d:
        warnings.warn(
            f"fit_map: the training inputs of the {d}-D {type(kernel).__name__} span only {rank} of its {d} "
            f"dimensions; along the other {d - rank} direction(s) the data say nothing and the fitted length-scale "
            "is set by its prior (it can look like the shortest): read the principal axes within the inputs' span",
            DegenerateInputsWarning,
            stacklevel=3,
        )


def _principal_extents(X: Tensor, kernel: torch.nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """Principal extents and axes of the training inputs (PCA of the centred cloud), for data-aligned starts.

    Args:
        X: ``... x n x d`` inputs (leading batch dimensions are pooled); with ``kernel`` only its active columns
            are used, which must be the kernel's ``dim`` (3 for the SO(3) and full-SPD kernels).
        kernel: the kernel whose ``active_dims`` select the columns (``None``: all columns).

    Returns:
        ``(extents, axes)``: ``extents`` ``(dim,)`` ascending, the standard deviation of the cloud along each
        principal axis (square roots of the eigenvalues of its covariance, divided by ``n``), floored at
        :data:`MIN_EXTENT_RATIO` times the largest so that a planar or collinear cloud still gives positive
        values; ``axes`` ``dim x dim`` with the principal directions as columns (``extents[i]`` goes with column
        ``i``), a proper rotation (determinant +1). Both float64.

    Raises:
        ValueError: fewer than two points, a column count other than ``dim``, non-finite inputs, or all points
            coincide.
    """
    X = _active_inputs(X, kernel).detach().to(torch.float64)
    dim = 3 if kernel is None else _kernel_dim(kernel)
    if X.shape[-1] != dim or X.shape[0] < 2:
        raise ValueError(
            f"fit_map: need at least 2 points with {dim} coordinates, got inputs of shape {tuple(X.shape)}"
        )
    if not bool(torch.isfinite(X).all()):
        raise ValueError("fit_map: the training inputs contain NaN or infinite values")
    Xc = X - X.mean(dim=0)
    cov = Xc.T @ Xc / X.shape[0]
    evals, axes = torch.linalg.eigh(0.5 * (cov + cov.T))  # ascending eigenvalues
    extents = evals.clamp_min(0).sqrt()
    top = float(extents[-1])
    if not top > 0:
        raise ValueError("fit_map: the training inputs have zero spread; cannot initialise length-scales")
    extents = extents.clamp_min(MIN_EXTENT_RATIO * top)
    return extents, _proper(axes)


def _proper(axes: Tensor) -> Tensor:
    """Orthonormal columns with the last one negated if needed, so that the determinant is +1 (a rotation)."""
    if float(torch.linalg.det(axes)) < 0:
        axes = torch.cat([axes[:, :-1], -axes[:, -1:]], dim=1)
    return axes


def _capped_spectrum(G: Tensor) -> tuple[Tensor, Tensor] | None:
    """Eigenvalues (ascending) and eigenvectors of a gradient outer product, the eigenvalues capped from below.

    The floor is ``GRADIENT_MAX_ANISOTROPY**-2`` times the largest. ``None`` if ``G`` is not finite or has no
    positive eigenvalue.
    """
    if not bool(torch.isfinite(G).all()):
        return None
    evals, vecs = torch.linalg.eigh(0.5 * (G + G.T))
    top = float(evals[-1])
    if not top > 0:
        return None
    return evals.clamp_min(top / GRADIENT_MAX_ANISOTROPY**2), vecs


def _gradient_outer_product(X: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, float] | None:
    r"""Average outer product of the gradients of a pilot GP's posterior mean at the training inputs.

    For a stationary field with metric ``M`` the expected gradient outer product ``E[grad f grad f^T]`` is
    proportional to ``M`` (``-nabla^2 k(0)``), so its eigenvectors are the principal directions and its eigenvalues
    scale like ``l_i^-2``: the "outer product of gradients" estimator of the directions a function varies along
    (Hristache et al., 2001; Xia et al., 2002), here with a GP posterior mean as the smoother. The pilot is an RBF
    GP whose length-scale (:data:`GRADIENT_PILOT_LENGTHSCALE_FACTORS` times the inputs' RMS spread) and
    noise-to-signal ratio (:data:`GRADIENT_PILOT_NOISE_RATIOS`) maximise the marginal likelihood with the signal
    variance profiled out, on at most :data:`GRADIENT_PILOT_POINTS` training points. The pilot starts isotropic;
    each of :data:`GRADIENT_PILOT_ITERATIONS` passes refits it with the previous pass's outer product as its
    metric (normalised, anisotropy capped at :data:`GRADIENT_MAX_ANISOTROPY`), which sharpens the directions an
    isotropic smoother blurs (in 6-D at n = 600, ``benchmarks/sod_recovery.py`` fields: 20-60 degrees after one
    pass, 10-30 after three).

    Args:
        X: ``n x D`` inputs (all input columns, float64).
        y: ``n`` targets.
        generator: draws the subset when ``n`` exceeds :data:`GRADIENT_PILOT_POINTS`.

    Returns:
        ``(G, ell)``: the ``D x D`` gradient outer product (in the coordinates of ``X``) and the last pilot's
        length-scale in whitened units (the geometric mean of its principal length-scales); ``None`` when the
        targets are constant or no pilot can be factorised.
    """
    n = X.shape[0]
    if n > GRADIENT_PILOT_POINTS:
        index = torch.randperm(n, generator=generator)[:GRADIENT_PILOT_POINTS]
        X, y, n = X[index], y[index], GRADIENT_PILOT_POINTS
    y = y - y.mean()
    scale = y.norm() / math.sqrt(n)
    spread = X.std(dim=0).pow(2).mean().sqrt()
    if not (scale > 0 and spread > 0):
        return None
    y = y / scale
    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    A = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)  # pilot metric A A^T; inputs z = x A
    result = None
    for _ in range(GRADIENT_PILOT_ITERATIONS):
        Z = X @ A
        sq = torch.cdist(Z, Z).square()
        best = None  # (profiled log marginal likelihood, ell, alpha, C)
        for factor in GRADIENT_PILOT_LENGTHSCALE_FACTORS:
            ell = float(spread) * factor
            C = torch.exp(-0.5 * sq / ell**2)
            for tau in GRADIENT_PILOT_NOISE_RATIOS:
                L, info = torch.linalg.cholesky_ex(C + tau * eye)
                if int(info) != 0:
                    continue
                alpha = torch.cholesky_solve(y.unsqueeze(-1), L).squeeze(-1)
                # log N(y | 0, s (C + tau I)) with s = y^T (C + tau I)^-1 y / n profiled out, constants dropped
                value = -0.5 * n * math.log(float(y @ alpha) / n) - float(torch.log(torch.diagonal(L)).sum())
                if math.isfinite(value) and (best is None or value > best[0]):
                    best = (value, ell, alpha, C)
        if best is None:
            break
        _, ell, alpha, C = best
        W = C * alpha  # grad_z m(z_i) = sum_j alpha_j C_ij (z_j - z_i) / ell^2;  grad_x = A grad_z
        grads = (W @ Z - W.sum(dim=1, keepdim=True) * Z) / ell**2 @ A.T
        G = grads.T @ grads / n
        spectrum = _capped_spectrum(G)
        if spectrum is None:
            break
        root, vecs = spectrum[0].sqrt(), spectrum[1]
        norm = root.log().mean().exp()  # det(A) = 1: the pilot's ell is the geometric mean of its length-scales
        result = (G, ell)
        A = vecs * (root / norm)
    return result


def _model_gradient_outer_product(model: gpytorch.models.ExactGP, X: Tensor, seed: int) -> tuple[Tensor, float] | None:
    """:func:`_gradient_outer_product` of a model's training data (``None`` for batched or multi-output models)."""
    y = model.train_targets
    if X.dim() != 2 or y.dim() != 1 or y.shape[0] != X.shape[0]:
        return None
    X, y = X.detach().to(torch.float64), y.detach().to(torch.float64)
    if not (bool(torch.isfinite(X).all()) and bool(torch.isfinite(y).all())):
        return None
    generator = torch.Generator().manual_seed((seed + 0x6AD) % MAX_SEED)
    return _gradient_outer_product(X, y, generator)


def _gradient_geometry(gop: tuple[Tensor, float] | None, kernel: torch.nn.Module) -> tuple[Tensor, Tensor] | None:
    """A start ``(lengthscales, axes)`` for one kernel from :func:`_gradient_outer_product` (``None``: no start).

    The block of ``G`` on the kernel's active columns is eigendecomposed; the length-scale along eigenvector ``i`` is
    ``lambda_i^(-1/2)`` (eigenvalues floored at :data:`GRADIENT_MAX_ANISOTROPY` to the power -2 times the largest, so a
    direction the pilot saw no variation along gets a long but finite length-scale), rescaled so that their
    geometric mean is the pilot's isotropic length-scale. ``axes`` is a proper rotation (determinant +1).
    """
    if gop is None:
        return None
    G, ell = gop
    d = _kernel_dim(kernel)
    if kernel.active_dims is not None:
        idx = kernel.active_dims.to(G.device)
        G = G.index_select(0, idx).index_select(1, idx)
    spectrum = None if G.shape != (d, d) else _capped_spectrum(G)
    if spectrum is None:
        return None
    evals, axes = spectrum
    ls = evals.rsqrt()
    return ls * (ell / ls.log().mean().exp()), _proper(axes)


def _strictly_inside(constraint: object, value: Tensor) -> Tensor:
    """Clamp ``value`` strictly inside a gpytorch constraint's bounds (a bound itself has an infinite raw value)."""
    try:
        lo, hi = float(constraint.lower_bound), float(constraint.upper_bound)
    except (AttributeError, TypeError, RuntimeError, ValueError):  # no bounds, or per-entry bounds
        return value
    if math.isfinite(lo) and math.isfinite(hi):
        lo, hi = lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo)
    elif math.isfinite(lo):
        lo = lo + 1e-3 * abs(lo)
    return value.clamp(min=lo if math.isfinite(lo) else None, max=hi if math.isfinite(hi) else None)


def _lengthscale_factors(factors: tuple[float, float, float], dim: int) -> Tensor:
    """``factors`` (3-D) for ``dim == 3``; otherwise ``dim`` geometrically spaced values over the same range."""
    if dim == 3:
        return torch.tensor(factors, dtype=torch.float64)
    return torch.logspace(math.log10(factors[0]), math.log10(factors[-1]), dim, dtype=torch.float64)


def _initialise(
    kernel: RotatedAnisotropicKernel | FullSPDKernel,
    spread: Tensor,
    generator: torch.Generator,
    principal: tuple[Tensor, Tensor] | None = None,
    *,
    identity: bool = False,
    geometry: tuple[Tensor, Tensor] | None = None,
) -> None:
    """Set an initial orientation and unequal length-scales for one restart.

    With ``principal=None`` a Haar-random rotation with length-scales ``spread * (0.5, 1, 2)`` (in ``d``
    dimensions: ``d`` values spaced geometrically from 0.5 to 2); with ``principal=(extents, axes)`` (from
    :func:`_principal_extents`) the data's principal axes with length-scales
    ``extents * ALIGNED_LENGTHSCALE_FACTORS`` (shortest on the thinnest axis); with ``identity=True`` the
    coordinate axes (rotation 0: an ARD kernel) with length-scales ``spread * (0.5, ..., 2)`` assigned in input
    order; with ``geometry=(lengthscales, axes)`` (from :func:`_gradient_geometry`) exactly those.
    Length-scales are clamped inside the kernel's constraint.

    This is the only kernel-specific step of :func:`fit_map` (the batched and sequential paths work on whatever
    parameters it sets).
    """
    batch = kernel.batch_shape
    ref = next(kernel.parameters())
    d = _kernel_dim(kernel)
    if geometry is not None:
        base, axes = geometry
        base, R = base.to(ref), axes.to(ref).expand(*batch, d, d)
    elif identity:
        R = torch.eye(d, dtype=torch.float64).expand(*batch, d, d).to(ref)
        base = _lengthscale_factors(INITIAL_LENGTHSCALE_FACTORS, d).to(ref) * spread.to(ref)
    elif principal is None:
        R = sod.random_rotation(d, *batch, generator=generator, dtype=torch.float64).to(ref)
        base = _lengthscale_factors(INITIAL_LENGTHSCALE_FACTORS, d).to(ref) * spread.to(ref)
    else:
        extents, axes = principal
        R = axes.to(ref).expand(*batch, d, d)
        base = _lengthscale_factors(ALIGNED_LENGTHSCALE_FACTORS, d).to(ref) * extents.to(ref)
    ls = base.expand(*batch, d)
    # A parameter the user froze (``requires_grad=False``, as for BoTorch's fit_gpytorch_mll) keeps its value. Then the
    # data-driven starts keep the kernel's current values (BoTorch's start) and the Haar ones draw the free part: a
    # Haar rotation, or (rotation frozen) the spread factors assigned to the fixed axes in a random order.
    fit_rotation, fit_lengthscale = _free_parts(kernel)
    if not (fit_rotation and fit_lengthscale):
        if principal is not None or identity or geometry is not None:
            return
        if not fit_rotation:
            perm = torch.randperm(d, generator=generator)
            ls = (_lengthscale_factors(INITIAL_LENGTHSCALE_FACTORS, d)[perm].to(ref) * spread.to(ref)).expand(*batch, d)
    with torch.no_grad():
        if isinstance(kernel, RotatedAnisotropicKernel):
            if fit_lengthscale:
                kernel.lengthscale = _strictly_inside(kernel.raw_lengthscale_constraint, ls.unsqueeze(-2))
            if fit_rotation:
                kernel.rotation = sod.log_map(R)
        else:
            # z = x L with L L^T = R diag(l^-2) R^T: L is the Cholesky factor of that metric.
            M = (R / ls.unsqueeze(-2).square()) @ R.transpose(-1, -2)
            L = torch.linalg.cholesky(0.5 * (M + M.transpose(-1, -2)))
            diag = torch.diagonal(L, dim1=-2, dim2=-1)
            if fit_lengthscale:
                kernel.cholesky_diag = _strictly_inside(kernel.raw_cholesky_diag_constraint, diag)
            if fit_rotation:
                kernel.initialize(cholesky_offdiag=L[..., (1, 2, 2), (0, 0, 1)])


def _free_parts(kernel: RotatedAnisotropicKernel | FullSPDKernel) -> tuple[bool, bool]:
    """Whether the rotation and the length-scales are fitted (``False``: frozen, ``requires_grad=False``)."""
    if isinstance(kernel, RotatedAnisotropicKernel):
        return kernel.raw_rotation.requires_grad, kernel.raw_lengthscale.requires_grad
    return kernel.cholesky_offdiag.requires_grad, kernel.raw_cholesky_diag.requires_grad


def _is_thin(principals: list) -> bool:
    """Whether any kernel's input cloud is thin (see :data:`THIN_EXTENT_RATIO`)."""
    return any(p is not None and float(p[0][0] / p[0][-1]) < THIN_EXTENT_RATIO for p in principals)


def _wrap_rotations(kernels: list) -> bool:
    """Move each fitted rotation to its best equivalent representative (same kernel); ``True`` if a prior rose.

    The metric ``R diag(l)^-2 R^T`` is the same for the ``2^(d-1) d!`` signed permutations ``(l |P|, R P)``
    (:func:`gpytorch_so3.sod.signed_permutations`) and for every preimage ``w`` of ``R``, so the likelihood is too.
    A prior on the so(d) coordinates that is not the Haar measure (:class:`~gpytorch_so3.priors.GaussianRotationPrior`,
    :class:`~gpytorch_so3.priors.GaussianLieAlgebraPrior`, :class:`~gpytorch_so3.priors.ShrinkageRotationPrior`:
    centred at ``w = 0``) is not: it prefers the representative nearest the identity, and the MAP objective then
    depends on which one L-BFGS happens to reach. Such a kernel is moved to the representative of highest prior
    density (:func:`_prior_representative`; the objective can only fall) and the polish continues from there
    (:data:`REPRESENTATIVE_REPOLISHES`); measured in ``benchmarks/results/sod_recovery.json``. The Haar priors are
    invariant under the symmetries as measures on SO(d) (their coordinate densities differ between representatives
    only by the Jacobian of the exponential map, not by a preference between orientations), so with them, or without
    a rotation prior, ``d <= 3`` rotations are rewritten with the principal logarithm (``|w| <= pi``; L-BFGS may
    leave ``|w| > pi``) so fitted rotations are comparable, and ``d >= 4`` ones are left as fitted.
    """
    rose = False
    with torch.no_grad():
        for k in kernels:
            if not isinstance(k, RotatedAnisotropicKernel):
                continue
            prior = getattr(k, "rotation_prior", None)
            fitted = k.raw_rotation.requires_grad and k.raw_lengthscale.requires_grad  # not user-fixed
            if prior is not None and not isinstance(prior, HaarRotationPrior | HaarAnglePrior) and fitted:
                rose |= _prior_representative(k)
            elif k.dim <= 3 and k.raw_rotation.requires_grad:
                k.rotation = sod.log_map(sod.exp_map(k.rotation, k.dim), check=False)
    return rose


#: After a polish ends at a representative whose prior density a symmetry raises (:func:`_wrap_rotations`), the polish
#: is run again from there at most this many times.
REPRESENTATIVE_REPOLISHES = 2


def _representative_row(obj: _BatchedObjective, model: torch.nn.Module, kernels: list, row: np.ndarray) -> np.ndarray:
    """A start's row ``(1, P)`` moved to its best representative (:func:`_wrap_rotations`), or ``row`` itself."""
    obj.load(model, row[0])
    if not _wrap_rotations(kernels):
        return row
    return obj.to_internal(obj.flat(model)[None])


#: :func:`_prior_representative` scores all ``2^(d-1) d!`` signed permutations up to this dimension (d = 6: 23,040
#: candidates, ~0.2 s); above it, hill climbs (:func:`_hill_climb_representative`). The climbs are a heuristic that
#: never lowers the prior: forced in d = 4, 5, 6 on 20 Haar-random rotations each (shrinkage prior), two climbs
#: alone missed the exhaustive optimum on 1, 2 and 11 of them (by at most 0.4, 0.8 and 5.1 nats); with the kicked
#: restarts of :data:`REPRESENTATIVE_CLIMB_KICKS` on 0, 0 and 1 (0.6 nats).
REPRESENTATIVE_EXHAUSTIVE_MAX_DIM = 6
#: Above :data:`REPRESENTATIVE_EXHAUSTIVE_MAX_DIM`: climbs restarted from the best representative found, kicked by
#: five random moves (iterated local search). Measured on 5 Haar rotations (shrinkage prior): 0-2.8 nats above the
#: two climbs in d = 7, 0-7.1 in d = 10, at ~0.7 s (d = 7) and ~1 s (d = 10) per search instead of ~0.1 s.
REPRESENTATIVE_CLIMB_KICKS = 32
#: Whether the kicked restarts also run when neither climb improved the current representative. ``False`` (the
#: default) skips them there: of 40 searches recorded in ``fit_map`` fits in d = 7, 8, 10 (BO-shaped designs,
#: ``benchmarks/bench_representative.py``) 35 started at such a local optimum and the kicks improved none of them,
#: while they were ~97% of the search time; the other 5 (a start's first search from a far representative) kick as
#: before. Every search there, and the Haar and forced-climb measurements above, give the same representative
#: either way; forced in d = 6 on the 67 searches of 8 fits (exhaustive optimum known) the climbs missed it on 5
#: searches with this rule and on 3 with the kicks always on (by at most 1.6 nats of prior density).
REPRESENTATIVE_KICK_LOCAL_OPTIMA = False
#: Candidates scored per chunk (times the kernel's batch size) in :func:`_prior_representative`.
REPRESENTATIVE_CHUNK = 25_000


def _kernel_log_prior(k: RotatedAnisotropicKernel, w: Tensor, ls: Tensor, batch: torch.Size) -> Tensor:
    """Rotation plus length-scale log prior ``(C, *batch)``: ``w`` ``(C, *batch, m)``, ``ls`` ``(C, *batch, 1, d)``."""
    lp = k.rotation_prior.log_prob(w)
    prior = getattr(k, "lengthscale_prior", None)
    if prior is not None:
        lq = prior.log_prob(ls)
        lp = lp + lq.reshape(*lq.shape[: 1 + len(batch)], -1).sum(-1)
    return lp


def _representative_candidates(R: Tensor, ls: Tensor, P: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(RP, w, ls)`` of the representatives ``R P`` for ``P`` ``(C, *batch or 1s, d, d)`` (float64)."""
    RP = R.unsqueeze(0) @ P
    return RP, sod.log_map(RP, check=False), ls.unsqueeze(0) @ P.abs()


def _exact_logs(RP: Tensor, w: Tensor) -> Tensor:
    """Whether ``w = log_map(RP)`` is a logarithm (it is inexact within a few eps of a half-turn)."""
    return torch.isfinite(w).all(-1) & ((sod.exp_map(w, RP.shape[-1]) - RP).abs().amax((-2, -1)) < 1e-8)


def _prior_representative(k: RotatedAnisotropicKernel) -> bool:
    """Set ``k``'s ``(lengthscale, rotation)`` to the equivalent representative of highest prior density.

    The search is :func:`_best_representative`, scored by the kernel's rotation and length-scale priors, per batch
    element. Returns ``True`` if any element changed (its prior rose by > 1e-9).
    """
    batch = k.raw_rotation.shape[:-1]
    dtype = k.raw_rotation.dtype
    w0 = k.rotation.detach().to(torch.float64)
    ls0 = k.lengthscale.detach().to(torch.float64).expand(*batch, 1, k.dim)
    best_w, best_ls, changed = _best_representative(w0, ls0, k.dim, lambda w, ls: _kernel_log_prior(k, w, ls, batch))
    if changed:
        k.lengthscale = best_ls.to(dtype)
        k.rotation = best_w.to(dtype)
    return changed


def _best_representative(w0: Tensor, ls0: Tensor, d: int, score) -> tuple[Tensor, Tensor, bool]:
    """The representative ``(w, ls)`` of the metric of ``(w0, ls0)`` with the highest ``score``, per batch element.

    Candidates: ``w0`` itself and the principal logarithms of ``R P`` (``R = exp(w0)``) for the signed permutations
    ``P`` (all of them for ``d <= REPRESENTATIVE_EXHAUSTIVE_MAX_DIM``, else those :func:`_hill_climb_representative`
    visits); a candidate whose logarithm is inexact (near a half-turn) is never chosen. ``w0`` ``(*batch, m)`` and
    ``ls0`` ``(*batch, 1, d)`` in float64; ``score(w, ls)`` maps candidates ``(C, *batch, m)``, ``(C, *batch, 1, d)``
    to log densities broadcastable to ``(C, *batch)``. Returns ``(w, ls, changed)``, ``changed`` if any element's
    score rose by more than 1e-9.
    """
    batch = w0.shape[:-1]
    R = sod.exp_map(w0, d)

    def scores(w: Tensor, ls: Tensor) -> Tensor:
        return score(w, ls).expand(w.shape[0], *batch)

    best_lp = scores(w0.unsqueeze(0), ls0.unsqueeze(0))[0]
    start_lp = best_lp.clone()
    best_w, best_ls = w0.clone(), ls0.clone()
    ones = [1] * len(batch)

    def consider(P: Tensor) -> Tensor:
        """Score candidates ``P`` ``(C, *batch, d, d)`` and keep the best so far; returns their scores."""
        nonlocal best_lp
        RP, w, ls = _representative_candidates(R, ls0, P)
        lp = torch.where(torch.isfinite(w).all(-1), scores(w, ls), -math.inf)
        while True:  # the winners' logarithms are checked (checking all candidates would double the cost)
            top, idx = lp.max(0)
            rp = RP.gather(0, idx.reshape(1, *batch, 1, 1).expand(1, *batch, d, d))[0]
            bad = ~_exact_logs(rp, w.gather(0, idx.reshape(1, *batch, 1).expand(1, *batch, w.shape[-1]))[0])
            if not bool((bad & torch.isfinite(top)).any()):
                break
            lp = lp.scatter(0, idx.unsqueeze(0), torch.where(bad, -math.inf, top).unsqueeze(0))
        better = top > best_lp
        if bool(better.any()):
            pick = idx.reshape(1, *batch, 1)
            best_w.copy_(torch.where(better.unsqueeze(-1), w.gather(0, pick.expand(1, *batch, w.shape[-1]))[0], best_w))
            ls_pick = ls.gather(0, pick.unsqueeze(-1).expand(1, *batch, 1, d))[0]
            best_ls.copy_(torch.where(better.reshape(*batch, 1, 1), ls_pick, best_ls))
            best_lp = torch.where(better, top, best_lp)
        return lp

    if d <= REPRESENTATIVE_EXHAUSTIVE_MAX_DIM:
        P = sod.signed_permutations(d, dtype=R.dtype, device=R.device)
        chunk = max(1, REPRESENTATIVE_CHUNK // max(1, batch.numel()))
        for i in range(0, P.shape[0], chunk):
            consider(P[i : i + chunk].reshape(-1, *ones, d, d))
    else:
        _hill_climb_representative(R, consider, batch)
    return best_w, best_ls, bool((best_lp > start_lp + 1e-9).any())


def _hill_climb_representative(R: Tensor, consider, batch: torch.Size) -> None:
    """Large ``d``: hill climbs over signed permutations, moving to the best neighbour while the density rises.

    ``consider`` scores candidates ``(C, *batch, d, d)`` and returns their log densities. Neighbours of ``P``, for
    each pair of columns ``i < j``: the two swaps of ``i`` and ``j`` (one of them negated, so ``det = +1``) and the
    sign flip of both (``3 d (d - 1) / 2`` in all). Climbs start from the current representative and from the
    signed permutation nearest to ``R`` (:func:`gpytorch_so3.sod.nearest_signed_permutation`); if either rose above
    the current representative, :data:`REPRESENTATIVE_CLIMB_KICKS` more from the best so far kicked by five random
    moves (iterated local search; a fixed generator, so reproducible). A current representative that neither climb
    can improve is kept without kicks: in a fit that is the rotation an earlier search chose, moved by a local
    optimisation (see :data:`REPRESENTATIVE_KICK_LOCAL_OPTIMA`).
    """
    d = R.shape[-1]
    eye = torch.eye(d, dtype=R.dtype, device=R.device)
    moves = []  # (3 pairs, d, d) right factors: P -> P G
    for i in range(d):
        for j in range(i + 1, d):
            for si, sj in ((1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
                G = eye.clone()
                if si * sj < 0:  # a swap of columns i and j, one negated
                    G[:, [i, j]] = eye[:, [j, i]]
                G[:, i] *= si
                G[:, j] *= sj
                moves.append(G)
    G = torch.stack(moves).reshape(-1, *[1] * len(batch), d, d)

    def climb(P: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(end, its score, the start's score)`` of a steepest-ascent climb from ``P``."""
        current = start_lp = consider(P.unsqueeze(0))[0]
        for _ in range(d * d):
            cands = P.unsqueeze(0) @ G  # (moves, *batch, d, d)
            lp = consider(cands)
            top, idx = lp.max(0)
            up = top > current + 1e-12
            if not bool(up.any()):
                break
            nxt = cands.gather(0, idx.reshape(1, *batch, 1, 1).expand(1, *batch, d, d))[0]
            P = torch.where(up.reshape(*batch, 1, 1), nxt, P)
            current = torch.where(up, top, current)
        return P, current, start_lp

    best_P, best, current = climb(eye.expand(*batch, d, d))
    gen = torch.Generator().manual_seed(0)  # the kicks are fixed: the same fit gives the same representative
    for k in range(1 + REPRESENTATIVE_CLIMB_KICKS):
        if k == 0:
            start = sod.nearest_signed_permutation(R)
        elif not REPRESENTATIVE_KICK_LOCAL_OPTIMA and not bool((best > current + 1e-9).any()):  # a local optimum
            break
        else:  # iterated local search: kick the best so far by 5 random moves and climb again
            kick = G[torch.randint(0, G.shape[0], (5,), generator=gen)]
            start = best_P @ kick[0] @ kick[1] @ kick[2] @ kick[3] @ kick[4]
        P, lp, _ = climb(start)
        up = lp > best
        best_P = torch.where(up.reshape(*batch, 1, 1), P, best_P)
        best = torch.where(up, lp, best)


def _plain_gpytorch_closure(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure | None:
    """A loss closure for a plain gpytorch ``ExactGP`` (``None`` for BoTorch models, which get BoTorch's own).

    BoTorch's default closure calls ``model.transform_inputs``, which only BoTorch models have; a plain gpytorch
    ``ExactGP`` gets the same negative marginal log likelihood (plus log priors) without input transforms.
    """
    if hasattr(mll.model, "transform_inputs"):
        return None

    def forward() -> Tensor:
        model = mll.model
        return -mll(model(*model.train_inputs), model.train_targets, *model.train_inputs)

    return ForwardBackwardClosure(forward=forward, parameters=get_parameters(mll, requires_grad=True))


def _exact_loss(mll: ExactMarginalLogLikelihood) -> float:
    model = mll.model
    with torch.no_grad():
        out = model(*model.train_inputs)
        loss = -mll(out, model.train_targets)
    return float(loss.sum())


def _check_seed(seed: object) -> int | None:
    """``seed`` as an int in ``[0, 2**63)`` (``None`` passes); ``TypeError``/``ValueError`` naming it otherwise."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"fit_map: seed must be an int in [0, 2**63) or None, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"fit_map: seed must be an int in [0, 2**63) or None, got {int(seed)}")
    return int(seed)


def _check_halving(halving: object) -> tuple[tuple[int | None, int, float], ...]:
    try:
        rounds = tuple((p, it, float(keep)) for p, it, keep in halving)  # type: ignore[union-attr]
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"fit_map: halving must be a sequence of (max_points, max_iterations, keep), got {halving!r}"
        ) from e
    if not rounds:
        raise ValueError("fit_map: halving needs at least one round")
    checked = []
    for p, it, keep in rounds:
        bad = ValueError(
            "fit_map: each halving round is (max_points: int >= 1 or None, max_iterations >= 1, keep in (0, 1]), "
            f"got {(p, it, keep)!r}"
        )
        try:  # a non-integer count is a TypeError naming it; a count out of range keeps the round's message
            p = check_int("halving max_points", p, 1, allow_none=True, where="fit_map: ")
            it = check_int("halving max_iterations", it, 1, where="fit_map: ")
        except ValueError:
            raise bad from None
        if not 0 < keep <= 1:
            raise bad
        checked.append((p, it, keep))
    return tuple(checked)


class _Unbatchable(Exception):
    """The model cannot be evaluated as a batch of starts (the sequential path runs instead)."""


# ---------------------------------------------------------------------------------------------- batched starts
class _GaussianLogDensity(torch.autograd.Function):
    r"""``log N(y | mu, K)`` over a batch, with the closed-form gradient.

    Forward: one Cholesky factor ``L`` of ``K`` (linear_operator's ``psd_safe_cholesky``: the same jitter retries
    and ``NotPSDError`` as gpytorch's exact path), ``alpha = K^{-1} (y - mu)``. Backward:
    ``d/dK = (alpha alpha^T - K^{-1}) / 2`` and ``d/dmu = alpha`` with ``K^{-1}`` from ``cholesky_inverse``,
    about a third of the flops of autograd through ``cholesky`` and two triangular solves (measured in
    ``benchmarks/bench_fit.py``'s evaluation timings).
    """

    @staticmethod
    def forward(ctx, y: Tensor, mu: Tensor, K: Tensor) -> Tensor:
        L = psd_safe_cholesky(K)
        r = (y - mu).unsqueeze(-1)
        alpha = torch.cholesky_solve(r, L)
        n = K.shape[-1]
        logdet = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        val = -0.5 * ((r * alpha).sum((-1, -2)) + logdet + n * math.log(2 * math.pi))
        ctx.save_for_backward(L, alpha)
        return val

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[None, Tensor, Tensor]:
        L, alpha = ctx.saved_tensors
        g = g.unsqueeze(-1)
        grad_K = 0.5 * g.unsqueeze(-1) * (alpha @ alpha.transpose(-1, -2) - torch.cholesky_inverse(L))
        return None, g * alpha.squeeze(-1), grad_K


class _BatchedObjective:
    """The per-start objective of ``S`` starts of one model, evaluated in one call.

    A private deep copy of the model whose trainable parameters are, at each evaluation, views of one leaf tensor
    ``x`` of shape ``B x P`` (``B`` active starts, ``P`` parameters of one start); kernel and mean batch shapes get
    a leading ``B``. Training inputs/targets stay unbatched (a subset of them in early rounds) and broadcast.

    Coordinates: a parameter bounded below only (BoTorch's noise, ``GreaterThan(1e-4, transform=None)``) is optimised
    as ``log(raw - lower)`` (the optimum is the same; near a small noise level its curvature in raw units is
    ``~1 / noise^2`` and L-BFGS-B crawled: ~120 iterations for the last 1e-3 of the objective at n = 300); other
    finite bounds are passed to L-BFGS-B as they are.

    The objective of each start is exactly what :func:`fit_map`'s sequential path minimises:
    ``-(log p(y | theta) + added loss terms + log priors) / n``, summed over the model's own batch (outputs), the
    prior terms reduced per start and output as gpytorch's ``ExactMarginalLogLikelihood._add_other_terms`` does
    (never summed across starts).
    """

    #: Optimise lower-bounded-only parameters in log coordinates (``False``: raw units, as the sequential path).
    log_coordinates: bool = True

    def __init__(
        self,
        model: gpytorch.models.ExactGP,
        params: dict[str, Tensor],
        bounds: dict[str, tuple],
        log_coordinates: bool | None = None,
    ) -> None:
        if log_coordinates is not None:
            self.log_coordinates = log_coordinates
        self.model = copy.deepcopy(model)
        self.model.train()
        self.names = list(params)
        modules = dict(self.model.named_modules())
        self.slots: list[tuple[torch.nn.Module, str, torch.Size, int, int]] = []
        offset = 0
        for name in self.names:
            mod_name, _, attr = name.rpartition(".")
            module = modules[mod_name]
            shape = module._parameters[attr].shape
            self.slots.append((module, attr, shape, offset, shape.numel()))
            offset += shape.numel()
        self.size = offset
        # parameters the user froze (requires_grad=False): constants, repeated along the starts' batch dimension
        self.frozen = [
            (modules[name.rpartition(".")[0]], name.rpartition(".")[2], p.detach())
            for name, p in self.model.named_parameters()
            if name not in params
        ]
        # per-element L-BFGS-B bounds in raw units, then the log coordinates of the lower-bounded-only entries
        raw_bounds = get_per_element_bounds(params, bounds, torch.Size([]))
        raw_bounds = np.full((offset, 2), (-np.inf, np.inf)) if raw_bounds is None else raw_bounds
        self.log_lower = np.isfinite(raw_bounds[:, 0]) & ~np.isfinite(raw_bounds[:, 1]) & self.log_coordinates
        self.lower = np.where(self.log_lower, raw_bounds[:, 0], 0.0)
        raw_bounds[self.log_lower] = (-np.inf, np.inf)
        self.bounds = None if np.isinf(raw_bounds).all() else raw_bounds
        # effective batch shapes (a ScaleKernel built without batch_shape around a batched base kernel has the base's)
        self.kernels = [(m, m.batch_shape) for m in self.model.modules() if isinstance(m, Kernel)]
        self.means = [
            (m, vars(m)["batch_shape"])
            for m in self.model.modules()
            if isinstance(m, Mean) and isinstance(vars(m).get("batch_shape"), torch.Size)
        ]
        self.inputs = tuple(model.train_inputs)
        self.targets = model.train_targets
        # known observation noise (BoTorch's train_Yvar): one variance per point, subset with the points
        lik = self.model.likelihood
        fixed = isinstance(lik, gpytorch.likelihoods.FixedNoiseGaussianLikelihood)
        self.fixed_noise = lik.noise_covar.noise.detach().clone() if fixed else None
        self.points = (self.inputs, self.targets, self.fixed_noise)  # the points in use (:meth:`set_points`)
        self.param = params[self.names[0]]
        self.log_index = torch.as_tensor(np.flatnonzero(self.log_lower), device=self.param.device)
        self.lower_t = torch.as_tensor(self.lower[self.log_lower]).to(self.param)
        self.evaluations = 0

    def to_internal(self, raw: np.ndarray) -> np.ndarray:
        """Raw parameter rows ``(B, P)`` -> optimiser coordinates."""
        out = np.array(raw, dtype=np.float64)
        out[..., self.log_lower] = np.log(np.maximum(out[..., self.log_lower] - self.lower[self.log_lower], 1e-300))
        return out

    def to_raw(self, x: np.ndarray) -> np.ndarray:
        """Optimiser coordinates ``(B, P)`` -> raw parameter rows."""
        out = np.array(x, dtype=np.float64)
        out[..., self.log_lower] = self.lower[self.log_lower] + np.exp(out[..., self.log_lower])
        return out

    def set_points(self, index: Tensor | None) -> None:
        """Use the training points ``index`` (``None``: all) in the following evaluations."""
        if index is None:
            self.points = (self.inputs, self.targets, self.fixed_noise)
        else:
            noise = None if self.fixed_noise is None else self.fixed_noise.index_select(-1, index)
            inputs = tuple(t.index_select(-2, index) for t in self.inputs)
            self.points = (inputs, self.targets.index_select(-1, index), noise)
        self.use_points(self.model)

    def use_points(self, model: gpytorch.models.ExactGP) -> None:
        """Give ``model`` (this objective's or a copy of the user's) the current inputs, targets and known noise."""
        model.train_inputs, model.train_targets, noise = self.points
        if noise is not None:
            model.likelihood.noise_covar.noise = noise

    @property
    def num_points(self) -> int:
        return self.model.train_targets.shape[-1]

    def losses(self, x: Tensor) -> Tensor:
        """Per-start objective ``(B,)`` at parameters ``x`` (``B x P``, in the model's dtype and device)."""
        B = x.shape[0]
        if len(self.log_index):
            x = x.index_copy(-1, self.log_index, self.lower_t + x.index_select(-1, self.log_index).exp())
        for module, attr, shape, offset, size in self.slots:
            module._parameters[attr] = x[:, offset : offset + size].reshape(B, *shape)
        for module, attr, value in self.frozen:
            module._parameters[attr] = value.expand(B, *value.shape)
        for module, batch in self.kernels:
            module._batch_shape = torch.Size([B]) + batch
        for module, batch in self.means:
            module.batch_shape = torch.Size([B]) + batch
        model = self.model
        inputs = model.train_inputs
        out = model(*inputs)
        params = tuple(model.transform_inputs(X=t) for t in inputs) if hasattr(model, "transform_inputs") else inputs
        marginal = model.likelihood(out, *params)
        y = model.train_targets
        mu, K = marginal.mean, marginal.lazy_covariance_matrix.to_dense()
        shape = torch.broadcast_shapes(y.shape, mu.shape)
        res = _GaussianLogDensity.apply(y.expand(shape), mu.expand(shape), K.expand(*shape, shape[-1]))
        if res.dim() < 1 or res.shape[0] != B:
            raise _Unbatchable(f"the batched log likelihood has shape {tuple(res.shape)}, expected ({B}, ...)")
        for term in model.added_loss_terms():
            res = res + term.loss(*params)
        nd = res.dim()
        for _, module, prior, closure, _ in model.named_priors():
            lp = prior.log_prob(closure(module))
            if lp.dim() < 1 or lp.shape[0] != B:
                raise _Unbatchable(f"a prior term has shape {tuple(lp.shape)}, expected ({B}, ...)")
            lp = lp.reshape(*lp.shape[:nd], -1).sum(-1)
            res = res + lp.reshape(*lp.shape, *([1] * (nd - lp.dim())))
        return -(res / out.event_shape.numel()).reshape(B, -1).sum(-1)

    def flat(self, module: torch.nn.Module) -> np.ndarray:
        """The raw trainable parameters of ``module`` (same parameter names) as one ``(P,)`` row."""
        params = dict(module.named_parameters())
        return torch.cat([params[nm].detach().reshape(-1) for nm in self.names]).cpu().double().numpy()

    def load(self, module: torch.nn.Module, x: np.ndarray) -> None:
        """Write one start's parameters (optimiser coordinates ``(P,)``) into ``module`` (an unbatched model)."""
        row = self.to_raw(x)
        params = dict(module.named_parameters())
        with torch.no_grad():
            for (_, _, shape, offset, size), name in zip(self.slots, self.names, strict=True):
                p = params[name]
                p.copy_(torch.as_tensor(row[offset : offset + size]).to(p).reshape(shape))

    def tensor(self, rows: np.ndarray) -> Tensor:
        return torch.as_tensor(rows).to(self.param)


class _PhaseClosure:
    """``fmin_l_bfgs_b_batched``'s objective for the rows of its ``x0`` (one start each).

    Tracks each start's best point and raises on the first numerical failure, naming the rows when it knows them.
    """

    def __init__(self, obj: _BatchedObjective, x0: np.ndarray) -> None:
        self.obj = obj
        self.best_x = x0.copy()
        self.best_f = np.full(x0.shape[0], np.inf)
        self.last: tuple[np.ndarray, list[int]] | None = None

    def __call__(self, x: np.ndarray, batch_indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        self.last = (x, batch_indices)
        self.obj.evaluations += 1
        m = self.obj.num_points
        chunk = max(1, BATCH_MAX_ELEMENTS // (m * m))
        fs, gs = [], []
        for i in range(0, x.shape[0], chunk):
            xt = self.obj.tensor(x[i : i + chunk]).requires_grad_(True)
            f = self.obj.losses(xt)
            bad = [i + j for j, ok in enumerate(torch.isfinite(f).tolist()) if not ok]
            if bad:
                raise _NonFiniteLoss(bad)
            (g,) = torch.autograd.grad(f.sum(), xt)
            bad = [i + j for j, ok in enumerate(torch.isfinite(g).all(-1).tolist()) if not ok]
            if bad:
                raise _NonFiniteLoss(bad, "gradient")
            fs.append(f.detach())
            gs.append(g)
        fn, g = torch.cat(fs).cpu().double().numpy(), torch.cat(gs)
        for row, b in enumerate(batch_indices):
            if fn[row] < self.best_f[b]:
                self.best_f[b], self.best_x[b] = fn[row], x[row]
        return fn, g.cpu().double().numpy()


def _failing_rows(obj: _BatchedObjective, x: np.ndarray) -> dict[int, str]:
    """Rows of ``x`` whose objective fails on its own (``row -> message``): isolates a failure of a batched call."""
    out = {}
    for row in range(x.shape[0]):
        try:
            with torch.no_grad():
                val = obj.losses(obj.tensor(x[row : row + 1]))
            if not bool(torch.isfinite(val).all()):
                raise _NonFiniteLoss([0])
        except _FAILURES as e:
            out[row] = f"{type(e).__name__}: {e}"
    return out


def _run_round(
    obj: _BatchedObjective,
    x0: np.ndarray,
    starts: list[int],
    bounds: np.ndarray | None,
    options: dict,
    failures: dict[int, str],
    label: str,
) -> tuple[np.ndarray, dict[int, float]]:
    """Batched L-BFGS-B of the starts ``starts`` (rows of ``x0``) on ``obj``'s current points.

    A start that fails numerically at its first evaluation is recorded in ``failures``, warned about and dropped; one
    that fails later (an over-long line-search step into a non-PSD or NaN region) ends at its best point so far with
    that point's loss. The others go on from their best point so far. Returns the final rows (``x0``'s shape) and
    the losses of the surviving starts.
    """
    x = x0.copy()
    active = list(range(len(starts)))
    stopped: dict[int, float] = {}  # position in starts -> best loss, for starts ended early by a numerical failure
    while active:
        closure = _PhaseClosure(obj, x[active])
        try:
            xs, fs, _ = fmin_l_bfgs_b_batched(closure, x[active], bounds=bounds, pass_batch_indices=True, **options)
        except _FAILURES as e:
            if closure.last is None:  # cannot happen: the optimiser evaluates before it can fail
                raise
            last_x, idx = closure.last
            if isinstance(e, _NonFiniteLoss):
                bad = {row: f"{type(e).__name__}: {e}" for row in e.rows}
            else:
                bad = _failing_rows(obj, last_x)
                if not bad:
                    msg = f"a batched evaluation failed ({type(e).__name__}: {e}) but no start alone"
                    raise _Unbatchable(msg) from e
            failed = {active[idx[row]] for row in bad}
            for j, a in enumerate(active):
                x[a] = closure.best_x[j] if np.isfinite(closure.best_f[j]) else x[a]
            for row, msg in bad.items():
                j = idx[row]
                s = starts[active[j]]
                if np.isfinite(closure.best_f[j]):
                    # a failure after finite evaluations (an over-long line-search step): the start ends at its best
                    # point so far, as BoTorch's scipy fit ends a line search on a NaN
                    stopped[active[j]] = float(closure.best_f[j])
                    continue
                failures[s] = f"{msg} (in {label})"
                warnings.warn(
                    f"fit_map start {s} failed in {label} and was dropped ({msg})", RestartFailedWarning, stacklevel=4
                )
            active = [a for a in active if a not in failed]
            continue
        x[active] = xs
        return x, {starts[a]: float(f) for a, f in [*zip(active, fs, strict=True), *stopped.items()]}
    return x, {starts[a]: f for a, f in stopped.items()}


def _newton_applicable(obj: _BatchedObjective) -> bool:
    """Whether the polish on ``obj`` uses :func:`_newton_polish` (see :data:`NEWTON_POLISH`)."""
    return (
        NEWTON_POLISH
        and obj.bounds is None
        and obj.param.dtype == torch.float64
        and obj.num_points <= NEWTON_MAX_POINTS
    )


def _newton_hessian(obj: _BatchedObjective, x: np.ndarray) -> np.ndarray:
    """Forward-difference Hessian ``(P, P)`` of one start's objective at ``x`` (``(P,)``), one batched call."""
    size = x.shape[0]
    h = NEWTON_DIFFERENCE_STEP * np.maximum(1.0, np.abs(x))
    E = np.diag(h)
    rows = np.concatenate([x[None], x + E])
    _, g = _PhaseClosure(obj, rows)(rows, list(range(size + 1)))
    H = (g[1:] - g[:1]) / h[:, None]
    return (H + H.T) / 2


def _floored_abs(lam: np.ndarray) -> np.ndarray:
    """``|lam|`` raised to at least ``1e-12`` of its largest entry (the curvatures of the trust-region model)."""
    top = float(np.abs(lam).max()) if lam.size else 0.0
    return np.maximum(np.abs(lam), max(top, 1e-300) * 1e-12)


def _trust_step(a: np.ndarray, V: np.ndarray, g: np.ndarray, radius: float) -> np.ndarray:
    """Minimiser of ``g.s + s.A.s / 2`` with ``|s| <= radius``, ``A = V diag(a) V^T`` (``a > 0``; by bisection)."""
    gv = V.T @ g

    def step(mu: float) -> np.ndarray:
        return -(V @ (gv / (a + mu)))

    s = step(0.0)
    if np.linalg.norm(s) <= radius:
        return s
    lo, hi = 0.0, max(float(np.linalg.norm(g)) / radius, 1e-300)  # at mu = hi, |s| < |g| / mu = radius
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(step(mid)) > radius:
            lo = mid
        else:
            hi = mid
    return step(hi)


def _newton_polish(
    obj: _BatchedObjective, x0: np.ndarray, start: int, options: dict, failures: dict[int, str], label: str
) -> tuple[np.ndarray, dict[int, float]]:
    """Trust-region Newton minimisation of one start (row ``x0``, ``(1, P)``) on ``obj``'s current points.

    Same contract as :func:`_run_round` for one start. The model Hessian is computed by finite differences
    (:func:`_newton_hessian`) at the start, then updated by the symmetric rank-one formula after each accepted step
    (SR1: keeps negative curvature, unlike BFGS), and computed again when a step proposed with an updated one is
    rejected. Each step minimises the quadratic model with the Hessian's absolute eigenvalues (a descent direction
    also near a saddle) inside a trust region, and is accepted when the objective falls by at least a tenth of the
    model's prediction; a proposal whose objective fails (non-PSD, NaN) is rejected and the region shrinks. Stops
    at L-BFGS-B's tests: largest gradient entry ``<= pgtol`` (default ``1e-5``), an accepted step that lowers the
    objective by ``<= ftol * max(|f|, 1)`` (default ``2.2e-9``), or ``maxiter`` steps; and when the last
    :data:`NEWTON_STALL_STEPS` accepted steps gained less than :data:`NEWTON_STALL_NATS` in all. If the Hessian
    cannot be evaluated (a perturbed row fails), L-BFGS-B goes on from the current point.
    """
    pgtol = float(options.get("pgtol", 1e-5))
    ftol = options.get("ftol")
    ftol = float(ftol) if ftol is not None else float(options.get("factr", 1e7)) * np.finfo(float).eps
    maxiter = int(options.get("maxiter", 15000))
    x = x0[0].copy()
    closure = _PhaseClosure(obj, x[None])
    try:
        f, g = closure(x[None], [0])
    except _FAILURES as e:
        failures[start] = f"{type(e).__name__}: {e} (in {label})"
        msg = f"fit_map start {start} failed in {label} and was dropped ({type(e).__name__}: {e})"
        warnings.warn(msg, RestartFailedWarning, stacklevel=4)
        return x0.copy(), {}
    f, g = float(f[0]), g[0]
    radius = 1.0
    H, updated = None, False  # the model Hessian, and whether it was updated since it was last computed
    gains: list[float] = []  # the decrease of each accepted step
    stall = NEWTON_STALL_NATS / obj.num_points
    for _ in range(maxiter):
        if np.abs(g).max() <= pgtol:
            break
        if H is None:
            try:
                H, updated = _newton_hessian(obj, x), False
            except _FAILURES:  # a perturbed row failed: L-BFGS-B from here
                return _run_round(obj, x[None], [start], None, options, failures, label)
        lam, V = np.linalg.eigh(H)
        a = _floored_abs(lam)
        s = _trust_step(a, V, g, radius)
        predicted = float(g @ s + 0.5 * (V.T @ s) ** 2 @ a)
        try:
            fn, gn = closure((x + s)[None], [0])
            fn, gn = float(fn[0]), gn[0]
        except _FAILURES:
            fn = math.inf
        ratio = (fn - f) / predicted if predicted < 0 else -1.0
        norm = float(np.linalg.norm(s))
        if not (math.isfinite(fn) and fn < f and ratio > 0.1):
            radius = 0.25 * norm
            if updated:  # an updated model Hessian may be what failed: compute it exactly
                H = None
            if radius < 1e-12 * max(1.0, float(np.linalg.norm(x))):
                break
            continue
        small = f - fn <= ftol * max(abs(f), abs(fn), 1.0)
        gains.append(f - fn)
        small |= len(gains) >= NEWTON_STALL_STEPS and sum(gains[-NEWTON_STALL_STEPS:]) < stall
        r = (gn - g) - H @ s  # symmetric rank-one update of the model Hessian (skipped when ill-defined)
        if abs(r @ s) > 1e-8 * norm * np.linalg.norm(r):
            H = H + np.outer(r, r) / (r @ s)
        x, f, g, updated = x + s, fn, gn, True
        if ratio > 0.75 and norm > 0.8 * radius:
            radius = 2.0 * radius
        elif ratio < 0.25:
            radius = 0.25 * norm
        if small:
            break
    return x[None], {start: f}


def _polish_round(
    obj: _BatchedObjective, row: np.ndarray, start: int, options: dict, failures: dict[int, str], label: str
) -> tuple[np.ndarray, dict[int, float]]:
    """Minimise one start to convergence: :func:`_newton_polish` where it applies, else L-BFGS-B."""
    if _newton_applicable(obj):
        return _newton_polish(obj, row, start, options, failures, label)
    return _run_round(obj, row, [start], obj.bounds, options, failures, label)


def _lbfgsb_options(optimizer_options: dict | None, maxiter: int | None) -> dict:
    """Options of ``fmin_l_bfgs_b_batched`` from scipy-style ``optimizer_options`` (``maxiter`` overrides)."""
    opts = dict(DEFAULT_OPTIMIZER_OPTIONS if optimizer_options is None else optimizer_options)
    out = {}
    for key, value in opts.items():
        if key == "gtol":
            out["pgtol"] = value
        elif key in ("maxiter", "maxcor", "ftol", "pgtol", "maxls"):
            out[key] = value
    if "ftol" in out:
        out["factr"] = None
    if maxiter is not None:
        out["maxiter"] = min(int(out.get("maxiter", maxiter)), maxiter)
    return out


def _reference_loss(model: gpytorch.models.ExactGP, obj: _BatchedObjective, row: np.ndarray) -> float:
    """One start's objective through gpytorch's own ``ExactMarginalLogLikelihood`` on ``obj``'s current points."""
    ref = copy.deepcopy(model)
    obj.load(ref, row)
    obj.use_points(ref)
    ref.train()
    mll = ExactMarginalLogLikelihood(ref.likelihood, ref)
    inputs = ref.train_inputs
    params = tuple(ref.transform_inputs(X=t) for t in inputs) if hasattr(ref, "transform_inputs") else inputs
    with torch.no_grad():
        return float(-mll(ref(*inputs), ref.train_targets, *params).sum())


def _fit_batched(
    model: gpytorch.models.ExactGP,
    mll: ExactMarginalLogLikelihood,
    x0: np.ndarray,
    names: list[str],
    info: FitMapInfo,
    *,
    halving: tuple[tuple[int | None, int, float], ...],
    optimizer_options: dict | None,
    subset_generator: torch.Generator,
    kernels: list,
    describe: list[str],
    progress: bool,
    protect: tuple[int, ...] = (),
    exact: bool = True,
) -> None:
    """The batched path: successive-halving rounds over all starts, then the polish of the best one (in place).

    Starts in ``protect`` survive every round and are polished too; the best polished start is kept.
    """
    num_starts = x0.shape[0]
    params = dict(model.named_parameters())
    _, bounds_dict = get_parameters_and_bounds(mll)
    obj = _BatchedObjective(model, {n: params[n] for n in names}, bounds_dict)
    bounds = obj.bounds
    x0 = obj.to_internal(x0)
    n = obj.targets.shape[-1]
    order = torch.randperm(n, generator=subset_generator)

    # Check once that the batch evaluates each start as the model does alone (two starts, a few points).
    check = order[: min(n, 32)].sort().values
    obj.set_points(check)
    # a batch size that no dimension of the model matches, so that a wrong broadcast cannot pass unnoticed
    sizes = {d for p in params.values() for d in p.shape} | set(obj.targets.shape)
    size = next(b for b in range(2, len(sizes) + 3) if b not in sizes)
    rows = x0[[i % num_starts for i in range(size)]]
    try:
        with torch.no_grad():
            batched = obj.losses(obj.tensor(rows)).tolist()
        reference = [_reference_loss(model, obj, r) for r in rows]
    except _Unbatchable:
        raise
    except _FAILURES:
        batched = reference = None  # a failing start: the rounds below isolate it
    except Exception as e:  # any error of an exotic module under batching: use the sequential path
        raise _Unbatchable(f"batched evaluation raised {type(e).__name__}: {e}") from e
    if batched is not None:
        tol = 1e-6 if obj.param.dtype == torch.float64 else 1e-3
        if not np.allclose(batched, reference, rtol=tol, atol=tol, equal_nan=True):
            raise _Unbatchable(f"batched objective {batched} differs from the model's own {reference}")

    info.losses = [math.nan] * num_starts
    info.loss_points = [0] * num_starts
    info.times = [0.0] * num_starts
    x = x0.copy()
    alive = [s for s in range(num_starts) if s not in protect]
    for r, (max_points, max_iterations, keep) in enumerate(halving):
        t0 = time.perf_counter()
        m = n if max_points is None else min(n, max_points)
        obj.set_points(None if m == n else order[:m].sort().values)
        label = f"round {r}"
        evaluations = obj.evaluations
        opts = _lbfgsb_options(optimizer_options, max_iterations)
        x[alive], losses = _run_round(obj, x[alive], alive, bounds, opts, info.failures, label)
        ranked = sorted(losses, key=losses.get)
        kept = ranked[: max(1, math.ceil(keep * num_starts))] if r < len(halving) - 1 else ranked[:1]
        phase = FitPhase(
            name=label,
            starts=list(alive),
            num_points=m,
            max_iterations=max_iterations,
            losses={s: losses.get(s, math.nan) for s in alive},
            kept=kept,
            evaluations=obj.evaluations - evaluations,
            seconds=time.perf_counter() - t0,
        )
        info.phases.append(phase)
        for s in alive:
            info.losses[s], info.loss_points[s] = phase.losses[s], m
            info.times[s] += phase.seconds
            if s not in kept and s not in info.failures:
                info.dropped[s] = label
        if progress:
            best = " ".join(f"{describe[s]}={losses[s]:.4g}" for s in ranked[:3])
            print(
                f"fit_map {label}: {len(alive)} starts, {m} points, {phase.seconds:.1f} s; best {best}", file=sys.stderr
            )
        # the last round ranks all survivors: the polish goes down this list if the best one fails
        alive = kept if r < len(halving) - 1 else ranked
        if r < len(halving) - 1:  # the next round continues from each survivor's best representative
            for s in kept:
                x[s] = _representative_row(obj, model, kernels, x[[s]])[0]
        if not alive:
            break

    obj.set_points(None)
    polish_opts = _lbfgsb_options(optimizer_options, None)
    raw_obj = None

    def initial(s: int) -> tuple[_BatchedObjective, np.ndarray]:
        """The objective and row a start's polish begins from."""
        nonlocal raw_obj
        if s not in protect:
            return obj, x[[s]]
        # a protected start begins from its initial state: with L-BFGS-B in the sequential path's coordinates (see
        # THIN_EXTENT_RATIO), with Newton in the rounds' ones (its steps do not depend on L-BFGS-B's coordinates)
        if _newton_applicable(obj):
            return obj, x0[[s]]
        if raw_obj is None:
            raw_obj = _BatchedObjective(model, {nm: params[nm] for nm in names}, bounds_dict, log_coordinates=False)
        return raw_obj, raw_obj.to_internal(obj.to_raw(x0[[s]]))

    # polish the best survivor and the protected starts; if all of them fail, go down the ranking
    first = [*kept, *protect]
    rest = [s for s in alive if s not in first]
    starting = {}  # start -> (objective, row) its full-data polish begins from
    if n > PREPOLISH_POINTS:
        subset = order[:PREPOLISH_POINTS].sort().values
        first, rest = _prepolish(first, rest, initial, starting, subset, polish_opts, info, describe, progress)
    best = None  # (loss, start, row)
    for s in [*first, *rest]:
        if best is not None and s not in first:
            break
        t0 = time.perf_counter()
        this, row = starting[s] if s in starting else initial(s)
        evaluations = this.evaluations
        if not exact:  # above EXACT_FIT_MAX_POINTS: gpytorch's own (CG) path on the model, as the sequential path
            this.load(model, row[0])
            try:
                _polish(mll, kernels, optimizer_options)
                xs, losses = this.to_internal(this.flat(model)[None]), {s: math.nan}
            except _FAILURES as e:
                info.failures[s] = f"{type(e).__name__}: {e} (in polish)"
                losses = {}
        settled = False  # the model holds xs[0] moved to its best representative already
        if exact:
            row = _representative_row(this, model, kernels, row)
            for attempt in range(1 + REPRESENTATIVE_REPOLISHES):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RestartFailedWarning)  # warned below, once, as a polish failure
                    xs, losses = _polish_round(this, row, s, polish_opts, info.failures, "polish")
                if not losses or attempt == REPRESENTATIVE_REPOLISHES:
                    break
                row = _representative_row(this, model, kernels, xs)
                if row is xs:  # no representative of higher prior density: converged
                    settled = True
                    break
        loss = math.nan
        if losses:
            if not settled:
                this.load(model, xs[0])
                _wrap_rotations(kernels)
            try:
                loss = _exact_loss(mll)  # the model's own objective (gpytorch), not the batched one
            except _FAILURES as e:
                info.failures[s] = f"{type(e).__name__}: {e} (in polish)"
            if not math.isfinite(loss) and s not in info.failures:
                info.failures[s] = f"non-finite objective {loss} (in polish)"
        seconds = time.perf_counter() - t0
        info.times[s] += seconds
        if not math.isfinite(loss):
            warnings.warn(
                f"fit_map start {s} failed in the polish ({info.failures[s]})", RestartFailedWarning, stacklevel=3
            )
            info.losses[s] = math.nan
            continue
        info.phases.append(
            FitPhase(
                name="polish",
                starts=[s],
                num_points=n,
                max_iterations=polish_opts.get("maxiter"),
                losses={s: loss},
                kept=[s],
                evaluations=this.evaluations - evaluations,
                seconds=seconds,
            )
        )
        info.losses[s], info.loss_points[s] = loss, n
        info.dropped.pop(s, None)  # polished (a runner-up is when the best start failed)
        if best is None or loss < best[0]:
            best = (loss, s, this, this.to_internal(this.flat(model)[None])[0])  # as wrapped
        if progress:
            print(f"fit_map polish of {describe[s]}: loss {loss:.5g} ({seconds:.1f} s)", file=sys.stderr)
    if best is None:
        raise ModelFittingError(f"fit_map: all {num_starts} starts failed: " + "; ".join(info.failures.values()))
    _, info.best_restart, this, row = best
    this.load(model, row)
    for s in first:
        if s != info.best_restart and s not in info.failures:
            info.dropped[s] = "polish"


def _prepolish(
    first: list[int],
    rest: list[int],
    initial,
    starting: dict,
    subset: Tensor,
    options: dict,
    info: FitMapInfo,
    describe: list[str],
    progress: bool,
) -> tuple[list[int], list[int]]:
    """Run the polish candidates ``first`` to convergence on ``subset`` (see :data:`PREPOLISH_POINTS`).

    Fills ``starting`` with each surviving candidate's objective and row, records a ``"pre-polish"`` phase, and
    returns the new ``(first, rest)``: the best candidate alone, then the others by subset loss, then ``rest``.
    """
    t0 = time.perf_counter()
    losses, evaluations = {}, 0
    for s in first:
        this, row = initial(s)
        before = this.evaluations
        this.set_points(subset)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RestartFailedWarning)  # a failure here is warned by the polish loop
                xs, got = _polish_round(this, row, s, options, info.failures, "pre-polish")
        finally:
            this.set_points(None)
        evaluations += this.evaluations - before
        if got:
            losses[s] = got[s]
            starting[s] = (this, xs)
        else:
            msg = f"fit_map start {s} failed in the pre-polish ({info.failures[s]})"
            warnings.warn(msg, RestartFailedWarning, stacklevel=4)
            info.losses[s] = math.nan
    ranked = sorted(losses, key=losses.get)
    seconds = time.perf_counter() - t0
    info.phases.append(
        FitPhase(
            name="pre-polish",
            starts=list(first),
            num_points=len(subset),
            max_iterations=options.get("maxiter"),
            losses={s: losses.get(s, math.nan) for s in first},
            kept=ranked[:1],
            evaluations=evaluations,
            seconds=seconds,
        )
    )
    for s in first:
        info.times[s] += seconds / len(first)
        if s in losses:
            info.losses[s], info.loss_points[s] = losses[s], len(subset)
            if s not in ranked[:1]:
                info.dropped[s] = "pre-polish"
    if progress:
        best = " ".join(f"{describe[s]}={losses[s]:.4g}" for s in ranked)
        m = len(subset)
        print(f"fit_map pre-polish: {len(first)} starts, {m} points, {seconds:.1f} s; {best}", file=sys.stderr)
    if not ranked:  # every candidate failed: the polish goes down the remaining ranking
        return rest[:1], rest[1:]
    return ranked[:1], [*ranked[1:], *rest]


def _polish(mll: ExactMarginalLogLikelihood, kernels: list, optimizer_options: dict | None) -> None:
    """L-BFGS-B of the model's current state to convergence (BoTorch's ``fit_gpytorch_mll_scipy``)."""
    mll.train()
    with warnings.catch_warnings():
        # Our own loop replaces BoTorch's retries; its convergence chatter per start is noise here.
        warnings.filterwarnings("ignore", message=".*(converge|ABNORMAL|TOTAL NO. of).*")
        options = DEFAULT_OPTIMIZER_OPTIONS if optimizer_options is None else optimizer_options
        for _ in range(1 + REPRESENTATIVE_REPOLISHES):
            fit_gpytorch_mll_scipy(mll, closure=_plain_gpytorch_closure(mll), options=options)
            if not _wrap_rotations(kernels):  # no better representative: converged
                break


def _fit_sequential(
    model: gpytorch.models.ExactGP,
    mll: ExactMarginalLogLikelihood,
    starts: list[dict[str, Tensor]],
    info: FitMapInfo,
    *,
    optimizer_options: dict | None,
    kernels: list,
    describe: list[str],
    progress: bool,
) -> None:
    """The sequential path: every start optimised to convergence on its own, the best one kept (in place)."""
    n = model.train_targets.shape[-1]
    best_state, best_loss = None, math.inf
    info.losses, info.times, info.loss_points = [], [], []
    for r, state in enumerate(starts):
        t0 = time.perf_counter()
        model.load_state_dict(state)
        loss = math.nan
        try:
            _polish(mll, kernels, optimizer_options)
            loss = _exact_loss(mll)
            if not math.isfinite(loss):
                raise _NonFiniteLoss([0])
        except _FAILURES as e:  # a failed start is skipped, not fatal
            info.failures[r] = f"{type(e).__name__}: {e}"
            warnings.warn(
                f"fit_map {describe[r]} (start {r}) failed and was skipped ({type(e).__name__}: {e})",
                RestartFailedWarning,
                stacklevel=3,
            )
            loss = math.nan
        info.losses.append(loss)
        info.loss_points.append(n)
        info.times.append(time.perf_counter() - t0)
        info.phases.append(
            FitPhase(
                name="sequential",
                starts=[r],
                num_points=n,
                max_iterations=None,
                losses={r: loss},
                kept=[r] if math.isfinite(loss) else [],
                seconds=info.times[-1],
            )
        )
        if math.isfinite(loss) and loss < best_loss:
            best_loss, best_state, info.best_restart = loss, copy.deepcopy(model.state_dict()), r
        if progress:
            mark = " *" if info.best_restart == r else ""
            print(f"fit_map {describe[r]}: loss {loss:.5g} ({info.times[-1]:.1f} s){mark}", file=sys.stderr)
    if best_state is None:
        raise ModelFittingError(f"fit_map: all {len(starts)} starts failed: " + "; ".join(info.failures.values()))
    model.load_state_dict(best_state)


def fit_map(
    model: gpytorch.models.ExactGP,
    *,
    num_restarts: int = 8,
    seed: int | None = None,
    mll: ExactMarginalLogLikelihood | None = None,
    optimizer_options: dict | None = None,
    exact: bool | None = None,
    progress: bool = False,
    data_aligned_start: bool = True,
    identity_start: bool | None = None,
    gradient_start: bool | None = None,
    strategy: str = "batched",
    halving: Sequence[tuple[int | None, int, float]] = DEFAULT_HALVING,
) -> gpytorch.models.ExactGP:
    r"""Type-II MAP estimate of the hyperparameters with Haar-random restarts over rotations.

    Each start resets the model to its state at the call, then initialises every
    :class:`~gpytorch_so3.SO3AnisotropicKernel` (and :class:`~gpytorch_so3.FullSPDKernel`) in it:

    * each of the ``num_restarts`` restarts draws a Haar-uniform rotation (independent of the data) and sets
      unequal length-scales ``spread * (0.5, 1, 2)``, ``spread`` being the RMS standard deviation of the kernel's
      active input columns;
    * with ``data_aligned_start`` (default), one more start, first (index 0 in ``fit_map_info_``), is
      *data-aligned*: the rotation is the principal axes
      of the training inputs (eigenvectors of the covariance of the centred kernel inputs; leading batch
      dimensions pooled) and the length-scale along principal axis ``i`` is ``extent_i * (1.5, 2.25, 3)[i]``,
      ``extent_i`` being the standard deviation of the inputs along it (ascending; floored at
      :data:`MIN_EXTENT_RATIO` times the largest, so planar or collinear clouds work). In a thin domain, such as
      drill holes whose vertical extent is a few percent of the horizontal one, this is the start whose short
      length-scale fits the thin axis: the Haar starts' length-scales all exceed it and at small ``n`` can miss
      a layered optimum (measured on the bundled drill holes, n = 150-300: layering found in 18/18 subsamples
      with this start, 3/18 with Haar restarts alone).

    Initial length-scales are clamped strictly inside the kernel's length-scale constraint. The Haar draws come
    from a generator seeded with ``seed``, so a seed fixes every start. The objective is the negative marginal log
    likelihood plus log priors per data point (gpytorch's ``ExactMarginalLogLikelihood``, which adds registered
    priors), minimised with L-BFGS-B (the polish: Newton, see below).

    ``strategy="batched"`` (default) optimises all starts as one batch-mode copy of the model, one objective
    evaluation per iteration for all active starts, with BoTorch's batched L-BFGS-B (each start has its own
    L-BFGS-B state and convergence test, as if run alone). Successive halving (``halving``, default
    :data:`DEFAULT_HALVING`): round ``i`` runs at most ``max_iterations`` iterations on ``min(n, max_points)``
    training points (nested random subsets drawn from ``seed``), then keeps the best ``ceil(keep * starts)``
    starts; the best start of the last round is polished alone, on all points, to convergence: in float64 on up to
    :data:`NEWTON_MAX_POINTS` points by a trust-region Newton method whose Hessian comes from finite differences of
    the exact gradient in one batched evaluation (:data:`NEWTON_POLISH`; the polish took 1.7-7.4x fewer seconds
    than L-BFGS-B's in ``benchmarks/results/bench_polish.json``, most where the optimum is badly conditioned),
    otherwise by L-BFGS-B (BoTorch's batched port of scipy's). Above
    :data:`PREPOLISH_POINTS` training points the polish candidates (the round winner, and the data-aligned start
    on thin domains) first run to convergence on a nested random subset of that size, and only the best of them
    there is polished on all points (phase ``"pre-polish"`` in ``fit_map_info_``). If the model cannot be
    evaluated as a batch (an exotic module, a custom ``mll``), the sequential path runs instead and
    ``fit_map_info_.fallback_reason`` says why. ``strategy="sequential"`` runs every start to convergence on its
    own, one after another (the behaviour before batching; about ``starts`` times the cost).

    A start that fails numerically (non-PSD, NaN, Cholesky error, non-finite objective) is dropped with a
    :class:`~gpytorch_so3.exceptions.RestartFailedWarning` and recorded; the others go on. Other exceptions
    propagate. If every start fails a ``ModelFittingError`` is raised. On any exception (``KeyboardInterrupt``
    included) the model's parameters and train/eval modes are restored to their state at the call.

    A parameter frozen with ``requires_grad_(False)`` (e.g. a rotation known from geology) keeps its value, as with
    BoTorch's ``fit_gpytorch_mll``; the data-driven starts then begin from the kernel's current values of the free
    part and the Haar ones draw it (a Haar rotation, or with the rotation frozen a random assignment of the initial
    length-scales to its axes). Known noise (``SingleTaskGP(X, Y, train_Yvar)``) is subset with the points of the
    halving rounds.

    Args:
        model: a gpytorch ``ExactGP`` (BoTorch's ``SingleTaskGP`` included) containing one or more
            ``SO3AnisotropicKernel`` or ``FullSPDKernel`` modules, or a model list of them (BoTorch's
            ``ModelListGP``, gpytorch's ``IndependentModelList``): then each sub-model with such a kernel is fitted
            by ``fit_map`` with seed ``seed + i`` (its own ``fit_map_info_``), the others by BoTorch's
            ``fit_gpytorch_mll``; ``mll`` must be ``None``.
        num_restarts: number of Haar restarts (>= 1).
        seed: int in ``[0, 2**63)`` seeding the restarts' random rotations and the subsets of the halving rounds
            (``None``: fresh randomness). Same seed, same result.
        mll: the objective; default ``ExactMarginalLogLikelihood(model.likelihood, model)`` (another one runs the
            sequential path).
        optimizer_options: options of ``scipy.optimize.minimize``'s L-BFGS-B for the polish and sequential starts
            (default :data:`DEFAULT_OPTIMIZER_OPTIONS`, ``{"maxiter": 1000}``); ``maxiter``, ``ftol``, ``gtol``,
            ``maxcor`` and ``maxls`` also apply to the halving rounds (whose ``max_iterations`` caps ``maxiter``).
            The Newton polish takes ``maxiter`` (as its step cap), ``gtol`` and ``ftol`` (its stopping tests).
        exact: evaluate with Cholesky instead of CG/Lanczos (default: when ``n <= 5000``). The batched rounds always
            use Cholesky (on their subsets); with ``exact=False`` the polish runs gpytorch's own path on the model.
        progress: print one line per round (or per sequential start) to stderr.
        data_aligned_start: add the data-aligned start described above (``False``: Haar restarts only).
        identity_start: add a start at rotation 0 (the coordinate axes: an ARD kernel), after the data-aligned
            start, so that an axis-aligned optimum is always among the starts. ``None`` (default): only when a
            kernel has ``dim != 3`` (:class:`~gpytorch_so3.RotatedAnisotropicKernel`), where the coordinate axes are
            the natural reference of Bayesian optimisation; the 3-D defaults keep the measured start set.
        gradient_start: add a start, after the identity start, at the principal directions of the *targets*: the
            eigenvectors of the average outer product of the gradients of a pilot GP's posterior mean at the
            training points (which is proportional to the metric for a stationary field), length-scales from its
            eigenvalues (:func:`_gradient_outer_product`). Haar starts ignore the data, and in d > 3 dimensions
            the chance that one lands near the optimum's basin falls fast (fields of ``benchmarks/sod_recovery.py``
            in 6-D: fits ended 4-18 nats above a fit started at the truth without it). ``None`` (default): when
            a kernel has ``dim >= GRADIENT_START_MIN_DIM`` (4). Skipped for batched or multi-output models and
            constant targets.
        strategy: ``"batched"`` (default) or ``"sequential"``.
        halving: the successive-halving rounds ``(max_points, max_iterations, keep)`` of the batched path.

    Returns:
        The model, with the kept start's hyperparameters, in eval mode. ``model.fit_map_info_`` holds a
        :class:`FitMapInfo` (per-start losses, one entry per start in the order of ``start_kinds``: the data-aligned,
        identity and gradient starts that apply (one if every kernel has a frozen part), then the ``num_restarts``
        Haar ones; the rounds with their losses, which starts were dropped when, which was kept, timings, failures,
        the path that ran).

    Raises:
        TypeError: ``model`` is not an ``ExactGP`` or model list, or ``num_restarts``, ``seed`` or a count of
            ``halving`` is not an int (numpy integers are accepted).
        ValueError: no SO(3)/full-SPD kernel in the model, ``num_restarts < 1``, ``seed`` out of range, bad
            ``strategy``/``halving``, training inputs with NaN/inf or zero spread, or training targets with NaN/inf.
        ModelFittingError: every start failed.

    Example:
        >>> from botorch.models import SingleTaskGP
        >>> from gpytorch.kernels import ScaleKernel
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> X = torch.rand(20, 3, dtype=torch.float64); Y = torch.sin(6 * X.sum(-1, keepdim=True))
        >>> model = SingleTaskGP(X, Y, covar_module=ScaleKernel(SO3AnisotropicKernel(nu=2.5)))
        >>> # a tiny budget to keep the example fast; the defaults are 8 restarts, polished to convergence
        >>> model = fit_map(model, num_restarts=2, seed=0, optimizer_options={"maxiter": 20})
        >>> model.training, len(model.fit_map_info_.losses)  # the data-aligned start and 2 Haar restarts
        (False, 3)
        >>> model.fit_map_info_.strategy, [p.name for p in model.fit_map_info_.phases]
        ('batched', ['round 0', 'round 1', 'polish'])
        >>> model.covar_module.base_kernel.rotation_matrix.shape  # the fitted orientation
        torch.Size([3, 3])
    """
    num_restarts = check_int("num_restarts", num_restarts, 1, where="fit_map: ")
    seed = _check_seed(seed)
    if strategy not in ("batched", "sequential"):
        raise ValueError(f"fit_map: strategy must be 'batched' or 'sequential', got {strategy!r}")
    halving = _check_halving(halving)
    kwargs = dict(
        num_restarts=num_restarts,
        optimizer_options=optimizer_options,
        exact=exact,
        progress=progress,
        data_aligned_start=data_aligned_start,
        identity_start=identity_start,
        gradient_start=gradient_start,
        strategy=strategy,
        halving=halving,
    )
    if isinstance(model, gpytorch.models.IndependentModelList):  # includes BoTorch's ModelListGP
        return _fit_model_list(model, seed=seed, mll=mll, **kwargs)
    if not isinstance(model, gpytorch.models.ExactGP):
        raise TypeError(
            "fit_map expects a gpytorch ExactGP (e.g. botorch SingleTaskGP) or a model list of them "
            f"(botorch ModelListGP), got {type(model).__name__}"
        )
    kernels = _anisotropic_kernels(model)
    if not kernels:
        raise ValueError(
            "fit_map: the model contains no SO3AnisotropicKernel or FullSPDKernel; "
            "use botorch.fit.fit_gpytorch_mll for other kernels"
        )
    check_input_scaling(model, stacklevel=3)  # a per-axis Normalize shears space: warn, the fit is still valid
    default_mll = mll is None
    if mll is None:
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
    X = _train_inputs(model)
    if not bool(torch.isfinite(model.train_targets).all()):
        raise ValueError("fit_map: the training targets contain NaN or infinite values")
    spreads = [_input_spread(X, k) for k in kernels]
    for k in kernels:
        _warn_if_degenerate(X, k)
    num_aligned = 1 if data_aligned_start else 0
    if identity_start is None:  # the ARD start is the default where the SO(3) defaults were not measured: d != 3
        identity_start = any(_kernel_dim(k) != 3 for k in kernels)
    num_identity = 1 if identity_start else 0
    if gradient_start is None:  # where Haar draws cover SO(d) thinly (d >= 4); see GRADIENT_START_MIN_DIM
        gradient_start = any(_kernel_dim(k) >= GRADIENT_START_MIN_DIM for k in kernels)
    # A kernel with a frozen part keeps its current values at every data-driven start (see _initialise). Where no
    # kernel is wholly free those starts are one state: it runs once and the gradient start's pilot GP is not fitted.
    any_free = any(all(_free_parts(k)) for k in kernels)
    gradient_start = gradient_start and any_free
    principals = [_principal_extents(X, k) for k in kernels] if num_aligned else [None] * len(kernels)
    n = X.shape[-2]
    if exact is None:
        exact = n <= EXACT_FIT_MAX_POINTS
    if seed is None:
        seed = int(torch.randint(0, MAX_SEED - 1, (1,)).item())
    generator = torch.Generator().manual_seed(seed)
    subset_generator = torch.Generator().manual_seed((seed + 0x5EED) % MAX_SEED)  # independent of the Haar draws

    t_start = time.perf_counter()
    geometries = [None] * len(kernels)
    if gradient_start:
        gop = _model_gradient_outer_product(model, X, seed)  # seeds its own subset generator
        geometries = [_gradient_geometry(gop, k) for k in kernels]
    num_gradient = 1 if any(g is not None for g in geometries) else 0
    initial_state = copy.deepcopy(model.state_dict())
    modes = [(m, m.training) for m in (*model.modules(), *mll.modules())]
    info = FitMapInfo(strategy=strategy)
    data_driven = ["aligned"] * num_aligned + ["identity"] * num_identity + ["gradient"] * num_gradient
    kinds = (data_driven if any_free else data_driven[:1]) + ["haar"] * num_restarts
    names = {"aligned": "data-aligned start", "identity": "identity (ARD) start", "gradient": "gradient start"}
    first_haar = len(kinds) - num_restarts
    # starts that survive every halving round and are polished besides the winner (see THIN_EXTENT_RATIO and
    # gradient_start): the data-aligned start on thin domains, the gradient start
    protected = tuple(
        r for r, kind in enumerate(kinds) if kind == "gradient" or (kind == "aligned" and _is_thin(principals))
    )
    describe = [names.get(kind, f"restart {r + 1 - first_haar}/{num_restarts}") for r, kind in enumerate(kinds)]
    chol = gpytorch.settings.max_cholesky_size(n + 1 if exact else gpytorch.settings.max_cholesky_size.value())
    try:
        # Every start's initial state, drawn in order from the seeded generator (the same for both paths).
        starts = []
        for kind in kinds:
            model.load_state_dict(initial_state)
            for k, s, p, g in zip(kernels, spreads, principals, geometries, strict=True):
                _initialise(
                    k,
                    s,
                    generator,
                    p if kind == "aligned" else None,
                    identity=kind == "identity" or (kind == "gradient" and g is None),
                    geometry=g if kind == "gradient" else None,
                )
            starts.append(copy.deepcopy(model.state_dict()))
        model.load_state_dict(initial_state)
        mll.train()
        with chol:
            if strategy == "batched":
                try:
                    if fmin_l_bfgs_b_batched is None:
                        raise _Unbatchable("botorch.optim.batched_lbfgs_b is not available")
                    if not default_mll and not (
                        type(mll) is ExactMarginalLogLikelihood
                        and mll.model is model
                        and mll.likelihood is model.likelihood
                    ):
                        raise _Unbatchable(f"a custom mll ({type(mll).__name__})")
                    names = [name for name, p in model.named_parameters() if p.requires_grad]
                    params = dict(model.named_parameters())
                    rows = []
                    for state in starts:
                        model.load_state_dict(state)
                        rows.append(torch.cat([params[nm].detach().reshape(-1) for nm in names]))
                    x0 = torch.stack(rows).cpu().double().numpy()
                    model.load_state_dict(initial_state)
                    _fit_batched(
                        model,
                        mll,
                        x0,
                        names,
                        info,
                        halving=halving,
                        optimizer_options=optimizer_options,
                        subset_generator=subset_generator,
                        kernels=kernels,
                        describe=describe,
                        progress=progress,
                        protect=protected,
                        exact=exact,
                    )
                except _Unbatchable as e:
                    info = FitMapInfo(strategy="sequential", fallback_reason=str(e))
                    model.load_state_dict(initial_state)
            if info.strategy == "sequential":
                _fit_sequential(
                    model,
                    mll,
                    starts,
                    info,
                    optimizer_options=optimizer_options,
                    kernels=kernels,
                    describe=describe,
                    progress=progress,
                )
    except BaseException:
        model.load_state_dict(initial_state)
        for m, mode in modes:
            m.training = mode
        raise
    info.seconds = time.perf_counter() - t_start
    info.start_kinds = list(kinds)
    model.fit_map_info_ = info
    mll.eval()
    model.eval()
    return model


def _fit_model_list(model: gpytorch.models.IndependentModelList, *, seed: int | None, mll: object, **kwargs):
    """``fit_map`` on every sub-model of a model list that has an SO(3)/full-SPD kernel, BoTorch's fit on the others.

    Sub-model ``i`` uses seed ``seed + i`` (independent restarts per output, reproducible as a whole).
    """
    if mll is not None:
        raise ValueError("fit_map on a model list fits each sub-model with its own MLL; pass mll=None")
    subs = list(model.models)
    if not any(_anisotropic_kernels(m) for m in subs):
        raise ValueError(
            "fit_map: no sub-model of the model list contains an SO3AnisotropicKernel or FullSPDKernel; "
            "use botorch.fit.fit_gpytorch_mll for other kernels"
        )
    if seed is not None and seed + len(subs) - 1 >= MAX_SEED:
        raise ValueError(f"fit_map: seed + i must stay below 2**63 for the {len(subs)} sub-models, got seed {seed}")
    from botorch.fit import fit_gpytorch_mll

    for i, sub in enumerate(subs):
        if _anisotropic_kernels(sub):
            fit_map(sub, seed=None if seed is None else seed + i, **kwargs)
        else:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(sub.likelihood, sub))
    model.eval()
    return model
