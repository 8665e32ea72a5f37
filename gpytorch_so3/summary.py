r"""Symmetry-aware posterior summaries of a fitted :class:`~gpytorch_so3.SO3FullyBayesianGP` (or its ``d``-D form).

Raw MCMC samples of ``(lengthscale, rotation)`` are not interpretable one by one: the 24 signed axis
permutations ``(l P, R P)`` describe the same kernel, so a chain may report the "short" axis in any column and
with any sign, and different chains may sit in different (equivalent) modes. :func:`summarize_posterior`
canonicalises every draw with :func:`gpytorch_so3.so3.canonicalize` (ascending length-scales, principal
directions as columns), aligns the signs of the directions across draws, and reports means, standard
deviations, credible intervals, R-hat and ESS (ArviZ's when installed, else Pyro's estimators; see
:func:`diagnostics`) of these canonical quantities, plus the principal directions as unit vectors and as azimuth/dip.

When two principal length-scales are close the directions in their plane are weakly identified (with two equal
length-scales not identified at all: any orthonormal pair in that plane gives the same kernel). The summary
flags such pairs and says so, instead of reporting meaningless direction estimates as if they were precise.

The same summary covers :class:`~gpytorch_so3.fully_bayesian.RotatedFullyBayesianGP` in ``d`` dimensions
(:func:`gpytorch_so3.sod.canonicalize`, modulo the ``2^(d-1) d!`` signed permutations). The 3-D azimuth/dip are
replaced by, for ``d = 2``, the azimuth of each principal direction in the plane (degrees from input axis 0
towards input axis 1) and, for every ``d``, the angle between each principal direction and its nearest coordinate
axis (0 for an axis-aligned, ARD-like metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor

from gpytorch_so3 import sod
from gpytorch_so3.fully_bayesian import RotatedFullyBayesianGP
from gpytorch_so3.nuts import divergence_advice
from gpytorch_so3.so3 import azimuth_dip  # one implementation, re-exported here

__all__ = [
    "DEFAULT_WEAK_RATIO",
    "MIN_DRAWS_FOR_DIAGNOSTICS",
    "PosteriorSummary",
    "azimuth_dip",
    "coordinate_angle",
    "diagnostics",
    "planar_azimuth",
    "summarize_posterior",
    "summarize_samples",
]

#: Default threshold on the posterior median of the ratio of adjacent canonical length-scales below which the
#: two directions are flagged as weakly identified (see :func:`summarize_posterior`).
DEFAULT_WEAK_RATIO = 1.2

_AXIS_NAMES = ("short", "middle", "long")


def _axis_names(dim: int) -> tuple[str, ...]:
    """Names of the canonical axes (ascending length-scales)."""
    if dim == 3:
        return _AXIS_NAMES
    if dim == 2:
        return ("short", "long")
    return tuple(f"axis{i}" for i in range(dim))


def _coord_names(dim: int) -> tuple[str, ...]:
    return ("x", "y", "z") if dim == 3 else tuple(f"x{i}" for i in range(dim))


def planar_azimuth(u: Tensor) -> Tensor:
    """Azimuth in degrees of undirected 2-D directions, from input axis 0 towards input axis 1, in ``(-90, 90]``.

    The convention of :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` with ``dim = 2``: the
    rotation angle ``theta`` turns the first principal direction from axis 0 towards axis 1. Directions are
    undirected (``u`` and ``-u`` are the same axis), hence the half-turn range.

    Args:
        u: ``(..., 2)`` directions (need not be unit).

    Returns:
        ``(...)`` degrees in ``(-90, 90]``.

    Example:
        >>> planar_azimuth(torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 1.0], [1.0, -0.2]])).round(decimals=2)
        tensor([ 45.0000,  45.0000,  90.0000, -11.3100])
    """
    a = torch.rad2deg(torch.atan2(u[..., 1], u[..., 0]))
    a = torch.where(a > 90.0, a - 180.0, a)
    return torch.where(a <= -90.0, a + 180.0, a)


def coordinate_angle(axes: Tensor) -> tuple[Tensor, Tensor]:
    """Angle (degrees) between each principal direction and its nearest coordinate axis, and that axis' index.

    0 for every direction of an axis-aligned (ARD) metric; at most ``arccos(1 / sqrt(d))`` (45 degrees for
    ``d = 2``, 54.7 for ``d = 3``). A readable summary of a rotation in any dimension.

    Args:
        axes: ``(..., d, d)`` directions as unit columns.

    Returns:
        ``(angle, index)``: ``(..., d)`` degrees and ``(..., d)`` indices of the nearest coordinate axis.

    Example:
        >>> import math
        >>> c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
        >>> angle, index = coordinate_angle(torch.tensor([[c, -s], [s, c]], dtype=torch.float64))
        >>> angle.round(decimals=6).tolist(), index.tolist()
        ([10.0, 10.0], [0, 1])
    """
    big, index = axes.abs().max(dim=-2)  # largest |component| of each column
    big = big.clamp(max=1.0)
    return torch.rad2deg(torch.atan2((1.0 - big * big).clamp_min(0.0).sqrt(), big)), index


def _align_axes(axes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean undirected axis per column and sign-aligned samples.

    Args:
        axes: ``S x d x d`` canonical directions (columns).

    Returns:
        ``(mean_dirs d x d`` (unit columns), ``aligned S x d x d``, ``angle S x d`` degrees to the mean)``.
    """
    cols = axes.transpose(-1, -2)  # S x d (axis) x d (coord)
    T = torch.einsum("sai,saj->aij", cols, cols) / cols.shape[0]  # mean outer products, d x d x d
    _, evecs = torch.linalg.eigh(T)
    mean = evecs[..., -1]  # d (axis) x d (coord): principal eigenvector of E[u u^T]
    # Deterministic sign: largest-magnitude entry positive (as so3.canonicalize).
    big = mean.abs().argmax(-1, keepdim=True)
    lead = mean.gather(-1, big)
    mean = mean * torch.where(lead < 0, -1.0, 1.0)
    dots = (cols * mean).sum(-1)  # S x 3
    aligned = cols * torch.where(dots < 0, -1.0, 1.0).unsqueeze(-1)
    if cols.shape[-1] == 3:
        sine = torch.linalg.cross(cols, mean.expand_as(cols), dim=-1).norm(dim=-1)
    else:  # |u - (u.m) m| = sin of the angle between unit vectors, in any dimension
        sine = (cols - dots.unsqueeze(-1) * mean).norm(dim=-1)
    angle = torch.rad2deg(torch.atan2(sine, dots.abs()))
    return mean.transpose(-1, -2), aligned.transpose(-1, -2), angle


#: Fewest draws per chain for which :func:`summarize_samples` reports R-hat and ESS (NaN below): split R-hat
#: needs two halves of at least two draws, and ArviZ (``arviz.stats.diagnostics``, ``min_draws=4``) and Pyro's
#: ``split_gelman_rubin`` (``assert input.size(sample_dim) >= 4``) use the same limit.
MIN_DRAWS_FOR_DIAGNOSTICS = 4


def _arviz_available() -> bool:
    try:
        import arviz  # noqa: F401  (optional extra)
    except ImportError:
        return False
    return True


def diagnostics(x: Tensor, *, use_arviz: bool | None = None) -> tuple[Tensor, Tensor]:
    """R-hat and ESS of each component of ``x`` (``chains x draws x ...``), ArviZ's when available.

    Estimators:

    * with ArviZ (the optional ``arviz`` extra; ``use_arviz=None`` uses it when importable): rank-normalised split
      R-hat (``arviz.rhat``, ``method="rank"``) and bulk ESS (``arviz.ess``, ``method="bulk"``) [Vehtari2021]_.
      A single chain is passed to ArviZ as its two halves (ArviZ's R-hat needs two chains);
    * without it: Pyro's ``split_gelman_rubin`` and ``effective_sample_size`` (Geyer's initial monotone sequence),
      with ArviZ's/Stan's bound ``0 < ESS <= C N log10(C N)`` (``tau >= 1 / log10(C N)``) that Pyro lacks: its ESS
      goes negative or explodes when the lag-1 autocorrelation estimate is strongly negative (short or antithetic
      chains); ESS above ``C N`` is legitimate for antithetic NUTS chains, hence not the bound ``C N``.

    Validity rules on both paths (as ArviZ 0.23's ``_ess``/``_rhat`` and Stan):

    * fewer than :data:`MIN_DRAWS_FOR_DIAGNOSTICS` (4) draws per chain: R-hat and ESS are NaN;
    * non-finite draws in a component: NaN for that component (the others are unaffected);
    * constant draws in a component: ESS = number of draws, R-hat NaN (0 / 0).

    Args:
        x: ``C x N x ...`` draws (chains, draws per chain, components).
        use_arviz: ``True`` (ArviZ, ImportError if missing), ``False`` (Pyro) or ``None`` (ArviZ if installed).

    Returns:
        ``(rhat, ess)``, each of shape ``x.shape[2:]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(2, 200, 3, generator=g, dtype=torch.float64)  # i.i.d. draws, 2 chains
        >>> rhat, ess = diagnostics(x, use_arviz=False)
        >>> rhat.shape, bool((rhat - 1).abs().max() < 0.02), bool((ess > 250).all())
        (torch.Size([3]), True, True)
        >>> diagnostics(x[:, :3])[0]  # 3 draws per chain: not estimable
        tensor([nan, nan, nan], dtype=torch.float64)

    .. [Vehtari2021] A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Buerkner. Rank-normalization, folding,
        and localization: an improved R-hat for assessing convergence of MCMC. Bayesian Analysis 16(2), 2021.
    """
    if use_arviz is None:
        use_arviz = _arviz_available()
    C, N = x.shape[:2]
    nan = torch.full(x.shape[2:], math.nan, dtype=x.dtype, device=x.device)
    if N < MIN_DRAWS_FOR_DIAGNOSTICS:
        return nan, nan.clone()
    finite = torch.isfinite(x).flatten(0, 1).all(dim=0)
    x = torch.where(finite, x, torch.zeros_like(x))
    spread = x.amax(dim=(0, 1)) - x.amin(dim=(0, 1))
    constant = spread <= torch.finfo(x.dtype).resolution * x.abs().amax(dim=(0, 1)).clamp_min(1.0)
    # Estimators see a harmless placeholder series in constant or non-finite components (Pyro's ESS turns *every*
    # component NaN if one is constant or NaN, pyro-ppl 1.9.2); their results are replaced below.
    filler = torch.arange(C * N, dtype=x.dtype, device=x.device).reshape(C, N, *([1] * (x.dim() - 2)))
    x = torch.where(constant | ~finite, filler.expand_as(x), x)
    rhat, ess = _arviz_rhat_ess(x) if use_arviz else _pyro_rhat_ess(x)
    ess = torch.where(constant, torch.full_like(ess, float(C * N)), ess)
    rhat = torch.where(constant, nan, rhat)
    return torch.where(finite, rhat, nan), torch.where(finite, ess, nan)


def _pyro_rhat_ess(x: Tensor) -> tuple[Tensor, Tensor]:
    C, N = x.shape[:2]
    rhat = split_gelman_rubin(x, chain_dim=0, sample_dim=1)
    ess = effective_sample_size(x, chain_dim=0, sample_dim=1)
    total = float(C * N)
    cap = total * math.log10(total)
    # tau = C N / ESS; tau < 1 / log10(C N) (including tau <= 0: ESS negative or infinite) -> the bound.
    ess = torch.where((ess <= 0) | (ess > cap), torch.full_like(ess, cap), ess)
    return rhat, ess


def _arviz_rhat_ess(x: Tensor) -> tuple[Tensor, Tensor]:
    import arviz as az  # optional extra, imported only here

    C, N = x.shape[:2]
    flat = x.detach().reshape(C, N, -1).cpu().double().numpy()
    rhat_x = flat if C > 1 else flat[:, : 2 * (N // 2)].reshape(2, N // 2, -1)  # one chain: its two halves
    if rhat_x.shape[1] < MIN_DRAWS_FOR_DIAGNOSTICS:
        rhat = [math.nan] * flat.shape[-1]
    else:
        rhat = [float(az.rhat(rhat_x[:, :, k], method="rank")) for k in range(flat.shape[-1])]
    ess = [float(az.ess(flat[:, :, k], method="bulk")) for k in range(flat.shape[-1])]
    shape = x.shape[2:]
    return (
        torch.tensor(rhat, dtype=x.dtype, device=x.device).reshape(shape),
        torch.tensor(ess, dtype=x.dtype, device=x.device).reshape(shape),
    )


@dataclass
class PosteriorSummary:
    r"""Canonicalised posterior of an :class:`~gpytorch_so3.SO3FullyBayesianGP` (see :func:`summarize_posterior`).

    Per-draw tensors hold ``num_samples = num_chains * draws_per_chain`` draws, chain-major. The shapes below are
    for ``d = 3``; for :class:`~gpytorch_so3.fully_bayesian.RotatedFullyBayesianGP` in ``d`` dimensions read ``d``
    for 3 (``lengthscale`` ``num_samples x d``, ``axes`` ``num_samples x d x d``, ...), with the exceptions noted.

    Attributes:
        lengthscale: ``num_samples x 3`` canonical (ascending) principal length-scales.
        axes: ``num_samples x 3 x 3`` canonical principal directions as columns (column ``i`` goes with
            ``lengthscale[:, i]``), exactly as returned by :func:`so3.canonicalize`.
        aligned_axes: ``num_samples x 3 x 3``: :attr:`axes` with each column's sign flipped to agree with
            :attr:`directions` (canonical signs can flip between draws when two components have similar size).
        outputscale: ``num_samples`` output-scales.
        noise: ``num_samples`` noise variances (``None`` with fixed ``train_Yvar``).
        mean: ``num_samples`` constant means.
        num_chains: number of chains.
        rhat: name -> split R-hat: ``"lengthscale"`` ``(3,)``, ``"outputscale"``, ``"noise"``, ``"mean"`` (scalars),
            ``"axes"`` ``(3, 3)`` (components of the sign-aligned directions, column ``i`` for axis ``i``).
        ess: name -> effective sample size, same keys and shapes. Both are NaN with fewer than
            :data:`MIN_DRAWS_FOR_DIAGNOSTICS` draws per chain (too few for the estimators); ESS lies in
            ``(0, C N log10(C N)]`` (ArviZ's/Stan's bound; above ``C N`` only for antithetic chains).
        posterior_mean, posterior_sd: name -> mean / standard deviation (``lengthscale`` ``(3,)``, scalars).
        interval: name -> ``2 x ...`` equal-tailed credible interval (lower, upper) at level :attr:`prob`.
        prob: credible level (default 0.9).
        directions: ``3 x 3`` posterior mean principal directions (unit columns): for each canonical axis the
            principal eigenvector of the mean outer product ``E[u u^T]`` (sign-free, so antipodal draws agree).
        direction_spread: ``(3,)`` degrees: the :attr:`prob` quantile of the angle between a draw's axis and the
            mean direction.
        azimuth, dip: ``(3,)`` degrees of :attr:`directions` (see :func:`azimuth_dip`). ``d = 2``: ``azimuth`` is
            ``(2,)``, the :func:`planar_azimuth` of each direction (degrees from input axis 0 towards axis 1, in
            ``(-90, 90]``) and ``dip`` is ``None``; ``d > 3``: both ``None`` (see :attr:`coordinate_angle`).
        ratio_median: ``(2,)`` posterior medians of ``l2 / l1`` and ``l3 / l2``.
        weak_pairs: pairs ``(i, i + 1)`` (0-based canonical indices) flagged as weakly identified.
        explanation: human-readable reasons for the flags (empty if none).
        divergences: per chain, the number of divergent post-warm-up transitions.
        num_rejected: per chain, potential evaluations rejected as non-PSD/NaN (empty if unknown).
        weak_ratio: the ratio threshold used.
        dim: the number of inputs ``d``.
        coordinate_angle: ``num_samples x d`` degrees: per draw, the angle between each canonical direction and its
            nearest coordinate axis (:func:`coordinate_angle`; 0 for an axis-aligned, ARD-like metric).
        nearest_coordinate: ``(d,)`` index of the coordinate axis nearest to each of :attr:`directions`.
        planar_angle: ``d = 2`` only (else ``None``): ``num_samples x 2`` per-draw :func:`planar_azimuth` of the
            canonical directions.

    Example:
        Draws (2 chains x 50) around length-scales ``(0.1, 0.5, 2)`` rotated 30 degrees about the vertical:

        >>> import math
        >>> from gpytorch_so3.summary import summarize_samples
        >>> g = torch.Generator().manual_seed(0)
        >>> ls = torch.tensor([0.1, 0.5, 2.0]) * torch.exp(0.05 * torch.randn(2, 50, 3, generator=g))
        >>> w = torch.tensor([0.0, 0.0, math.pi / 6]) + 0.02 * torch.randn(2, 50, 3, generator=g)
        >>> s = summarize_samples({"lengthscale": ls, "rotation": w, "outputscale": torch.ones(2, 50),
        ...                        "mean": torch.zeros(2, 50)}, divergences=[0, 1])
        >>> s.num_samples, s.num_chains, s.num_divergences, s.weakly_identified
        (100, 2, 1, False)
        >>> [round(v, 2) for v in s.posterior_mean["lengthscale"].tolist()]
        [0.1, 0.5, 2.01]
        >>> s.azimuth[:2].round().tolist(), s.dip.round().tolist()  # degrees; the long axis is vertical
        ([240.0, 150.0], [0.0, 0.0, 90.0])
        >>> print(str(s).splitlines()[0])  # print(s) shows the full table
        SO3FullyBayesianGP posterior: 2 chain(s) x 50 draws, 1 divergent transition(s)
        >>> idata = s.to_arviz()  # needs arviz
        >>> dict(idata.posterior.sizes)
        {'chain': 2, 'draw': 50, 'axis': 3, 'coord': 3}
    """

    lengthscale: Tensor
    axes: Tensor
    aligned_axes: Tensor
    outputscale: Tensor
    noise: Tensor | None
    mean: Tensor
    num_chains: int
    rhat: dict[str, Tensor]
    ess: dict[str, Tensor]
    posterior_mean: dict[str, Tensor]
    posterior_sd: dict[str, Tensor]
    interval: dict[str, Tensor]
    prob: float
    directions: Tensor
    direction_spread: Tensor
    azimuth: Tensor
    dip: Tensor
    ratio_median: Tensor
    weak_pairs: list[tuple[int, int]]
    explanation: str
    divergences: list[int]
    num_rejected: list[int] = field(default_factory=list)
    weak_ratio: float = DEFAULT_WEAK_RATIO
    dim: int = 3
    coordinate_angle: Tensor | None = None
    nearest_coordinate: Tensor | None = None
    planar_angle: Tensor | None = None

    @property
    def num_samples(self) -> int:
        """Total number of draws summarised."""
        return int(self.lengthscale.shape[0])

    @property
    def weakly_identified(self) -> bool:
        """Whether any pair of principal directions is flagged as weakly identified."""
        return bool(self.weak_pairs)

    @property
    def num_divergences(self) -> int:
        """Total number of divergent transitions."""
        return int(sum(self.divergences))

    def _by_chain(self, x: Tensor) -> Tensor:
        return x.reshape(self.num_chains, -1, *x.shape[1:])

    def __str__(self) -> str:
        """A table of the canonical posterior: scalars, length-scales, directions, diagnostics and flags."""
        lo_q, hi_q = 50 * (1 - self.prob), 50 * (1 + self.prob)
        draws = self.num_samples // max(self.num_chains, 1)
        d = self.dim
        names = _axis_names(d)
        title = "SO3FullyBayesianGP posterior" if d == 3 else f"RotatedFullyBayesianGP posterior (d = {d})"
        lines = [
            f"{title}: {self.num_chains} chain(s) x {draws} draws, {self.num_divergences} divergent transition(s)"
            + (f", {sum(self.num_rejected)} rejected non-PSD/NaN evaluation(s)" if self.num_rejected else ""),
            "",
            f"{'parameter':<20}{'mean':>10}{'sd':>10}{f'{lo_q:g}%':>10}{f'{hi_q:g}%':>10}{'R-hat':>8}{'ESS':>8}",
        ]

        def row(name: str, key: str, idx: int | None = None) -> str:
            def g(dct: dict[str, Tensor], i: int | None = idx) -> float:
                v = dct[key]
                return float(v if i is None else v[i])

            iv = self.interval[key]
            lo = float(iv[0] if idx is None else iv[0, idx])
            hi = float(iv[1] if idx is None else iv[1, idx])
            return (
                f"{name:<20}{g(self.posterior_mean):>10.4g}{g(self.posterior_sd):>10.3g}{lo:>10.4g}{hi:>10.4g}"
                f"{g(self.rhat):>8.3f}{g(self.ess):>8.0f}"
            )

        for i in range(d):
            lines.append(row(f"lengthscale[{names[i]}]", "lengthscale", i))
        lines.append(row("outputscale", "outputscale"))
        if self.noise is not None:
            lines.append(row("noise", "noise"))
        lines.append(row("mean", "mean"))

        def diag_cols(i: int) -> str:
            return (
                f"{float(self.direction_spread[i]):>8.1f}{float(self.rhat['axes'][:, i].max()):>8.3f}"
                f"{float(self.ess['axes'][:, i].min()):>8.0f}"
                + ("  (weakly identified)" if any(i in p for p in self.weak_pairs) else "")
            )

        spread_text = f"spread: {100 * self.prob:g}% of draws within this angle; R-hat: worst component"
        if d == 3:
            lines += [
                "",
                "principal directions (posterior mean axis; x = east, y = north, z = up; azimuth clockwise from north,",
                f"dip below horizontal; {spread_text})",
                f"{'axis':<8}{'x':>8}{'y':>8}{'z':>8}{'azimuth':>9}{'dip':>7}{'spread':>8}{'R-hat':>8}{'ESS':>8}",
            ]
            for i in range(3):
                u = self.directions[:, i]
                lines.append(
                    f"{names[i]:<8}{float(u[0]):>8.3f}{float(u[1]):>8.3f}{float(u[2]):>8.3f}"
                    f"{float(self.azimuth[i]):>9.1f}{float(self.dip[i]):>7.1f}" + diag_cols(i)
                )
        elif d == 2:
            pa = self.planar_angle
            lines += [
                "",
                "principal directions (posterior mean axis; azimuth: degrees from input axis x0 towards x1, in "
                "(-90, 90];",
                f"{lo_q:g}%/{hi_q:g}%: interval of the draws' azimuths; {spread_text})",
                f"{'axis':<8}{'x0':>8}{'x1':>8}{'azimuth':>9}{f'{lo_q:g}%':>8}{f'{hi_q:g}%':>8}"
                f"{'spread':>8}{'R-hat':>8}{'ESS':>8}",
            ]
            for i in range(2):
                u = self.directions[:, i]
                # Interval of the per-draw azimuth, unwrapped around the mean direction's azimuth.
                rel = pa[:, i] - self.azimuth[i]
                rel = torch.where(rel > 90.0, rel - 180.0, torch.where(rel <= -90.0, rel + 180.0, rel))
                lo = float(self.azimuth[i] + rel.quantile((1 - self.prob) / 2))
                hi = float(self.azimuth[i] + rel.quantile((1 + self.prob) / 2))
                lines.append(
                    f"{names[i]:<8}{float(u[0]):>8.3f}{float(u[1]):>8.3f}{float(self.azimuth[i]):>9.1f}"
                    f"{lo:>8.1f}{hi:>8.1f}" + diag_cols(i)
                )
        else:
            lines += [
                "",
                "principal directions: nearest input axis of the posterior mean direction and the angle to it "
                f"(median and {100 * self.prob:g}% interval over draws; 0 = axis-aligned as ARD);",
                f"{spread_text})",
                f"{'axis':<8}{'nearest':>8}{'angle':>8}{f'{lo_q:g}%':>8}{f'{hi_q:g}%':>8}"
                f"{'spread':>8}{'R-hat':>8}{'ESS':>8}",
            ]
            ca = self.coordinate_angle
            for i in range(d):
                q = ca[:, i].quantile(torch.tensor([0.5, (1 - self.prob) / 2, (1 + self.prob) / 2], dtype=ca.dtype))
                lines.append(
                    f"{names[i]:<8}{'x' + str(int(self.nearest_coordinate[i])):>8}{float(q[0]):>8.1f}"
                    f"{float(q[1]):>8.1f}{float(q[2]):>8.1f}" + diag_cols(i)
                )
        if self.explanation:
            lines += ["", self.explanation]
        advice = divergence_advice(self.num_divergences, self.num_samples)
        if advice:
            lines += ["", f"warning: {advice}"]
        keys = ("lengthscale", "outputscale", "noise", "mean")
        bad = [k for k in keys if k in self.rhat and bool((self.rhat[k] > 1.1).any())]
        if bad:
            lines += ["", f"warning: R-hat > 1.1 for {', '.join(bad)}: the chains have not converged; sample longer."]
        return "\n".join(lines)

    def to_arviz(self):
        """The canonical draws as an ``arviz.InferenceData`` (needs the optional ``arviz`` extra).

        Posterior variables (dims ``chain``, ``draw``, ...): ``lengthscale`` (``axis``), ``axes`` (``coord``,
        ``axis``), ``azimuth``/``dip`` (``axis``, of each draw's axis), ``outputscale``, ``noise`` (if sampled),
        ``mean``; ``sample_stats.diverging`` is not included (divergences are counts per chain here). For ``d != 3``:
        no ``dip``; ``azimuth`` (the per-draw :func:`planar_azimuth`) only for ``d = 2``; ``coordinate_angle``
        (``axis``); coordinates named ``x0 .. x{d-1}``.

        Returns:
            ``arviz.InferenceData``.

        Raises:
            ImportError: arviz is not installed.
        """
        try:
            import arviz as az
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_arviz needs arviz: pip install 'gpytorch-so3[arviz]'") from e
        post = {"lengthscale": self.lengthscale, "axes": self.axes}
        dims = {"lengthscale": ["axis"], "axes": ["coord", "axis"]}
        if self.dim == 3:
            post["azimuth"], post["dip"] = azimuth_dip(self.axes.transpose(-1, -2))
            dims["azimuth"] = dims["dip"] = ["axis"]
        else:
            if self.planar_angle is not None:
                post["azimuth"] = self.planar_angle
                dims["azimuth"] = ["axis"]
            post["coordinate_angle"] = self.coordinate_angle
            dims["coordinate_angle"] = ["axis"]
        post["outputscale"], post["mean"] = self.outputscale, self.mean
        if self.noise is not None:
            post["noise"] = self.noise
        post = {k: self._by_chain(v).detach().cpu().double().numpy() for k, v in post.items()}
        return az.from_dict(
            posterior=post,
            coords={"axis": list(_axis_names(self.dim)), "coord": list(_coord_names(self.dim))},
            dims=dims,
        )


def _draws_by_chain(model: RotatedFullyBayesianGP) -> tuple[dict[str, Tensor], list[int], list[int]]:
    info = getattr(model, "fit_nuts_info_", None)
    if info is not None:
        return dict(info.samples), [len(d) for d in info.divergences], list(info.num_rejected)
    # Samples loaded by hand (load_mcmc_samples / load_state_dict): one "chain" of the loaded samples.
    model._check_if_fitted()
    k = model.kernel
    s = {
        "lengthscale": k.lengthscale.detach().squeeze(-2),
        "rotation": k.rotation.detach(),
        "outputscale": model.covar_module.outputscale.detach(),
        "mean": model.mean_module.constant.detach().reshape(-1),
    }
    if "noise" in model.pyro_model.sample_sites:
        s["noise"] = model.likelihood.noise.detach().reshape(s["mean"].shape[0], -1)[:, 0]
    return {name: v.unsqueeze(0) for name, v in s.items()}, [0], []


def summarize_posterior(
    model: RotatedFullyBayesianGP, *, weak_ratio: float = DEFAULT_WEAK_RATIO, prob: float = 0.9
) -> PosteriorSummary:
    r"""Canonical, symmetry-aware summary of the hyperparameter posterior of a fitted model.

    Uses every post-warm-up draw of every chain stored by :func:`gpytorch_so3.fit_nuts`
    (``model.fit_nuts_info_``; thinning only affects what is loaded for prediction), or the loaded samples as
    one chain if the model was filled by hand. Each draw is canonicalised (:func:`so3.canonicalize`; in ``d``
    dimensions :func:`sod.canonicalize`); the
    direction of each canonical axis is averaged sign-free (principal eigenvector of ``E[u u^T]``) and the draws'
    signs are aligned to it. R-hat and ESS over chains come from :func:`diagnostics`: ArviZ's rank-normalised
    split R-hat and bulk ESS when ArviZ is installed, else Pyro's ``split_gelman_rubin`` and
    ``effective_sample_size`` with ArviZ's/Stan's bound; NaN with fewer than 4 draws per chain or non-finite draws
    (see :data:`MIN_DRAWS_FOR_DIAGNOSTICS`).

    **Weak identifiability.** A pair of adjacent canonical length-scales ``(l_i, l_{i+1})`` is flagged when

    * the posterior median of ``l_{i+1} / l_i`` is below ``weak_ratio`` (default 1.2), or
    * their ``prob`` credible intervals overlap.

    Why: rotating the principal frame by an angle ``phi`` in the plane of axes ``i, i+1`` changes the metric by
    ``O(phi (l_i^-2 - l_{i+1}^-2))``, so the information about ``phi`` scales with ``(1 - (l_i / l_{i+1})^2)^2``;
    at a ratio of 1.2 that is 0.09 of its strongly anisotropic limit (the angle's posterior sd at least ~3x
    larger), and at ratio 1 the directions in that plane are not identified at all. Sorting each draw
    pushes near-equal length-scales apart (the median ratio of two sorted noisy equal values exceeds 1), which
    is why overlapping intervals also flag a pair: then the data cannot even order the two axes. Only the plane
    of a flagged pair (equivalently its normal, the third axis) is then meaningful.

    Args:
        model: an :class:`~gpytorch_so3.SO3FullyBayesianGP` or a
            :class:`~gpytorch_so3.fully_bayesian.RotatedFullyBayesianGP` with samples loaded.
        weak_ratio: median-ratio threshold of the weak-identifiability flag (> 1).
        prob: level of the equal-tailed credible intervals and of the direction spread, in (0, 1).

    Returns:
        A :class:`PosteriorSummary`; ``print(summary)`` shows the table.

    Raises:
        TypeError: ``model`` is not an ``SO3FullyBayesianGP`` / ``RotatedFullyBayesianGP``.
        NotFittedError: the model has no samples.
        ValueError: bad ``weak_ratio`` or ``prob``.

    Example:
        >>> from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
        >>> from gpytorch_so3.nuts import fit_nuts
        >>> X = torch.rand(12, 3, dtype=torch.float64); Y = torch.sin(6 * X[:, :1]); Y = (Y - Y.mean()) / Y.std()
        >>> model = fit_nuts(SO3FullyBayesianGP(X, Y), warmup_steps=8, num_samples=8, max_tree_depth=3,
        ...                  progress=False)  # a toy budget; see fit_nuts for the defaults
        >>> s = summarize_posterior(model)  # every draw (not thinned), ascending length-scales
        >>> s.lengthscale.shape, s.axes.shape, sorted(s.rhat)
        (torch.Size([8, 3]), torch.Size([8, 3, 3]), ['axes', 'lengthscale', 'mean', 'noise', 'outputscale'])
    """
    if not isinstance(model, RotatedFullyBayesianGP):
        raise TypeError(
            f"summarize_posterior expects an SO3FullyBayesianGP or a RotatedFullyBayesianGP, got {type(model).__name__}"
        )
    if not (isinstance(weak_ratio, int | float) and not isinstance(weak_ratio, bool) and weak_ratio > 1.0):
        raise ValueError(f"weak_ratio must be a number > 1, got {weak_ratio!r}")
    if not (isinstance(prob, int | float) and 0.0 < prob < 1.0):
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    model._check_if_fitted()
    chains, divergences, rejected = _draws_by_chain(model)
    return summarize_samples(chains, divergences=divergences, num_rejected=rejected, weak_ratio=weak_ratio, prob=prob)


def summarize_samples(
    samples: dict[str, Tensor],
    *,
    divergences: list[int] | None = None,
    num_rejected: list[int] | None = None,
    weak_ratio: float = DEFAULT_WEAK_RATIO,
    prob: float = 0.9,
) -> PosteriorSummary:
    """:func:`summarize_posterior` for raw draws grouped by chain (e.g. from another sampler).

    Args:
        samples: name -> ``num_chains x draws x ...`` tensors with at least ``"lengthscale"`` (``... x d``, ``d >= 2``),
            ``"rotation"`` (``... x d (d - 1) / 2`` so(d) coordinates; ``d = 3``: axis-angle), ``"outputscale"`` and
            ``"mean"``; ``"noise"`` optional.
        divergences: per chain, the number of divergent transitions (default: zeros).
        num_rejected: per chain, the number of rejected non-PSD/NaN evaluations (default: unknown).
        weak_ratio: see :func:`summarize_posterior`.
        prob: see :func:`summarize_posterior`.

    Returns:
        A :class:`PosteriorSummary`.

    Example:
        >>> draws = {"lengthscale": torch.rand(2, 8, 3) + 0.1, "rotation": torch.randn(2, 8, 3),
        ...          "outputscale": torch.ones(2, 8), "mean": torch.zeros(2, 8)}
        >>> summarize_samples(draws).lengthscale.shape
        torch.Size([16, 3])
    """
    if not (isinstance(weak_ratio, int | float) and not isinstance(weak_ratio, bool) and weak_ratio > 1.0):
        raise ValueError(f"weak_ratio must be a number > 1, got {weak_ratio!r}")
    if not (isinstance(prob, int | float) and 0.0 < prob < 1.0):
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    for name in ("lengthscale", "rotation", "outputscale", "mean"):
        if name not in samples:
            raise ValueError(f"summarize_samples: samples lack {name!r}")
    chains = samples
    if chains["lengthscale"].dim() != 3 or chains["lengthscale"].shape[-1] < 2:
        raise ValueError(
            "summarize_samples: lengthscale must have shape num_chains x draws x d (d >= 2), got "
            f"{tuple(chains['lengthscale'].shape)}"
        )
    C, D, d = chains["lengthscale"].shape
    m = sod.num_coordinates(d)
    if tuple(chains["rotation"].shape) != (C, D, m):
        raise ValueError(
            f"summarize_samples: rotation must have shape num_chains x draws x {m} (so({d}) coordinates, to go with "
            f"lengthscale {tuple(chains['lengthscale'].shape)}), got {tuple(chains['rotation'].shape)}"
        )
    divergences = [0] * C if divergences is None else list(divergences)
    rejected = [] if num_rejected is None else list(num_rejected)
    ls_c, axes_c = sod.canonicalize(chains["lengthscale"], sod.exp_map(chains["rotation"], d))
    flat = lambda t: t.reshape(C * D, *t.shape[2:])
    ls, axes = flat(ls_c), flat(axes_c)
    directions, aligned, angle = _align_axes(axes)
    aligned_c = aligned.reshape(C, D, d, d)
    coord_angle, _ = coordinate_angle(axes)
    _, nearest = coordinate_angle(directions)

    scalars = {k: chains[k] for k in ("outputscale", "noise", "mean") if k in chains}
    by_chain = {"lengthscale": ls_c, **scalars, "axes": aligned_c}
    rhat, ess = {}, {}
    for name, x in by_chain.items():
        rhat[name], ess[name] = diagnostics(x)
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    pmean, psd, interval = {}, {}, {}
    for name in ("lengthscale", *scalars):
        x = flat(by_chain[name])
        pmean[name] = x.mean(0)
        psd[name] = x.std(0) if x.shape[0] > 1 else torch.zeros_like(x[0])
        interval[name] = torch.stack((x.quantile(lo_q, dim=0), x.quantile(hi_q, dim=0)))

    planar = None
    if d == 3:
        az, dip = azimuth_dip(directions.transpose(-1, -2))
    elif d == 2:
        az, dip = planar_azimuth(directions.transpose(-1, -2)), None
        planar = planar_azimuth(axes.transpose(-1, -2))
    else:
        az = dip = None
    names = _axis_names(d)
    spread = angle.quantile(prob, dim=0)
    ratios = ls[:, 1:] / ls[:, :-1]
    ratio_median = ratios.median(dim=0).values
    weak_pairs: list[tuple[int, int]] = []
    reasons = []
    iv = interval["lengthscale"]
    for i in range(d - 1):
        overlap = bool(iv[1, i] >= iv[0, i + 1])
        close = bool(ratio_median[i] < weak_ratio)
        if overlap or close:
            weak_pairs.append((i, i + 1))
            why = []
            if close:
                why.append(
                    f"posterior median ratio l_{names[i + 1]} / l_{names[i]} = "
                    f"{float(ratio_median[i]):.3g} < {weak_ratio:g}"
                )
            if overlap:
                why.append(f"their {100 * prob:g}% intervals overlap")
            if d == 3:
                other = 2 if i == 0 else 0
                known = f"only the plane (normal = the {names[other]} axis) is well determined; the individual "
                known += "directions, their azimuth/dip"
            elif d == 2:
                known = "the field is nearly isotropic in the plane; the directions, their azimuth"
            else:
                known = "only the plane they span is well determined; the individual directions, their angles"
            reasons.append(
                f"weakly identified: the {names[i]} and {names[i + 1]} length-scales are close "
                f"({'; '.join(why)}). The data barely distinguish the two directions within their plane: "
                f"{known} and their R-hat/ESS are not meaningful."
            )
    if len(weak_pairs) == d - 1 and d == 3:
        reasons.append(
            "all three length-scales are close: the field is nearly isotropic and no direction is identified."
        )
    elif len(weak_pairs) == d - 1 and d > 3:
        reasons.append(
            "every adjacent pair of length-scales is weakly separated: no single principal direction is identified "
            "(more data, or a shrinkage rotation prior, which then keeps the metric near axis-aligned)."
        )
    return PosteriorSummary(
        lengthscale=ls,
        axes=axes,
        aligned_axes=aligned,
        outputscale=flat(chains["outputscale"]),
        noise=flat(chains["noise"]) if "noise" in chains else None,
        mean=flat(chains["mean"]),
        num_chains=C,
        rhat=rhat,
        ess=ess,
        posterior_mean=pmean,
        posterior_sd=psd,
        interval=interval,
        prob=float(prob),
        directions=directions,
        direction_spread=spread,
        azimuth=az,
        dip=dip,
        ratio_median=ratio_median,
        weak_pairs=weak_pairs,
        explanation="\n".join(reasons),
        divergences=divergences,
        num_rejected=rejected,
        weak_ratio=float(weak_ratio),
        dim=d,
        coordinate_angle=coord_angle,
        nearest_coordinate=nearest,
        planar_angle=planar,
    )
