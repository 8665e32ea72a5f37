r"""Fully Bayesian GP with the SO(3) anisotropic kernel: a Pyro model for NUTS and a batched BoTorch model.

Follows BoTorch's fully Bayesian split (``botorch/models/fully_bayesian.py``) without JAX:

* :class:`SO3PyroModel` is a plain class whose :meth:`~SO3PyroModel.sample` is a Pyro program: it draws the
  output-scale, the noise variance (unless ``train_Yvar`` is given), a constant mean, the three principal
  length-scales and the axis-angle rotation from their priors and conditions the exact Gaussian marginal
  likelihood (Cholesky) on the training targets. The covariance is computed by :mod:`gpytorch_so3.functional`,
  the same code the kernel uses, so the sampler and the predictive model cannot disagree.
* :class:`SO3FullyBayesianGP` subclasses BoTorch's ``AbstractFullyBayesianSingleTaskGP``.
  :func:`gpytorch_so3.fit_nuts` samples the Pyro model with Pyro's NUTS and loads the samples into batched GPyTorch
  modules (``ScaleKernel(SO3AnisotropicKernel)`` with ``batch_shape = (num_samples,)``); the inherited
  ``posterior`` then returns BoTorch's :class:`~botorch.posteriors.fully_bayesian.GaussianMixturePosterior` with
  the MCMC batch at ``MCMC_DIM = -3``, so acquisition functions and ``optimize_acqf`` work unchanged.

BoTorch 0.18 moved its own NUTS to NumPyro/JAX and the base class's ``__init__`` checks that JAX is installed;
:class:`SO3FullyBayesianGP` runs the same initialisation steps without that check (its Pyro model is a PyTorch
program), and overrides only what differs (see its docstring). JAX is never needed.

**Any dimension.** :class:`RotatedPyroModel` and :class:`RotatedFullyBayesianGP` are the same construction on
``d >= 2`` inputs (``d`` length-scales, ``d (d - 1) / 2`` so(d) coordinates, ``R = sod.exp_map(w, d)``, kernel
:class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel`); the SO(3) classes are their ``d = 3``
case (subclasses with ``dim`` fixed to 3, same defaults, same draws). For ``d != 3`` the default rotation prior
shrinks towards the identity (:func:`~gpytorch_so3.priors.default_sod_rotation_prior`), so that an axis-aligned
problem is not penalised against ARD; for ``d = 3`` it stays the Haar prior.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gpytorch
import pyro
import pyro.distributions as pdist
import torch
from botorch.acquisition.objective import PosteriorTransform
from botorch.models.fully_bayesian import AbstractFullyBayesianSingleTaskGP
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.models.utils import validate_input_scaling
from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import ScaleKernel
from gpytorch.kernels.kernel import sq_dist
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood, Likelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.priors import GammaPrior, Prior
from torch import Tensor
from torch.distributions import Distribution, constraints

from gpytorch_so3 import functional as F
from gpytorch_so3 import (
    pathwise,  # noqa: F401  (registers the kernels with BoTorch's pathwise samplers)
    priors,
    sod,
)
from gpytorch_so3._validation import check_dim
from gpytorch_so3.exceptions import NonIsotropicInputScalingWarning, NotFittedError, deprecated_alias
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = [
    "FULLY_BAYESIAN_NOISE_CONCENTRATION",
    "FULLY_BAYESIAN_NOISE_RATE",
    "SAMPLE_SITES",
    "NotFittedError",
    "RotatedFullyBayesianGP",
    "RotatedPyroModel",
    "SO3FullyBayesianGP",
    "SO3PyroModel",
    "default_fully_bayesian_noise_prior",
    "sample_sites",
]

#: Names (and per-sample shapes) of the hyperparameters drawn by :meth:`SO3PyroModel.sample` and stored by
#: :func:`gpytorch_so3.fit_nuts`; ``noise`` is absent when the noise variance is fixed (``train_Yvar``).
#: The ``dim``-D model's sites are :func:`sample_sites` ``(dim)``.
SAMPLE_SITES = {"outputscale": (), "noise": (), "mean": (), "lengthscale": (3,), "rotation": (3,)}


def sample_sites(dim: int) -> dict[str, tuple[int, ...]]:
    """Names and per-sample shapes of the hyperparameters of :class:`RotatedPyroModel` in ``dim`` dimensions.

    ``lengthscale`` ``(dim,)``, ``rotation`` ``(dim (dim - 1) / 2,)`` so(d) coordinates; :data:`SAMPLE_SITES` for
    ``dim = 3``.

    Args:
        dim: number of inputs ``d >= 2``.

    Example:
        >>> sample_sites(4)
        {'outputscale': (), 'noise': (), 'mean': (), 'lengthscale': (4,), 'rotation': (6,)}
        >>> sample_sites(3) == SAMPLE_SITES
        True
    """
    m = sod.num_coordinates(dim)  # checks dim
    return {"outputscale": (), "noise": (), "mean": (), "lengthscale": (int(dim),), "rotation": (m,)}


#: Concentration and rate of the default prior of the noise variance above ``MIN_INFERRED_NOISE_LEVEL``:
#: ``Gamma(0.9, 10.0)``, exactly BoTorch 0.18's fully Bayesian models (``PyroModel.sample_noise`` in
#: ``botorch/models/fully_bayesian.py``). Mean 0.09, median 0.06, 95% below 0.28 for standardised outcomes.
FULLY_BAYESIAN_NOISE_CONCENTRATION = 0.9
FULLY_BAYESIAN_NOISE_RATE = 10.0


class _PriorDistribution(pdist.TorchDistribution):
    """A torch/gpytorch prior as a Pyro distribution (``log_prob``, ``support`` and sampling delegated).

    Pyro needs ``event_dim``/``expand``/``to_event`` (its ``TorchDistributionMixin``), which gpytorch's priors
    lack; wrapping keeps *the* prior objects (same densities, same parameters) as the single source of truth.
    """

    arg_constraints: dict = {}  # noqa: RUF012 - torch.distributions API

    def __init__(self, base: Distribution) -> None:
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @constraints.dependent_property
    def support(self):  # type: ignore[override]
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        with torch.no_grad():
            return self.base.sample(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        return self.base.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.base.log_prob(value).to(value.dtype)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        if isinstance(self.base, Prior) and len(self.event_shape) > 0:
            # gpytorch's vector priors (MultivariateNormalPrior, the rotation priors) take the full shape.
            return _PriorDistribution(self.base.expand(batch_shape + self.event_shape))
        return _PriorDistribution(self.base.expand(batch_shape))


def default_fully_bayesian_noise_prior() -> GammaPrior:
    r"""Default noise-variance prior of :class:`SO3PyroModel` / :class:`SO3FullyBayesianGP`: ``Gamma(0.9, 10.0)``.

    The prior of the noise variance *above* BoTorch's ``MIN_INFERRED_NOISE_LEVEL = 1e-4`` (the model adds that
    floor), as in BoTorch's own fully Bayesian models. It is much tighter than the classic MAP default
    ``Gamma(1.1, 0.05)`` of :func:`gpytorch_so3.priors.default_noise_prior` (mode 2, mean 22 for standardised
    outcomes): with that prior and a few dozen points, NUTS put a large share of its draws on noise variances
    comparable to the outcome variance, i.e. explained small data sets as noise (see ``benchmarks/README.md``).
    ``Gamma(0.9, 10.0)`` has mean 0.09 and 95% of its mass below 0.28 (standardised outcomes), and a density that
    grows towards 0, so nearly noise-free data are not penalised. Pass ``noise_prior=`` to :class:`SO3PyroModel`
    to use another prior.

    Returns:
        a fresh :class:`gpytorch.priors.GammaPrior`.

    Example:
        >>> p = default_fully_bayesian_noise_prior()
        >>> round(float(p.concentration), 6), round(float(p.rate), 6)
        (0.9, 10.0)
    """
    return GammaPrior(FULLY_BAYESIAN_NOISE_CONCENTRATION, FULLY_BAYESIAN_NOISE_RATE)


def _default_rotation_prior(dim: int) -> Prior:
    """Haar for ``dim = 3`` (the measured SO(3) results), shrinkage towards the identity otherwise."""
    return priors.default_rotation_prior() if dim == 3 else priors.default_sod_rotation_prior(dim)


def _default_priors(dim: int = 3) -> dict[str, Prior]:
    return {
        "lengthscale": priors.default_lengthscale_prior(),
        "rotation": _default_rotation_prior(dim),
        "outputscale": priors.default_outputscale_prior(),
        "noise": default_fully_bayesian_noise_prior(),
    }


def _prior_to(prior: Distribution, dtype: torch.dtype, device: torch.device) -> Distribution:
    prior = copy.deepcopy(prior)
    if isinstance(prior, torch.nn.Module):
        prior = prior.to(device=device, dtype=dtype)
    return prior


def _reshape_detach(target: Tensor, value: Tensor) -> Tensor:
    return value.detach().clone().reshape(target.shape).to(target)


_LOG_2PI = math.log(2.0 * math.pi)


def _whitened_correlation(X: Tensor, A: Tensor, eye: Tensor, nu: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(z, sq, k)``: ``z = X A``, gpytorch's ``sq_dist`` with an exact-zero diagonal, ``kappa_nu(sq)``.

    The kernel's own code path (the steps of :meth:`SO3AnisotropicKernel.forward`), shared by
    :meth:`SO3PyroModel.noiseless_covariance` and the analytic potential.
    """
    z = F.whiten(X, A)
    # gpytorch's `sq_dist`, which the kernel's `covar_dist` calls, then the kernel's exact-zero diagonal.
    sq = sq_dist(z, z, x1_eq_x2=True).masked_fill(eye, 0.0)
    return z, sq, F.base_correlation(sq, nu)


class _GPLogMarginal(torch.autograd.Function):
    """``log N(y | mean 1, s kappa_nu(sq(X A)) + diag(noise))`` with an analytic backward pass.

    The forward pass builds the kernel matrix with the kernel's own code (gpytorch ``sq_dist`` with an exact-zero
    diagonal, :func:`functional.base_correlation`) and evaluates the Gaussian log density exactly as
    ``MultivariateNormal(mean, scale_tril=cholesky(K)).log_prob(y)``. The backward pass uses
    ``d log p / d K = (alpha alpha^T - K^-1) / 2`` (``alpha = K^-1 (y - mean)``) and the chain rule to the
    whitening matrix ``A``, ``s``, ``noise`` and ``mean`` in closed form: one ``cholesky_inverse`` and a handful
    of ``n x n`` elementwise operations, instead of autograd through the Cholesky factorisation, the triangular
    solve, the distance computation and the ``n x 3 x 3`` whitening product.
    """

    @staticmethod
    def forward(ctx, A, outputscale, noise, mean, X, y, eye, nu):
        n = X.shape[-2]
        z, sq, k = _whitened_correlation(X, A, eye, nu)
        K = outputscale * k + torch.diag_embed(noise.expand(n))
        L = torch.linalg.cholesky(K)
        w = torch.linalg.solve_triangular(L, (y - mean).unsqueeze(-1), upper=False)
        logp = -0.5 * (n * _LOG_2PI + (w * w).sum()) - L.diagonal().log().sum()
        ctx.nu = nu
        ctx.noise_is_scalar = noise.dim() == 0
        ctx.save_for_backward(X, z, outputscale, sq, k, L, w)
        return logp

    @staticmethod
    def backward(ctx, grad):
        X, z, outputscale, sq, k, L, w = ctx.saved_tensors
        alpha = torch.linalg.solve_triangular(L.mT, w, upper=True).squeeze(-1)  # K^-1 (y - mean)
        G = 0.5 * (alpha.unsqueeze(-1) * alpha.unsqueeze(-2) - torch.cholesky_inverse(L))
        g_s = (G * k).sum()
        g_noise = G.diagonal().sum() if ctx.noise_is_scalar else G.diagonal()
        g_mean = alpha.sum()
        # Pairs with sq = 0 (the diagonal, duplicate points) have d sq / d z = 0; zeroing them also avoids the
        # cancellation of a huge H_ii (Matern-1/2's 1 / r at the clamp) in the row-sum form below.
        H = (outputscale * G * F.base_correlation_derivative(sq, ctx.nu)).masked_fill(sq == 0, 0.0)
        # sq_ij = |z_i - z_j|^2 for all ordered pairs and H symmetric: d/dz_i = 4 sum_j H_ij (z_i - z_j).
        g_z = 4.0 * (H.sum(-1, keepdim=True) * z - H @ z)
        g_A = (X.unsqueeze(-1) * g_z.unsqueeze(-2)).sum(-3)  # z = X A: d/dA = X^T g_z (elementwise, see whiten)
        return grad * g_A, grad * g_s, grad * g_noise, grad * g_mean, None, None, None, None


class RotatedPyroModel:
    r"""Pyro model of a GP with the rotated anisotropic kernel in ``dim`` dimensions, for sampling it with NUTS.

    Generative model (``n`` training points in ``d = dim`` dimensions, ``K`` the kernel matrix of
    :mod:`gpytorch_so3.functional`, ``m = d (d - 1) / 2``):

    .. math::
        s \sim p_s,\ \sigma^2 \sim p_{\sigma},\ \mu \sim \mathcal N(0, 1),\ l_i \sim p_l\ (i=1..d),\
        w \sim p_w \text{ on } \mathbb R^m,\qquad
        y \sim \mathcal N\big(\mu \mathbf 1,\ s\,\kappa_\nu(Z Z') + (\sigma^2 + 10^{-4}) I\big),\
        Z = X\,\exp(\mathrm{hat}(w))\,\mathrm{diag}(l)^{-1}

    (:func:`gpytorch_so3.sod.exp_map`; the kernel is
    :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` ``(dim)``). Default priors: the
    length-scale and output-scale priors of :mod:`gpytorch_so3.priors`, the noise prior
    :func:`default_fully_bayesian_noise_prior` (BoTorch's fully Bayesian ``Gamma(0.9, 10.0)``) and, for the
    rotation, :func:`~gpytorch_so3.priors.default_sod_rotation_prior` ``(dim)`` (a spike-and-slab
    :class:`~gpytorch_so3.priors.ShrinkageRotationPrior` that shrinks towards the identity, i.e. towards the ARD
    kernel, so that an axis-aligned truth is not penalised) for ``dim != 3``, and the Haar prior
    (:func:`~gpytorch_so3.priors.default_rotation_prior`) for ``dim = 3``, where this is :class:`SO3PyroModel`.
    Pass ``rotation_prior=priors.HaarAnglePrior()`` (``dim = 2``) for a frame-invariant prior.

    Example:
        >>> pm = RotatedPyroModel(4, nu=2.5)
        >>> pm.set_inputs(torch.rand(20, 4, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64))
        >>> pm.sample_sites
        {'outputscale': (), 'noise': (), 'mean': (), 'lengthscale': (4,), 'rotation': (6,)}
        >>> type(pm.priors["rotation"]).__name__
        'ShrinkageRotationPrior'
        >>> tr = pyro.poutine.trace(pm.sample).get_trace()
        >>> tr.nodes["rotation"]["value"].shape, tr.nodes["lengthscale"]["value"].shape
        (torch.Size([6]), torch.Size([4]))
        >>> _, covar_module, _, _ = pm.load_mcmc_samples(pm.get_dummy_mcmc_samples(2, dtype=torch.float64))
        >>> type(covar_module.base_kernel).__name__, covar_module.base_kernel.rotation_matrix.shape
        ('RotatedAnisotropicKernel', torch.Size([2, 4, 4]))
    """

    def __init__(
        self,
        dim: int,
        nu: float | None = 2.5,
        *,
        lengthscale_prior: Distribution | None = None,
        rotation_prior: Distribution | None = None,
        outputscale_prior: Distribution | None = None,
        noise_prior: Distribution | None = None,
    ) -> None:
        """Build the model (data are set by :meth:`set_inputs`).

        Args:
            dim: number of inputs ``d >= 2``.
            nu: base kernel: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default).
            lengthscale_prior: prior of each principal length-scale (scalar event, or event shape ``(dim,)``;
                default ``priors.default_lengthscale_prior()``).
            rotation_prior: prior of the so(d) coordinates with ``event_shape == (dim (dim - 1) / 2,)`` and real
                support (default: Haar for ``dim = 3``, ``priors.default_sod_rotation_prior(dim)`` otherwise).
            outputscale_prior: prior of the output-scale (default ``priors.default_outputscale_prior()``).
            noise_prior: prior of the noise variance above ``1e-4`` (default
                :func:`default_fully_bayesian_noise_prior`, ``Gamma(0.9, 10.0)`` as in BoTorch's fully Bayesian
                models).

        Raises:
            TypeError: ``dim`` is not an int, or a prior is not a distribution.
            ValueError: ``dim < 2``, bad ``nu`` or a rotation prior of the wrong event shape.
        """
        dim = check_dim(dim, where=f"{type(self).__name__}: ")
        self.dim = dim
        self.nu = F.check_nu(nu)
        given = {
            "lengthscale": lengthscale_prior,
            "rotation": rotation_prior,
            "outputscale": outputscale_prior,
            "noise": noise_prior,
        }
        for name, p in given.items():
            if p is not None and not isinstance(p, Distribution):
                raise TypeError(f"{name}_prior must be a torch/gpytorch distribution, got {type(p).__name__}")
        m = sod.num_coordinates(dim)
        rp = given["rotation"]
        if rp is not None and tuple(rp.event_shape) != (m,):
            raise ValueError(
                f"rotation_prior must have event_shape ({m},) (the so({dim}) coordinates), got {tuple(rp.event_shape)}"
            )
        ls = given["lengthscale"]
        if ls is not None and tuple(ls.event_shape) not in ((), (dim,)):
            raise ValueError(f"lengthscale_prior must have event_shape () or ({dim},), got {tuple(ls.event_shape)}")
        self._given_priors = given
        self.train_X: Tensor | None = None

    # -- data ------------------------------------------------------------------------------------------------
    def set_inputs(
        self, train_X: Tensor, train_Y: Tensor, train_Yvar: Tensor | None = None, *, dtype: torch.dtype | None = None
    ) -> None:
        """Set the training data (already transformed by the BoTorch model's input/outcome transforms).

        Args:
            train_X: ``n x dim`` inputs.
            train_Y: ``n x 1`` targets.
            train_Yvar: ``n x 1`` known noise variances, or ``None`` to infer a homoscedastic noise.
            dtype: dtype of the computations inside the sampler (default: that of ``train_X``). The samples are
                loaded into modules of ``train_X``'s dtype whatever this is.
        """
        name = type(self).__name__
        if train_X.dim() != 2 or train_X.shape[-1] != self.dim:
            raise ValueError(f"{name}: train_X must have shape n x {self.dim}, got {tuple(train_X.shape)}")
        if train_Y.dim() != 2 or train_Y.shape != (train_X.shape[0], 1):
            raise ValueError(
                f"{name}: train_Y must have shape n x 1 with n = {train_X.shape[0]}, got {tuple(train_Y.shape)}"
            )
        if train_Yvar is not None and train_Yvar.shape != train_Y.shape:
            raise ValueError(
                f"{name}: train_Yvar must have the shape of train_Y {tuple(train_Y.shape)}, "
                f"got {tuple(train_Yvar.shape)}"
            )
        self.train_X, self.train_Y, self.train_Yvar = train_X, train_Y, train_Yvar
        self.set_dtype(train_X.dtype if dtype is None else dtype)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Cast the sampler's copies of the data and priors to ``dtype`` (on the data's device)."""
        if self.train_X is None:
            raise RuntimeError(f"{type(self).__name__}: call set_inputs first")
        device = self.train_X.device
        X = self.train_X.detach().to(dtype)
        # The metric is translation invariant; centring keeps whitened coordinates small (as the kernel does).
        self._X = X - X.mean(dim=-2, keepdim=True)
        self._eye = torch.eye(X.shape[-2], dtype=torch.bool, device=device)
        self._y = self.train_Y.detach().to(dtype).squeeze(-1)
        self._Yvar = None if self.train_Yvar is None else self.train_Yvar.detach().to(dtype).squeeze(-1)
        defaults = None
        self.priors: dict[str, Distribution] = {}
        for name, p in self._given_priors.items():
            if p is None:
                defaults = _default_priors(self.dim) if defaults is None else defaults
                p = defaults[name]
            self.priors[name] = _prior_to(p, dtype, device)
        self.dtype = dtype

    @property
    def sampler_X(self) -> Tensor:
        """``n x dim``: the sampler's copy of the inputs, centred (translation invariance), in the sampler's dtype."""
        return self._X

    @property
    def sampler_y(self) -> Tensor:
        """``(n,)``: the sampler's copy of the (transformed) targets, in the sampler's dtype."""
        return self._y

    @property
    def sample_sites(self) -> dict[str, tuple[int, ...]]:
        """Names and per-sample shapes of the sampled hyperparameters."""
        sites = sample_sites(self.dim)
        if self.train_Yvar is not None:
            sites.pop("noise")
        return sites

    # -- the Pyro program ------------------------------------------------------------------------------------
    def _one(self, value: float) -> Tensor:
        return torch.tensor(value, dtype=self.dtype, device=self._X.device)

    def sample_outputscale(self) -> Tensor:
        """Draw the output-scale (scalar)."""
        return pyro.sample("outputscale", _PriorDistribution(self.priors["outputscale"]))

    def sample_noise(self) -> Tensor:
        """Draw the noise variance (scalar, ``>= 1e-4``) or return the fixed ``n`` variances."""
        if self._Yvar is not None:
            return self._Yvar
        return MIN_INFERRED_NOISE_LEVEL + pyro.sample("noise", _PriorDistribution(self.priors["noise"]))

    def sample_mean(self) -> Tensor:
        """Draw the constant mean (scalar), ``N(0, 1)`` as in BoTorch."""
        return pyro.sample("mean", pdist.Normal(self._one(0.0), self._one(1.0)))

    def sample_lengthscale(self) -> Tensor:
        """Draw the ``dim`` principal length-scales, ``(dim,)``, i.i.d. from the length-scale prior."""
        p = self.priors["lengthscale"]
        if tuple(p.event_shape) == (self.dim,):
            d = _PriorDistribution(p)
        else:
            d = _PriorDistribution(p.expand(torch.Size([self.dim]))).to_event(1)
        return pyro.sample("lengthscale", d)

    def sample_rotation(self) -> Tensor:
        """Draw the so(d) coordinates ``(dim (dim - 1) / 2,)`` (``dim = 3``: the axis-angle vector) from their prior."""
        return pyro.sample("rotation", _PriorDistribution(self.priors["rotation"]))

    def noiseless_covariance(self, outputscale: Tensor, lengthscale: Tensor, rotation: Tensor) -> Tensor:
        """``s * kappa_nu(|(x_i - x_j) A|^2)``, ``n x n``: the kernel's own code path.

        ``A = functional.so3_whitening_matrix(l, sod.exp_map(w, dim))``, ``z = functional.whiten(x - mean(x), A)``,
        squared distances by gpytorch's ``sq_dist`` (what ``Kernel.covar_dist`` uses) with an exact-zero diagonal,
        and ``functional.base_correlation``: the same steps as :meth:`SO3AnisotropicKernel.forward`.

        Args:
            outputscale: ``...`` output-scales.
            lengthscale: ``... x dim`` principal length-scales.
            rotation: ``... x dim (dim - 1) / 2`` so(d) coordinates (``dim = 3``: axis-angle vectors).
        """
        A = F.so3_whitening_matrix(lengthscale, sod.exp_map(rotation, self.dim))
        _, _, k = _whitened_correlation(self._X, A, self._eye, self.nu)
        return outputscale[..., None, None] * k

    # -- fast potential energy for NUTS ----------------------------------------------------------------------
    _PROGRAM_METHODS = (
        "sample",
        "sample_outputscale",
        "sample_noise",
        "sample_mean",
        "sample_lengthscale",
        "sample_rotation",
        "noiseless_covariance",
    )

    @property
    def has_default_program(self) -> bool:
        """Whether the Pyro program is this class's own (no ``sample*``/``noiseless_covariance`` overridden).

        Only then does :meth:`make_potential_fn` reproduce the program; :func:`gpytorch_so3.fit_nuts` otherwise
        uses Pyro's generic potential of :meth:`sample`.

        Example:
            >>> SO3PyroModel().has_default_program
            True
            >>> class FixedMean(SO3PyroModel):
            ...     def sample_mean(self):
            ...         return torch.zeros((), dtype=self.dtype)
            >>> FixedMean().has_default_program
            False
        """
        return all(getattr(type(self), m) is _DEFAULT_PROGRAM[m] for m in self._PROGRAM_METHODS)

    def make_potential_fn(self, transforms: dict) -> Callable[[dict[str, Tensor]], Tensor]:
        r"""Potential energy of :meth:`sample` on unconstrained parameters, with an analytic likelihood gradient.

        Returns ``U(u) = -[log p(y | theta) + sum_i log p_i(theta_i) + sum_i log |d theta_i / d u_i|]`` with
        ``theta_i = transforms[i].inv(u_i)``: the same value as Pyro's generic potential
        (``pyro.infer.mcmc.util.initialize_model(self.sample)``), built without tracing the Pyro program (no
        messenger stack, no distribution objects per step) and with the GP marginal likelihood's gradient in
        closed form (:class:`_GPLogMarginal`). The priors' ``log_prob`` and the transforms are the same objects
        Pyro uses. Valid only if :attr:`has_default_program`. Plain eager PyTorch: ``benchmarks/bench_nuts.py``
        (``potential`` mode) measures it against Pyro's generic potential, eager and traced.

        A kernel matrix that is not numerically positive definite (or has NaN entries) makes the Cholesky
        factorisation raise ``torch.linalg.LinAlgError``; :func:`gpytorch_so3.fit_nuts` rejects such steps.

        Args:
            transforms: site name -> Pyro transform from constrained to unconstrained space, as returned by
                ``initialize_model``.

        Returns:
            a callable mapping ``{site: unconstrained tensor}`` to the scalar potential energy.

        Example:
            >>> from pyro.infer.mcmc.util import initialize_model
            >>> pyro.set_rng_seed(0)
            >>> pm = SO3PyroModel()
            >>> pm.set_inputs(torch.rand(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64))
            >>> pm.has_default_program  # a subclass overriding e.g. sample_mean would give False
            True
            >>> params, pyro_potential, transforms, _ = initialize_model(pm.sample)
            >>> U = pm.make_potential_fn(transforms)
            >>> U(params).shape, torch.allclose(U(params), pyro_potential(params))  # same value as Pyro's
            (torch.Size([]), True)
        """
        if not self.has_default_program:
            raise RuntimeError("make_potential_fn: the Pyro program is overridden; use Pyro's generic potential")
        sites = list(self.sample_sites)
        p_ls = self.priors["lengthscale"]
        p_ls = p_ls if tuple(p_ls.event_shape) == (self.dim,) else p_ls.expand(torch.Size([self.dim]))
        p_out, p_rot = self.priors["outputscale"], self.priors["rotation"]
        p_noise = self.priors.get("noise")
        dtype = self.dtype
        n = self._X.shape[-2]

        def prior_part(*us: Tensor) -> tuple[Tensor, ...]:
            """Unconstrained values (``sites`` order) -> ``(A, s, mean, log priors + log Jacobians[, noise])``."""
            theta, log_joint = {}, 0.0
            for name, u in zip(sites, us, strict=True):
                t = transforms[name]
                theta[name] = v = t.inv(u)
                log_joint = log_joint - t.log_abs_det_jacobian(v, u).sum()  # log |d theta / d u|, as Pyro
            mean = theta["mean"]
            log_joint = (
                log_joint
                + p_out.log_prob(theta["outputscale"]).to(dtype).sum()
                + p_ls.log_prob(theta["lengthscale"]).to(dtype).sum()
                + p_rot.log_prob(theta["rotation"]).to(dtype).sum()
                - 0.5 * (mean * mean + _LOG_2PI)
            )
            A = F.so3_whitening_matrix(theta["lengthscale"], sod.exp_map(theta["rotation"], self.dim))
            if self._Yvar is not None:  # fixed noise: a constant
                return A, theta["outputscale"], mean, log_joint
            log_joint = log_joint + p_noise.log_prob(theta["noise"]).to(dtype).sum()
            return A, theta["outputscale"], mean, log_joint, MIN_INFERRED_NOISE_LEVEL + theta["noise"]

        def potential(params: dict[str, Tensor]) -> Tensor:
            out = prior_part(*(params[name] for name in sites))
            A, s, mean, log_joint = out[:4]
            noise = self._Yvar if self._Yvar is not None else out[4]
            if n > 0:
                log_joint = log_joint + _GPLogMarginal.apply(A, s, noise, mean, self._X, self._y, self._eye, self.nu)
            return -log_joint

        return potential

    def sample(self) -> None:
        """The Pyro program: draw the hyperparameters and observe ``train_Y`` under the exact GP likelihood.

        The kernel matrix is factorised with ``torch.linalg.cholesky``; a non-positive-definite proposal raises
        ``torch.linalg.LinAlgError``, which :func:`gpytorch_so3.fit_nuts` turns into a rejected leapfrog step.
        """
        if self.train_X is None:
            raise RuntimeError(f"{type(self).__name__}: call set_inputs before sampling")
        outputscale = self.sample_outputscale()
        noise = self.sample_noise()
        mean = self.sample_mean()
        lengthscale = self.sample_lengthscale()
        rotation = self.sample_rotation()
        n = self._X.shape[-2]
        if n == 0:
            return
        K = self.noiseless_covariance(outputscale, lengthscale, rotation)
        K = K + torch.diag_embed(noise.expand(n))
        L = torch.linalg.cholesky(K)
        pyro.sample("Y", pdist.MultivariateNormal(mean.expand(n), scale_tril=L), obs=self._y)

    # -- from samples to batched modules ----------------------------------------------------------------------
    def postprocess_mcmc_samples(self, mcmc_samples: dict[str, Tensor]) -> dict[str, Tensor]:
        """Samples of the Pyro sites -> samples of the model's hyperparameters (``noise`` includes ``1e-4``).

        Args:
            mcmc_samples: site name -> ``(..., *site_shape)`` tensor, as returned by Pyro's ``MCMC.get_samples``.

        Returns:
            name -> tensor with the same leading dimensions, for every name in :attr:`sample_sites`.
        """
        out = {k: v.detach() for k, v in mcmc_samples.items() if k in SAMPLE_SITES}  # the names (any dim)
        if "noise" in out:
            out["noise"] = out["noise"] + MIN_INFERRED_NOISE_LEVEL
        missing = set(self.sample_sites) - set(out)
        if missing:
            raise ValueError(f"{type(self).__name__}: MCMC samples lack {sorted(missing)}")
        return out

    def get_dummy_mcmc_samples(self, num_mcmc_samples: int, **tkwargs: Any) -> dict[str, Tensor]:
        """Placeholder samples (ones; rotation zero) with the right shapes, for ``load_state_dict``."""
        out = {
            name: (torch.zeros if name == "rotation" else torch.ones)(num_mcmc_samples, *shape, **tkwargs)
            for name, shape in self.sample_sites.items()
        }
        return out

    def load_mcmc_samples(
        self, mcmc_samples: dict[str, Tensor]
    ) -> tuple[Mean, ScaleKernel, Likelihood, InputTransform | None]:
        """Build batched GPyTorch modules holding the samples (batch shape ``(num_samples,)``).

        Args:
            mcmc_samples: name -> ``num_samples x ...`` hyperparameter samples (see :attr:`sample_sites`).

        Returns:
            ``(mean_module, covar_module, likelihood, input_transform)``: ``ConstantMean``,
            ``ScaleKernel(RotatedAnisotropicKernel(dim))`` (``SO3AnisotropicKernel`` for ``dim = 3``), a (fixed-noise)
            Gaussian likelihood, in ``train_X``'s dtype and
            on its device, and ``None`` (no sampled input transform): the protocol of BoTorch's
            ``PyroModel.load_mcmc_samples``, which ``AbstractFullyBayesianSingleTaskGP.load_mcmc_samples`` calls.
        """
        missing = set(self.sample_sites) - set(mcmc_samples)
        if missing:
            raise ValueError(f"load_mcmc_samples: missing samples for {sorted(missing)}")
        tkwargs = {"device": self.train_X.device, "dtype": self.train_X.dtype}
        num = mcmc_samples["mean"].shape[0]
        for name, shape in self.sample_sites.items():
            if tuple(mcmc_samples[name].shape) != (num, *shape):
                raise ValueError(
                    f"load_mcmc_samples: {name} must have shape {(num, *shape)}, got {tuple(mcmc_samples[name].shape)}"
                )
        batch_shape = torch.Size([num])
        mean_module = ConstantMean(batch_shape=batch_shape).to(**tkwargs)
        mean_module.constant.data = _reshape_detach(mean_module.constant.data, mcmc_samples["mean"])
        if self.dim == 3:
            base = SO3AnisotropicKernel(nu=self.nu, batch_shape=batch_shape)
        else:
            base = RotatedAnisotropicKernel(self.dim, nu=self.nu, batch_shape=batch_shape)
        covar_module = ScaleKernel(base, batch_shape=batch_shape).to(**tkwargs)
        covar_module.outputscale = _reshape_detach(covar_module.outputscale, mcmc_samples["outputscale"])
        base.lengthscale = _reshape_detach(base.lengthscale, mcmc_samples["lengthscale"])
        base.rotation = _reshape_detach(base.rotation, mcmc_samples["rotation"])
        if self.train_Yvar is not None:
            likelihood = FixedNoiseGaussianLikelihood(
                noise=self.train_Yvar.squeeze(-1).expand(num, self.train_Yvar.shape[0]),
                batch_shape=batch_shape,
            ).to(**tkwargs)
        else:
            likelihood = GaussianLikelihood(
                batch_shape=batch_shape, noise_constraint=GreaterThan(MIN_INFERRED_NOISE_LEVEL)
            ).to(**tkwargs)
            likelihood.noise_covar.noise = _reshape_detach(
                likelihood.noise_covar.noise, mcmc_samples["noise"].clamp_min(MIN_INFERRED_NOISE_LEVEL)
            )
        return mean_module, covar_module, likelihood, None


#: The original program methods (to detect overrides and monkeypatches, see ``has_default_program``).
_DEFAULT_PROGRAM = {m: getattr(RotatedPyroModel, m) for m in RotatedPyroModel._PROGRAM_METHODS}


class SO3PyroModel(RotatedPyroModel):
    r"""Pyro model of a GP with the SO(3) anisotropic kernel, for sampling its hyperparameters with NUTS.

    Generative model (``n`` training points, ``K`` the kernel matrix of :mod:`gpytorch_so3.functional`):

    .. math::
        s \sim p_s,\ \sigma^2 \sim p_{\sigma},\ \mu \sim \mathcal N(0, 1),\ l_i \sim p_l\ (i=1,2,3),\
        w \sim p_w,\qquad
        y \sim \mathcal N\big(\mu \mathbf 1,\ s\,\kappa_\nu(Z Z') + (\sigma^2 + 10^{-4}) I\big),\
        Z = X\,\exp(\hat w)\,\mathrm{diag}(l)^{-1}.

    The length-scale, rotation and output-scale priors default to :mod:`gpytorch_so3.priors`
    (``default_*_prior()``); ``p_w`` is the Haar prior on rotations written as a smooth density on axis-angle
    vectors. The noise prior ``p_sigma`` defaults to BoTorch's fully Bayesian ``Gamma(0.9, 10.0)``
    (:func:`default_fully_bayesian_noise_prior`), not the classic MAP ``Gamma(1.1, 0.05)``, which let NUTS
    explain small data sets as noise. As in BoTorch, the priors (and the
    :math:`\mathcal N(0, 1)` mean prior) assume standardised outcomes, and ``10^-4`` is BoTorch's
    ``MIN_INFERRED_NOISE_LEVEL``; the stored ``noise`` sample includes it. Pyro maps the positive sites to
    unconstrained space by ``log`` and adds the Jacobian itself.

    It is :class:`RotatedPyroModel` with ``dim = 3``. Use it through :class:`SO3FullyBayesianGP`; subclasses may
    override the ``sample_*`` methods (e.g. the
    benchmark's ARD variant fixes the rotation at zero).

    Example:
        >>> pm = SO3PyroModel(nu=2.5)
        >>> pm.set_inputs(torch.rand(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64))
        >>> pm.sample_sites  # name -> per-sample shape
        {'outputscale': (), 'noise': (), 'mean': (), 'lengthscale': (3,), 'rotation': (3,)}
        >>> tr = pyro.poutine.trace(pm.sample).get_trace()  # one run of the Pyro program
        >>> tr.nodes["rotation"]["value"].shape, tr.nodes["Y"]["is_observed"]
        (torch.Size([3]), True)

        Each site can be drawn alone (outside a handler: a draw from its prior):

        >>> pm.sample_lengthscale().shape, pm.sample_rotation().shape, pm.sample_outputscale().shape
        (torch.Size([3]), torch.Size([3]), torch.Size([]))
        >>> pm.sample_mean().shape, bool(pm.sample_noise() >= 1e-4)
        (torch.Size([]), True)

        The noiseless kernel matrix of given hyperparameters, ``n x n`` (output-scale on the diagonal):

        >>> f64 = {"dtype": torch.float64}
        >>> K = pm.noiseless_covariance(torch.tensor(2.0, **f64), torch.ones(3, **f64), torch.zeros(3, **f64))
        >>> K.shape, K.diagonal().unique().tolist()
        (torch.Size([20, 20]), [2.0])

        From (here placeholder) MCMC draws to batched GPyTorch modules:

        >>> draws = pm.get_dummy_mcmc_samples(4, dtype=torch.float64)
        >>> post = pm.postprocess_mcmc_samples(draws)  # adds the 1e-4 noise floor
        >>> round(float(post["noise"][0]), 6)
        1.0001
        >>> mean_module, covar_module, likelihood, _ = pm.load_mcmc_samples(post)
        >>> covar_module.batch_shape, covar_module.base_kernel.rotation.shape
        (torch.Size([4]), torch.Size([4, 3]))
        >>> pm.set_dtype(torch.float32)  # sample in float32 (the data stay float64)
        >>> pm.sample_lengthscale().dtype
        torch.float32
    """

    def __init__(self, nu: float | None = 2.5, **kwargs) -> None:
        """Build the model (data are set by :meth:`set_inputs`).

        Args:
            nu: base kernel: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default).
            **kwargs: the keyword-only priors of :class:`RotatedPyroModel` (``lengthscale_prior``,
                ``rotation_prior`` with ``event_shape == (3,)``, default Haar ``priors.default_rotation_prior()``,
                ``outputscale_prior``, ``noise_prior``, default ``Gamma(0.9, 10.0)`` as in BoTorch's fully Bayesian
                models); an unknown name is a ``TypeError``.
        """
        super().__init__(3, nu, **kwargs)


def _check_isotropic_scaling(
    input_transform: InputTransform | None, owner: str = "SO3FullyBayesianGP", stacklevel: int = 3
) -> None:
    """Warn if a ``Normalize`` in the input transform scales the axes differently (shears angles)."""
    if input_transform is None:
        return

    mods = input_transform.modules() if isinstance(input_transform, torch.nn.Module) else []
    for m in mods:
        if isinstance(m, Normalize) and getattr(m, "coefficient", None) is not None:
            c = m.coefficient.reshape(-1)
            # 0.1%: shears below that change angles by less than ~0.03 degrees.
            if c.numel() > 1 and float(c.max() / c.min()) > 1.0 + 1e-3:
                warnings.warn(
                    f"{owner}: the Normalize input transform scales the axes by different factors "
                    f"{c.tolist()}; this shears space, so the sampled rotations and length-scales describe the "
                    "normalised coordinates, not the physical ones. Scale all axes by one factor to keep angles.",
                    NonIsotropicInputScalingWarning,
                    stacklevel=stacklevel,
                )


class RotatedFullyBayesianGP(AbstractFullyBayesianSingleTaskGP):
    r"""Fully Bayesian single-output GP with the rotated anisotropic kernel on ``d >= 2`` inputs (Pyro NUTS, no JAX).

    The ``d``-dimensional counterpart of :class:`SO3FullyBayesianGP` (which is this class with ``d = 3`` and the
    Haar rotation prior): the hyperparameters (output-scale, noise, constant mean, ``d`` principal length-scales and
    ``d (d - 1) / 2`` so(d) rotation coordinates) are sampled with :func:`gpytorch_so3.fit_nuts` from the posterior of
    :class:`RotatedPyroModel` and loaded into batched modules with ``batch_shape = (num_samples,)``:
    ``covar_module = ScaleKernel(RotatedAnisotropicKernel(d, nu))``. ``posterior`` is BoTorch's
    :class:`~botorch.posteriors.fully_bayesian.GaussianMixturePosterior`, so acquisition functions and
    ``optimize_acqf`` work unchanged; :func:`gpytorch_so3.summarize_posterior` gives canonical length-scales and
    principal directions with R-hat and ESS.

    **Do no harm.** For ``d != 3`` the default rotation prior is
    :func:`~gpytorch_so3.priors.default_sod_rotation_prior` (a spike-and-slab
    :class:`~gpytorch_so3.priors.ShrinkageRotationPrior` on each so(d) coordinate): the model averages over
    "this coordinate plane is not rotated" (the spike, i.e. the ARD kernel) and "it is" (the slab), so on an
    axis-aligned problem the posterior concentrates at the identity and the model behaves like a fully Bayesian
    ARD GP, while a rotation the data support is found. For ``d = 3`` the default is the Haar prior (the measured
    SO(3) results); pass ``rotation_prior=priors.default_sod_rotation_prior(3)`` to shrink there too.

    The inputs are used as given (angles stay physical); as in BoTorch, the priors assume standardised outcomes
    (``outcome_transform=Standardize(m=1)``) and inputs of order one (e.g. the unit cube).

    Example:
        >>> from botorch.models.transforms import Standardize
        >>> from gpytorch_so3.nuts import fit_nuts
        >>> X = torch.rand(16, 4, dtype=torch.float64); Y = torch.sin(4 * X[:, :1] + 2 * X[:, 1:2])
        >>> model = RotatedFullyBayesianGP(X, Y, outcome_transform=Standardize(m=1))
        >>> model.dim, model.pyro_model.sample_sites["rotation"]
        (4, (6,))
        >>> _ = fit_nuts(model, warmup_steps=4, num_samples=4, thinning=2, max_tree_depth=2,
        ...              disable_progbar=True)  # a toy budget; see fit_nuts for the defaults
        >>> model.num_mcmc_samples, model.kernel.rotation_matrix.shape
        (2, torch.Size([2, 4, 4]))
        >>> model.posterior(torch.rand(5, 4, dtype=torch.float64)).mixture_mean.shape
        torch.Size([5, 1])
    """

    _pyro_model_class = RotatedPyroModel
    #: Number of inputs the class is restricted to (``None``: any ``d >= 2``, read from ``train_X``).
    _fixed_dim: int | None = None

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None = None,
        *,
        nu: float | None = 2.5,
        rotation_prior: Distribution | None = None,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | None = None,
        pyro_model: RotatedPyroModel | None = None,
    ) -> None:
        """Set up the model (fit it with :func:`gpytorch_so3.fit_nuts`).

        Args:
            train_X: ``n x d`` training inputs (``n >= 1``, ``d >= 2``; ``d`` is read from the transformed inputs).
            train_Y: ``n x 1`` training targets.
            train_Yvar: ``n x 1`` observed noise variances; ``None`` infers a homoscedastic noise.
            nu: base kernel, ``None`` (squared exponential) or 0.5, 1.5, 2.5 (Matern, default 2.5 as BoTorch's
                fully Bayesian models).
            rotation_prior: prior of the ``d (d - 1) / 2`` so(d) coordinates (default: Haar for ``d = 3``,
                :func:`~gpytorch_so3.priors.default_sod_rotation_prior` otherwise); not together with ``pyro_model``.
            input_transform: BoTorch input transform applied in the model's forward pass.
            outcome_transform: BoTorch outcome transform (e.g. ``Standardize(m=1)``); the posterior is returned
                on the original scale.
            pyro_model: a custom :class:`RotatedPyroModel` (e.g. with other priors); its ``nu`` must equal ``nu``
                and its ``dim`` the number of inputs.

        Raises:
            TypeError: non-tensor or non-floating inputs, or ``pyro_model`` of the wrong type.
            ValueError: wrong shapes, no training points, non-finite values, bad ``nu``.
        """
        name = type(self).__name__
        fixed = self._fixed_dim
        shape_d = "d" if fixed is None else str(fixed)
        for arg, t in (("train_X", train_X), ("train_Y", train_Y), ("train_Yvar", train_Yvar)):
            if t is not None and (not torch.is_tensor(t) or not t.is_floating_point()):
                raise TypeError(f"{name}: {arg} must be a floating-point torch.Tensor")
        if not (train_X.dim() == train_Y.dim() == 2 and len(train_X) == len(train_Y) and train_Y.shape[-1] == 1):
            raise ValueError(
                f"{name}: expected train_X of shape n x {shape_d} and train_Y of shape n x 1, got "
                f"{tuple(train_X.shape)} and {tuple(train_Y.shape)}"
            )
        if train_X.shape[0] == 0:
            raise ValueError(
                f"{name}: no training points (train_X has shape {tuple(train_X.shape)}); "
                "a fully Bayesian GP needs data to condition on"
            )
        if train_Yvar is not None and train_Yvar.shape != train_Y.shape:
            raise ValueError(
                f"{name}: train_Yvar must be None or have the shape of train_Y, got {tuple(train_Yvar.shape)}"
            )
        nu = F.check_nu(nu)
        if pyro_model is not None:
            if not isinstance(pyro_model, self._pyro_model_class):
                raise TypeError(
                    f"pyro_model must be a {self._pyro_model_class.__name__}, got {type(pyro_model).__name__}"
                )
            if pyro_model.nu != nu:
                raise ValueError(f"pyro_model.nu = {pyro_model.nu} differs from nu = {nu}")
            if rotation_prior is not None:
                raise ValueError(f"{name}: pass rotation_prior to the pyro_model, not both")
        # From here on: the steps of AbstractFullyBayesianSingleTaskGP.__init__ (BoTorch 0.18) without its
        # _check_jax_available() (see the class docstring), plus the dimension, finiteness and scaling checks.
        with torch.no_grad():
            transformed_X = self.transform_inputs(X=train_X, input_transform=input_transform)
        d = transformed_X.shape[-1]
        if fixed is not None and d != fixed:
            raise ValueError(
                f"{name} works on {fixed}-D inputs; the (transformed) train_X has shape {tuple(transformed_X.shape)}"
                + ("" if fixed != 3 else " (RotatedFullyBayesianGP takes any number d >= 2 of inputs)")
            )
        if d < 2:
            raise ValueError(
                f"{name} needs d >= 2 inputs (a rotation of 1-D inputs is trivial: use BoTorch's fully Bayesian "
                f"models); the (transformed) train_X has shape {tuple(transformed_X.shape)}"
            )
        if pyro_model is None:
            if fixed is None:
                pyro_model = self._pyro_model_class(d, nu=nu, rotation_prior=rotation_prior)
            else:
                pyro_model = self._pyro_model_class(nu=nu, rotation_prior=rotation_prior)
        elif pyro_model.dim != d:
            raise ValueError(f"pyro_model.dim = {pyro_model.dim} differs from the number of inputs d = {d}")
        if not bool(torch.isfinite(transformed_X).all()) or not bool(torch.isfinite(train_Y).all()):
            raise ValueError(f"{name}: train_X and train_Y must be finite")
        # stacklevel: the user's call (one frame more through SO3FullyBayesianGP.__init__).
        _check_isotropic_scaling(input_transform, name, stacklevel=3 + (fixed is not None))
        if outcome_transform is not None:
            outcome_transform.train()
            train_Y, train_Yvar = outcome_transform(Y=train_Y, Yvar=train_Yvar, X=transformed_X)
        self._validate_tensor_args(X=transformed_X, Y=train_Y)
        validate_input_scaling(train_X=transformed_X, train_Y=train_Y, train_Yvar=train_Yvar)
        self._num_outputs = train_Y.shape[-1]
        self._input_batch_shape = train_X.shape[:-2]
        if train_Yvar is not None:  # clamp after transforming, as BoTorch
            train_Yvar = train_Yvar.clamp(MIN_INFERRED_NOISE_LEVEL)
        X_tf, Y_tf, _ = self._transform_tensor_args(X=train_X, Y=train_Y)
        # ExactGP.__init__: the next initialiser after BoTorch's base in the MRO (the base's own is skipped).
        super(AbstractFullyBayesianSingleTaskGP, self).__init__(
            train_inputs=X_tf, train_targets=Y_tf, likelihood=GaussianLikelihood()
        )
        self.mean_module: Mean | None = None
        self.covar_module: ScaleKernel | None = None
        self.likelihood: Likelihood | None = None
        self.nu = nu
        self.dim = d
        #: Input columns of the anisotropic kernel (for :func:`~gpytorch_so3.check_input_scaling`): all of them.
        self.anisotropic_input_dims = tuple(range(d))
        self.pyro_model = pyro_model
        self.pyro_model.set_inputs(train_X=transformed_X, train_Y=train_Y, train_Yvar=train_Yvar)
        self.fit_nuts_info_ = None
        if outcome_transform is not None:
            self.outcome_transform = outcome_transform
        if input_transform is not None:
            self.input_transform = input_transform

    # -- fitted state -----------------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """Whether MCMC samples are loaded."""
        return self.covar_module is not None

    def _check_if_fitted(self) -> None:
        if self.covar_module is None:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit_nuts(model) first (gpytorch_so3.fit_nuts), or load "
                "samples with model.load_mcmc_samples(...) / model.load_state_dict(...). Note that model.train() "
                "drops the samples."
            )

    def __call__(self, *args: Any, **kwargs: Any) -> MultivariateNormal:
        """``model(X)``: as ``ExactGP.__call__``, after checking that samples are loaded (:class:`NotFittedError`)."""
        self._check_if_fitted()
        return super().__call__(*args, **kwargs)

    def train(self, mode: bool = True, reset: bool = True) -> RotatedFullyBayesianGP:
        """BoTorch's ``train``: with ``mode=True`` and ``reset=True`` the samples (and ``fit_nuts_info_``) are dropped.

        Args:
            mode: training (True) or eval (False) mode.
            reset: drop the loaded samples when entering training mode.

        Returns:
            The model.
        """
        super().train(mode=mode, reset=reset)
        if mode and reset:
            self.fit_nuts_info_ = None
        return self

    def load_mcmc_samples(self, mcmc_samples: dict[str, Tensor]) -> None:
        """Load hyperparameter samples (name -> ``num_samples x ...``, see :data:`SAMPLE_SITES`) into the model.

        BoTorch's ``load_mcmc_samples``; the run record ``fit_nuts_info_`` of an earlier fit is dropped (it no longer
        describes the loaded samples; :func:`gpytorch_so3.fit_nuts` sets a new one).
        """
        super().load_mcmc_samples(mcmc_samples)
        self.fit_nuts_info_ = None

    # -- conveniences -----------------------------------------------------------------------------------------
    @property
    def kernel(self) -> RotatedAnisotropicKernel:
        """The batched kernel inside the ``ScaleKernel`` (``RotatedAnisotropicKernel(d)``; ``SO3AnisotropicKernel``)."""
        self._check_if_fitted()
        return self.covar_module.base_kernel

    def canonical(self) -> tuple[Tensor, Tensor]:
        """Canonical ``(lengthscale, axes)`` of the loaded samples (see :func:`sod.canonicalize`).

        The same name as the kernels' :meth:`~gpytorch_so3.SO3AnisotropicKernel.canonical`; for summaries use
        :func:`gpytorch_so3.summarize_posterior`, which also
        uses every (unthinned) draw and gives intervals and diagnostics.

        Returns:
            ``num_samples x d`` ascending length-scales and ``num_samples x d x d`` principal directions (columns).
        """
        return self.kernel.canonical()

    @property
    def median_lengthscale(self) -> Tensor:
        r"""Median over the loaded samples of the effective length-scale along each input dimension, ``(d,)``.

        The same meaning and shape as BoTorch's ``FullyBayesianSingleTaskGP.median_lengthscale``: a length-scale
        per input dimension. Moving by ``t`` along input axis ``j`` changes the kernel like an ARD kernel with
        length-scale ``1 / sqrt(M_jj)`` (``M = R diag(l^-2) R^T`` the sample's metric:
        ``r^2 = t^2 M_jj``); this is computed per sample and the median taken over samples. At rotation 0 it is the
        ARD length-scale of that axis. The principal (rotated) length-scales and directions are in
        :func:`gpytorch_so3.summarize_posterior`.

        Example:
            >>> X = torch.rand(8, 3, dtype=torch.float64); Y = torch.randn(8, 1, dtype=torch.float64)
            >>> model = SO3FullyBayesianGP(X, (Y - Y.mean()) / Y.std())
            >>> draws = model.pyro_model.get_dummy_mcmc_samples(3, dtype=torch.float64)
            >>> draws["lengthscale"] = torch.tensor([[0.5, 1.0, 2.0], [0.7, 1.0, 2.0], [0.6, 3.0, 2.0]],
            ...                                     dtype=torch.float64)
            >>> model.load_mcmc_samples(draws)  # rotation 0: the ARD length-scales, median over the 3 samples
            >>> model.median_lengthscale
            tensor([0.6000, 1.0000, 2.0000], dtype=torch.float64)
            >>> draws["rotation"] = torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64).expand(3, 3)
            >>> model.load_mcmc_samples(draws)  # 90 degrees about z: the x and y axes swap their length-scales
            >>> model.median_lengthscale
            tensor([1.0000, 0.6000, 2.0000], dtype=torch.float64)
        """
        M = self.kernel.metric.detach()
        return M.diagonal(dim1=-2, dim2=-1).rsqrt().median(dim=0).values

    @property
    def median_outputscale(self) -> Tensor:
        """Median output-scale over the loaded samples (scalar)."""
        self._check_if_fitted()
        return self.covar_module.outputscale.detach().median()

    @property
    def median_noise(self) -> Tensor:
        """Median noise variance over the loaded samples (scalar; the mean of ``train_Yvar`` if fixed)."""
        self._check_if_fitted()
        return self.likelihood.noise.detach().reshape(self.num_mcmc_samples, -1).mean(-1).median()

    # -- what differs from BoTorch's model API ------------------------------------------------------------------
    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: PosteriorTransform | None = None,
        **kwargs: Any,
    ) -> GaussianMixturePosterior:
        r"""Mixture posterior over the MCMC samples at ``X`` (BoTorch's, after validating ``X``).

        Args:
            X: ``batch_shape x q x d`` points.
            output_indices: output indices (single-output model: ``None`` or ``[0]``).
            observation_noise: add the likelihood's noise (or this tensor) to the posterior.
            posterior_transform: optional BoTorch ``PosteriorTransform``.
            kwargs: passed to BoTorch's ``posterior``.

        Returns:
            ``GaussianMixturePosterior`` whose ``mean``/``variance`` are ``batch_shape x num_samples x q x 1``
            (the MCMC batch at ``MCMC_DIM = -3``); ``mixture_mean``/``mixture_variance`` are ``batch_shape x q x 1``.

        Raises:
            NotFittedError: no samples loaded yet.
            ValueError: ``X`` is not ``batch_shape x q x d``.
        """
        self._check_if_fitted()
        d = self.train_inputs[0].shape[-1]
        if not torch.is_tensor(X) or X.dim() < 2 or X.shape[-1] != d:
            raise ValueError(
                f"posterior: X must have shape batch_shape x q x {d}, "
                f"got {tuple(X.shape) if torch.is_tensor(X) else type(X).__name__}"
            )
        with gpytorch.settings.fast_computations(False, False, False):
            return super().posterior(
                X=X,
                output_indices=output_indices,
                observation_noise=observation_noise,
                posterior_transform=posterior_transform,
                **kwargs,
            )

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):
        """Load a state dict saved from a fitted model (builds placeholder modules of the right batch size first).

        On failure the model keeps the samples it had (or stays unfitted).

        Args:
            state_dict: as returned by ``state_dict()`` of a fitted model.
            strict: as in ``torch.nn.Module.load_state_dict``.
            assign: as in ``torch.nn.Module.load_state_dict``.

        Raises:
            ValueError: ``state_dict`` lacks the fitted model's entries (the message names them).
        """
        expected = self._fitted_state_dict_keys()
        given = set(state_dict)
        missing = sorted(expected - given)
        if "mean_module.raw_constant" in missing or (strict and missing):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict lacks {missing} (got {len(given)} entries); "
                f"it must come from state_dict() of a fitted {type(self).__name__} with the same noise setting"
            )
        raw_mean = state_dict["mean_module.raw_constant"]
        previous = (self.mean_module, self.covar_module, self.likelihood, self.fit_nuts_info_)
        try:
            tkwargs = {"dtype": self.train_inputs[0].dtype, "device": raw_mean.device}
            self.load_mcmc_samples(self.pyro_model.get_dummy_mcmc_samples(len(raw_mean), **tkwargs))
            return super().load_state_dict(state_dict=state_dict, strict=strict, assign=assign)
        except BaseException:
            self.mean_module, self.covar_module, self.likelihood, self.fit_nuts_info_ = previous
            raise

    def _fitted_state_dict_keys(self) -> set[str]:
        """Keys of the state dict of a fitted model (with one placeholder sample)."""
        mean, covar, lik, _ = self.pyro_model.load_mcmc_samples(
            self.pyro_model.get_dummy_mcmc_samples(1, dtype=self.train_inputs[0].dtype)
        )
        keys = {f"mean_module.{k}" for k in mean.state_dict()}
        keys |= {f"covar_module.{k}" for k in covar.state_dict()}
        keys |= {f"likelihood.{k}" for k in lik.state_dict()}
        return keys


class SO3FullyBayesianGP(RotatedFullyBayesianGP):
    r"""Fully Bayesian single-output GP with the SO(3) anisotropic kernel (Pyro NUTS, no JAX).

    A subclass of BoTorch's :class:`~botorch.models.fully_bayesian.AbstractFullyBayesianSingleTaskGP`: the
    hyperparameters (output-scale, noise, constant mean, three principal length-scales and the rotation ``w``) are
    sampled with :func:`gpytorch_so3.fit_nuts` from the posterior of :class:`SO3PyroModel`, then loaded into
    batched modules with ``batch_shape = (num_samples,)``: ``covar_module = ScaleKernel(SO3AnisotropicKernel(nu))``,
    ``mean_module = ConstantMean``, and a Gaussian likelihood. Everything else is BoTorch's: ``posterior``
    returns a :class:`~botorch.posteriors.fully_bayesian.GaussianMixturePosterior` (the MCMC batch at
    ``MCMC_DIM = -3``), ``train``/``load_mcmc_samples``/``condition_on_observations``/``batch_shape`` are
    inherited, so BoTorch acquisition functions and ``optimize_acqf`` work unchanged.

    What differs from BoTorch's base, and why:

    * ``__init__`` runs the base's initialisation steps itself: BoTorch 0.18's base ``__init__`` starts with
      ``_check_jax_available()`` because its ``PyroModel`` programs are NumPyro (JAX) programs, whereas
      :class:`SO3PyroModel` is a Pyro (PyTorch) program. Skipping that one check is the only change; the steps
      (shape checks, transforms, ``validate_input_scaling``, noise clamping, ``ExactGP.__init__``) are the same.
    * ``_check_if_fitted`` raises :class:`~gpytorch_so3.exceptions.NotFittedError` (a ``RuntimeError``, like
      BoTorch's), also from ``model(X)``, instead of gpytorch's "You must train on the training inputs!".
    * ``posterior`` validates ``X`` and evaluates without fast (CG/Lanczos) computations.
    * ``median_lengthscale`` is per input dimension, as in BoTorch (see the property), and ``load_state_dict``
      builds placeholder modules of the right size first (as BoTorch's concrete models do).

    Like BoTorch's, the priors assume standardised outcomes: use ``outcome_transform=Standardize(m=1)`` (or
    standardise ``train_Y`` yourself); the noise prior is BoTorch's fully Bayesian ``Gamma(0.9, 10.0)`` on the
    variance above ``1e-4`` (:func:`default_fully_bayesian_noise_prior`; override it with
    ``pyro_model=SO3PyroModel(noise_prior=...)``). Inputs are used as given, which keeps angles physical; a per-axis
    ``Normalize`` shears space and draws a :class:`~gpytorch_so3.exceptions.NonIsotropicInputScalingWarning`.

    Use :func:`gpytorch_so3.summarize_posterior` for symmetry-aware summaries of the samples (the raw
    rotations are multimodal: 24 signed axis permutations describe the same kernel).

    Example:
        >>> from botorch.models.transforms import Standardize
        >>> X = torch.rand(20, 3, dtype=torch.float64); Y = torch.sin(5 * X[:, :1])
        >>> model = SO3FullyBayesianGP(X, Y, outcome_transform=Standardize(m=1))
        >>> model.is_fitted
        False
        >>> from gpytorch_so3.nuts import fit_nuts
        >>> _ = fit_nuts(model, warmup_steps=8, num_samples=8, thinning=4, max_tree_depth=3,
        ...              disable_progbar=True)  # a toy budget; see fit_nuts for the defaults
        >>> model.is_fitted, model.num_mcmc_samples
        (True, 2)
        >>> post = model.posterior(torch.rand(5, 3, dtype=torch.float64))
        >>> post.mean.shape, post.mixture_mean.shape  # per sample (2 samples, 5 points) and mixed
        (torch.Size([2, 5, 1]), torch.Size([5, 1]))
        >>> model.median_lengthscale.shape  # per input dimension, as BoTorch's
        torch.Size([3])
        >>> model.kernel.rotation_matrix.shape  # the batched SO3AnisotropicKernel
        torch.Size([2, 3, 3])

        Samples obtained elsewhere load the same way (name -> ``num_samples x ...``):

        >>> model.load_mcmc_samples(model.pyro_model.get_dummy_mcmc_samples(3, dtype=torch.float64))
        >>> model.num_mcmc_samples
        3
    """

    _pyro_model_class = SO3PyroModel
    _fixed_dim = 3
    #: Input columns of the SO(3) kernel, declared for :func:`~gpytorch_so3.check_input_scaling` before a kernel exists.
    anisotropic_input_dims = (0, 1, 2)
    # The constructor is RotatedFullyBayesianGP's (same arguments): ``train_X`` must have 3 columns (``_fixed_dim``),
    # ``pyro_model`` must be an SO3PyroModel (``_pyro_model_class``), and the default rotation prior is Haar.

    canonical_samples = deprecated_alias(
        RotatedFullyBayesianGP.canonical, "SO3FullyBayesianGP.canonical_samples", "SO3FullyBayesianGP.canonical"
    )
