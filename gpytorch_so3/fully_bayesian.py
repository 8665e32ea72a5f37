r"""Fully Bayesian GP with the SO(3) anisotropic kernel: a Pyro model for NUTS and a batched BoTorch model.

Follows BoTorch's fully Bayesian split (``botorch/models/fully_bayesian.py``) without JAX:

* :class:`SO3PyroModel` is a plain class whose :meth:`~SO3PyroModel.sample` is a Pyro program: it draws the
  output-scale, the noise variance (unless ``train_Yvar`` is given), a constant mean, the three principal
  length-scales and the axis-angle rotation from their priors and conditions the exact Gaussian marginal
  likelihood (Cholesky) on the training targets. The covariance is computed by :mod:`gpytorch_so3.functional`,
  the same code the kernel uses, so the sampler and the predictive model cannot disagree.
* :class:`SO3FullyBayesianGP` is a BoTorch ``Model``. :func:`gpytorch_so3.fit_nuts` samples the Pyro model
  with Pyro's NUTS and loads the samples into batched GPyTorch modules (``ScaleKernel(SO3AnisotropicKernel)``
  with ``batch_shape = (num_samples,)``); :meth:`~SO3FullyBayesianGP.posterior` then returns BoTorch's
  :class:`~botorch.posteriors.fully_bayesian.GaussianMixturePosterior` with the MCMC batch at ``MCMC_DIM = -3``,
  exactly like BoTorch's own fully Bayesian models, so acquisition functions and ``optimize_acqf`` work unchanged.

BoTorch 0.18 moved its own NUTS to NumPyro/JAX and its ``AbstractFullyBayesianSingleTaskGP.__init__`` requires
JAX; this module therefore builds on BoTorch's public ``ExactGP`` + ``BatchedMultiOutputGPyTorchModel`` bases and
mirrors the fully Bayesian model's methods (posterior, train/reset, conditioning) instead of subclassing it.
"""

from __future__ import annotations

import copy
from typing import Any

import gpytorch
import pyro
import pyro.distributions as pdist
import torch
from botorch.acquisition.objective import PosteriorTransform
from botorch.models.gpytorch import BatchedMultiOutputGPyTorchModel
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.models.utils import validate_input_scaling
from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
from botorch.posteriors.fully_bayesian import MCMC_DIM, GaussianMixturePosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import ScaleKernel
from gpytorch.kernels.kernel import sq_dist
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood, Likelihood
from gpytorch.means import ConstantMean, Mean
from gpytorch.models.exact_gp import ExactGP
from gpytorch.priors import Prior
from torch import Tensor
from torch.distributions import Distribution, constraints

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3
from gpytorch_so3.exceptions import NonIsotropicInputScalingWarning
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel

__all__ = ["SAMPLE_SITES", "NotFittedError", "SO3FullyBayesianGP", "SO3PyroModel"]

#: Names (and per-sample shapes) of the hyperparameters drawn by :meth:`SO3PyroModel.sample` and stored by
#: :func:`gpytorch_so3.fit_nuts`; ``noise`` is absent when the noise variance is fixed (``train_Yvar``).
SAMPLE_SITES = {"outputscale": (), "noise": (), "mean": (), "lengthscale": (3,), "rotation": (3,)}


class NotFittedError(RuntimeError):
    """A fully Bayesian model was used before :func:`gpytorch_so3.fit_nuts` loaded samples into it."""


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


def _default_priors() -> dict[str, Prior]:
    from gpytorch_so3 import priors

    return {
        "lengthscale": priors.default_lengthscale_prior(),
        "rotation": priors.default_rotation_prior(),
        "outputscale": priors.default_outputscale_prior(),
        "noise": priors.default_noise_prior(),
    }


def _prior_to(prior: Distribution, dtype: torch.dtype, device: torch.device) -> Distribution:
    prior = copy.deepcopy(prior)
    if isinstance(prior, torch.nn.Module):
        prior = prior.to(device=device, dtype=dtype)
    return prior


def _reshape_detach(target: Tensor, value: Tensor) -> Tensor:
    return value.detach().clone().reshape(target.shape).to(target)


class SO3PyroModel:
    r"""Pyro model of a GP with the SO(3) anisotropic kernel, for sampling its hyperparameters with NUTS.

    Generative model (``n`` training points, ``K`` the kernel matrix of :mod:`gpytorch_so3.functional`):

    .. math::
        s \sim p_s,\ \sigma^2 \sim p_{\sigma},\ \mu \sim \mathcal N(0, 1),\ l_i \sim p_l\ (i=1,2,3),\
        w \sim p_w,\qquad
        y \sim \mathcal N\big(\mu \mathbf 1,\ s\,\kappa_\nu(Z Z') + (\sigma^2 + 10^{-4}) I\big),\
        Z = X\,\exp(\hat w)\,\mathrm{diag}(l)^{-1}.

    The priors default to :mod:`gpytorch_so3.priors` (``default_*_prior()``); ``p_w`` is the Haar prior on
    rotations written as a smooth density on axis-angle vectors. As in BoTorch, the priors (and the
    :math:`\mathcal N(0, 1)` mean prior) assume standardised outcomes, and ``10^-4`` is BoTorch's
    ``MIN_INFERRED_NOISE_LEVEL``; the stored ``noise`` sample includes it. Pyro maps the positive sites to
    unconstrained space by ``log`` and adds the Jacobian itself.

    Use it through :class:`SO3FullyBayesianGP`; subclasses may override the ``sample_*`` methods (e.g. the
    benchmark's ARD variant fixes the rotation at zero).

    Example:
        >>> pm = SO3PyroModel(nu=2.5)
        >>> pm.set_inputs(torch.rand(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64))
        >>> tr = pyro.poutine.trace(pm.sample).get_trace()
        >>> tr.nodes["rotation"]["value"].shape
        torch.Size([3])
    """

    def __init__(
        self,
        nu: float | None = 2.5,
        *,
        lengthscale_prior: Distribution | None = None,
        rotation_prior: Distribution | None = None,
        outputscale_prior: Distribution | None = None,
        noise_prior: Distribution | None = None,
    ) -> None:
        """Build the model (data are set by :meth:`set_inputs`).

        Args:
            nu: base kernel: ``None`` (squared exponential) or Matern smoothness 0.5, 1.5, 2.5 (default).
            lengthscale_prior: prior of each principal length-scale (scalar event; default
                ``priors.default_lengthscale_prior()``).
            rotation_prior: prior of the axis-angle vector with ``event_shape == (3,)`` and real support
                (default ``priors.default_rotation_prior()``, Haar).
            outputscale_prior: prior of the output-scale (default ``priors.default_outputscale_prior()``).
            noise_prior: prior of the noise variance above ``1e-4`` (default ``priors.default_noise_prior()``).
        """
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
        rp = given["rotation"]
        if rp is not None and tuple(rp.event_shape) != (3,):
            raise ValueError(f"rotation_prior must have event_shape (3,), got {tuple(rp.event_shape)}")
        self._given_priors = given
        self.train_X: Tensor | None = None

    # -- data ------------------------------------------------------------------------------------------------
    def set_inputs(
        self, train_X: Tensor, train_Y: Tensor, train_Yvar: Tensor | None = None, *, dtype: torch.dtype | None = None
    ) -> None:
        """Set the training data (already transformed by the BoTorch model's input/outcome transforms).

        Args:
            train_X: ``n x 3`` inputs.
            train_Y: ``n x 1`` targets.
            train_Yvar: ``n x 1`` known noise variances, or ``None`` to infer a homoscedastic noise.
            dtype: dtype of the computations inside the sampler (default: that of ``train_X``). The samples are
                loaded into modules of ``train_X``'s dtype whatever this is.
        """
        if train_X.dim() != 2 or train_X.shape[-1] != 3:
            raise ValueError(f"SO3PyroModel: train_X must have shape n x 3, got {tuple(train_X.shape)}")
        if train_Y.dim() != 2 or train_Y.shape != (train_X.shape[0], 1):
            raise ValueError(
                f"SO3PyroModel: train_Y must have shape n x 1 with n = {train_X.shape[0]}, got {tuple(train_Y.shape)}"
            )
        if train_Yvar is not None and train_Yvar.shape != train_Y.shape:
            raise ValueError(
                f"SO3PyroModel: train_Yvar must have the shape of train_Y {tuple(train_Y.shape)}, "
                f"got {tuple(train_Yvar.shape)}"
            )
        self.train_X, self.train_Y, self.train_Yvar = train_X, train_Y, train_Yvar
        self.set_dtype(train_X.dtype if dtype is None else dtype)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Cast the sampler's copies of the data and priors to ``dtype`` (on the data's device)."""
        if self.train_X is None:
            raise RuntimeError("SO3PyroModel: call set_inputs first")
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
                defaults = _default_priors() if defaults is None else defaults
                p = defaults[name]
            self.priors[name] = _prior_to(p, dtype, device)
        self.dtype = dtype

    @property
    def sample_sites(self) -> dict[str, tuple[int, ...]]:
        """Names and per-sample shapes of the sampled hyperparameters."""
        sites = dict(SAMPLE_SITES)
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
        """Draw the three principal length-scales, ``(3,)``, i.i.d. from the length-scale prior."""
        p = self.priors["lengthscale"]
        if tuple(p.event_shape) == (3,):
            d = _PriorDistribution(p)
        else:
            d = _PriorDistribution(p.expand(torch.Size([3]))).to_event(1)
        return pyro.sample("lengthscale", d)

    def sample_rotation(self) -> Tensor:
        """Draw the axis-angle rotation vector, ``(3,)``, from the rotation prior (its ``log_prob`` is used)."""
        return pyro.sample("rotation", _PriorDistribution(self.priors["rotation"]))

    def noiseless_covariance(self, outputscale: Tensor, lengthscale: Tensor, rotation: Tensor) -> Tensor:
        """``s * kappa_nu(|(x_i - x_j) A|^2)``, ``n x n``: the kernel's own code path.

        ``A = functional.so3_whitening_matrix(l, so3.exp_map(w))``, ``z = functional.whiten(x - mean(x), A)``,
        squared distances by gpytorch's ``sq_dist`` (what ``Kernel.covar_dist`` uses) with an exact-zero diagonal,
        and ``functional.base_correlation``: the same steps as :meth:`SO3AnisotropicKernel.forward`.

        Args:
            outputscale: ``...`` output-scales.
            lengthscale: ``... x 3`` principal length-scales.
            rotation: ``... x 3`` axis-angle vectors.
        """
        A = F.so3_whitening_matrix(lengthscale, so3.exp_map(rotation))
        z = F.whiten(self._X, A)
        # gpytorch's `sq_dist`, which the kernel's `covar_dist` calls, then the kernel's exact-zero diagonal.
        sq = sq_dist(z, z, x1_eq_x2=True).masked_fill(self._eye, 0.0)
        return outputscale[..., None, None] * F.base_correlation(sq, self.nu)

    def sample(self) -> None:
        """The Pyro program: draw the hyperparameters and observe ``train_Y`` under the exact GP likelihood.

        The kernel matrix is factorised with ``torch.linalg.cholesky``; a non-positive-definite proposal raises
        ``torch.linalg.LinAlgError``, which :func:`gpytorch_so3.fit_nuts` turns into a rejected leapfrog step.
        """
        if self.train_X is None:
            raise RuntimeError("SO3PyroModel: call set_inputs before sampling")
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
        out = {k: v.detach() for k, v in mcmc_samples.items() if k in SAMPLE_SITES}
        if "noise" in out:
            out["noise"] = out["noise"] + MIN_INFERRED_NOISE_LEVEL
        missing = set(self.sample_sites) - set(out)
        if missing:
            raise ValueError(f"SO3PyroModel: MCMC samples lack {sorted(missing)}")
        return out

    def get_dummy_mcmc_samples(self, num_mcmc_samples: int, **tkwargs: Any) -> dict[str, Tensor]:
        """Placeholder samples (ones; rotation zero) with the right shapes, for ``load_state_dict``."""
        out = {
            name: (torch.zeros if name == "rotation" else torch.ones)(num_mcmc_samples, *shape, **tkwargs)
            for name, shape in self.sample_sites.items()
        }
        return out

    def load_mcmc_samples(self, mcmc_samples: dict[str, Tensor]) -> tuple[Mean, ScaleKernel, Likelihood]:
        """Build batched GPyTorch modules holding the samples (batch shape ``(num_samples,)``).

        Args:
            mcmc_samples: name -> ``num_samples x ...`` hyperparameter samples (see :attr:`sample_sites`).

        Returns:
            ``(mean_module, covar_module, likelihood)``: ``ConstantMean``, ``ScaleKernel(SO3AnisotropicKernel)``
            and a (fixed-noise) Gaussian likelihood, in ``train_X``'s dtype and on its device.
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
        base = SO3AnisotropicKernel(nu=self.nu, batch_shape=batch_shape)
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
        return mean_module, covar_module, likelihood


def _check_isotropic_scaling(input_transform: InputTransform | None) -> None:
    """Warn if a ``Normalize`` in the input transform scales the three axes differently (shears angles)."""
    if input_transform is None:
        return
    import warnings

    mods = input_transform.modules() if isinstance(input_transform, torch.nn.Module) else []
    for m in mods:
        if isinstance(m, Normalize) and getattr(m, "coefficient", None) is not None:
            c = m.coefficient.reshape(-1)
            # 0.1%: shears below that change angles by less than ~0.03 degrees.
            if c.numel() > 1 and float(c.max() / c.min()) > 1.0 + 1e-3:
                warnings.warn(
                    "SO3FullyBayesianGP: the Normalize input transform scales the axes by different factors "
                    f"{c.tolist()}; this shears space, so the sampled rotations and length-scales describe the "
                    "normalised coordinates, not the physical ones. Scale all axes by one factor to keep angles.",
                    NonIsotropicInputScalingWarning,
                    stacklevel=3,
                )


class SO3FullyBayesianGP(ExactGP, BatchedMultiOutputGPyTorchModel):
    r"""Fully Bayesian single-output GP with the SO(3) anisotropic kernel (Pyro NUTS, no JAX).

    The hyperparameters (output-scale, noise, constant mean, three principal length-scales and the rotation
    ``w``) are sampled with :func:`gpytorch_so3.fit_nuts` from the posterior of :class:`SO3PyroModel`; the
    samples are then loaded into batched modules with ``batch_shape = (num_samples,)``:
    ``covar_module = ScaleKernel(SO3AnisotropicKernel(nu))``, ``mean_module = ConstantMean``, and a Gaussian
    likelihood. :meth:`posterior` returns a :class:`~botorch.posteriors.fully_bayesian.GaussianMixturePosterior`
    (the MCMC batch at ``MCMC_DIM = -3``), the contract of BoTorch's own fully Bayesian models, so BoTorch
    acquisition functions and ``optimize_acqf`` work unchanged. Like BoTorch's, the priors assume standardised
    outcomes: use ``outcome_transform=Standardize(m=1)`` (or standardise ``train_Y`` yourself). Inputs are used
    as given, which keeps angles physical; a per-axis ``Normalize`` shears space and draws a
    :class:`~gpytorch_so3.exceptions.NonIsotropicInputScalingWarning`.

    Use :func:`gpytorch_so3.summarize_posterior` for symmetry-aware summaries of the samples (the raw
    rotations are multimodal: 24 signed axis permutations describe the same kernel).

    Example:
        >>> from botorch.models.transforms import Standardize
        >>> X = torch.rand(20, 3, dtype=torch.float64); Y = torch.sin(5 * X[:, :1])
        >>> model = SO3FullyBayesianGP(X, Y, outcome_transform=Standardize(m=1))
        >>> from gpytorch_so3.nuts import fit_nuts
        >>> _ = fit_nuts(model, warmup_steps=8, num_samples=8, thinning=4, progress=False)
        >>> model.num_mcmc_samples
        2
        >>> model.posterior(torch.rand(5, 3, dtype=torch.float64)).mean.shape  # 5 points, 2 samples
        torch.Size([2, 5, 1])
    """

    _is_fully_bayesian = True
    _is_ensemble = True
    _supports_batched_models = False

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None = None,
        *,
        nu: float | None = 2.5,
        input_transform: InputTransform | None = None,
        outcome_transform: OutcomeTransform | None = None,
        pyro_model: SO3PyroModel | None = None,
    ) -> None:
        """Set up the model (fit it with :func:`gpytorch_so3.fit_nuts`).

        Args:
            train_X: ``n x 3`` training inputs.
            train_Y: ``n x 1`` training targets.
            train_Yvar: ``n x 1`` observed noise variances; ``None`` infers a homoscedastic noise.
            nu: base kernel, ``None`` (squared exponential) or 0.5, 1.5, 2.5 (Matern, default 2.5).
            input_transform: BoTorch input transform applied in the model's forward pass.
            outcome_transform: BoTorch outcome transform (e.g. ``Standardize(m=1)``); the posterior is returned
                on the original scale.
            pyro_model: a custom :class:`SO3PyroModel` (e.g. with other priors); its ``nu`` must equal ``nu``.
        """
        for name, t in (("train_X", train_X), ("train_Y", train_Y), ("train_Yvar", train_Yvar)):
            if t is not None and (not torch.is_tensor(t) or not t.is_floating_point()):
                raise TypeError(f"SO3FullyBayesianGP: {name} must be a floating-point torch.Tensor")
        if not (train_X.dim() == train_Y.dim() == 2 and len(train_X) == len(train_Y) and train_Y.shape[-1] == 1):
            raise ValueError(
                "SO3FullyBayesianGP: expected train_X of shape n x 3 and train_Y of shape n x 1, got "
                f"{tuple(train_X.shape)} and {tuple(train_Y.shape)}"
            )
        if train_Yvar is not None and train_Yvar.shape != train_Y.shape:
            raise ValueError(
                "SO3FullyBayesianGP: train_Yvar must be None or have the shape of train_Y, "
                f"got {tuple(train_Yvar.shape)}"
            )
        nu = F.check_nu(nu)
        with torch.no_grad():
            transformed_X = self.transform_inputs(X=train_X, input_transform=input_transform)
        if transformed_X.shape[-1] != 3:
            raise ValueError(
                "SO3FullyBayesianGP works on 3-D inputs; the (transformed) train_X has shape "
                f"{tuple(transformed_X.shape)}"
            )
        if not bool(torch.isfinite(transformed_X).all()) or not bool(torch.isfinite(train_Y).all()):
            raise ValueError("SO3FullyBayesianGP: train_X and train_Y must be finite")
        _check_isotropic_scaling(input_transform)
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
        super().__init__(train_inputs=X_tf, train_targets=Y_tf, likelihood=GaussianLikelihood())
        self.mean_module: Mean | None = None
        self.covar_module: ScaleKernel | None = None
        self.likelihood: Likelihood | None = None
        if pyro_model is None:
            pyro_model = SO3PyroModel(nu=nu)
        elif not isinstance(pyro_model, SO3PyroModel):
            raise TypeError(f"pyro_model must be an SO3PyroModel, got {type(pyro_model).__name__}")
        elif pyro_model.nu != nu:
            raise ValueError(f"pyro_model.nu = {pyro_model.nu} differs from nu = {nu}")
        self.nu = nu
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
                "SO3FullyBayesianGP has no MCMC samples yet: call `gpytorch_so3.fit_nuts(model)` (or "
                "`model.load_mcmc_samples(...)`) before using it. Note that `model.train()` drops the samples."
            )

    @property
    def num_mcmc_samples(self) -> int:
        """Number of MCMC samples loaded in the model."""
        self._check_if_fitted()
        return self.covar_module.batch_shape[0]

    @property
    def batch_shape(self) -> torch.Size:
        """``(num_mcmc_samples,)``: the model's batch is the MCMC sample dimension."""
        return torch.Size([self.num_mcmc_samples])

    @property
    def _aug_batch_shape(self) -> torch.Size:
        return self.batch_shape

    def train(self, mode: bool = True, reset: bool = True) -> SO3FullyBayesianGP:
        """Set training mode; with ``mode=True`` and ``reset=True`` the samples are dropped (as in BoTorch).

        Args:
            mode: training (True) or eval (False) mode.
            reset: drop the loaded samples when entering training mode.

        Returns:
            The model.
        """
        super().train(mode=mode)
        if mode and reset:
            self.mean_module = None
            self.covar_module = None
            self.likelihood = None
            self.fit_nuts_info_ = None
        return self

    def load_mcmc_samples(self, mcmc_samples: dict[str, Tensor]) -> None:
        """Load hyperparameter samples (name -> ``num_samples x ...``, see :data:`SAMPLE_SITES`) into the model."""
        self.mean_module, self.covar_module, self.likelihood = self.pyro_model.load_mcmc_samples(mcmc_samples)

    # -- conveniences -----------------------------------------------------------------------------------------
    @property
    def kernel(self) -> SO3AnisotropicKernel:
        """The batched :class:`SO3AnisotropicKernel` inside the ``ScaleKernel``."""
        self._check_if_fitted()
        return self.covar_module.base_kernel

    def canonical_samples(self) -> tuple[Tensor, Tensor]:
        """Canonical ``(lengthscale, axes)`` of the loaded samples (see :func:`so3.canonicalize`).

        Returns:
            ``num_samples x 3`` ascending length-scales and ``num_samples x 3 x 3`` principal directions (columns).
        """
        k = self.kernel
        return k.canonical()

    @property
    def median_lengthscale(self) -> Tensor:
        """Median over the loaded samples of the canonical (ascending) length-scales, ``(3,)``.

        Raw per-sample length-scales are not comparable across samples (axis permutations), so each sample is
        sorted first.
        """
        return self.canonical_samples()[0].median(dim=0).values

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

    # -- BoTorch model API ------------------------------------------------------------------------------------
    def forward(self, X: Tensor) -> MultivariateNormal:
        """Prior of the batched GP at ``X`` (``batch x n x 3``): ``MultivariateNormal`` with batch ``num_samples``."""
        self._check_if_fitted()
        if self.training:
            X = self.transform_inputs(X=X)
        return MultivariateNormal(self.mean_module(X), self.covar_module(X))

    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: PosteriorTransform | None = None,
        **kwargs: Any,
    ) -> GaussianMixturePosterior:
        r"""Mixture posterior over the MCMC samples at ``X``.

        Args:
            X: ``batch_shape x q x 3`` points.
            output_indices: output indices (single-output model: ``None`` or ``[0]``).
            observation_noise: add the likelihood's noise (or this tensor) to the posterior.
            posterior_transform: optional BoTorch ``PosteriorTransform``.
            kwargs: passed to BoTorch's ``posterior``.

        Returns:
            ``GaussianMixturePosterior`` whose ``mean``/``variance`` are ``batch_shape x num_samples x q x 1``
            (the MCMC batch at ``MCMC_DIM = -3``); ``mixture_mean``/``mixture_variance`` are ``batch_shape x q x 1``.

        Raises:
            NotFittedError: no samples loaded yet.
        """
        self._check_if_fitted()
        if not torch.is_tensor(X) or X.dim() < 2 or X.shape[-1] != self.train_inputs[0].shape[-1]:
            raise ValueError(
                f"posterior: X must have shape batch_shape x q x {self.train_inputs[0].shape[-1]}, "
                f"got {tuple(X.shape) if torch.is_tensor(X) else type(X).__name__}"
            )
        with gpytorch.settings.fast_computations(False, False, False):
            posterior = super().posterior(
                X=X.unsqueeze(MCMC_DIM),
                output_indices=output_indices,
                observation_noise=observation_noise,
                posterior_transform=posterior_transform,
                **kwargs,
            )
        return GaussianMixturePosterior(distribution=posterior.distribution)

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs: Any) -> BatchedMultiOutputGPyTorchModel:
        """Condition every sample's GP on new observations (as BoTorch's fully Bayesian models).

        Args:
            X: ``q x 3`` (shared) or ``num_samples x q x 3`` inputs.
            Y: ``q x 1`` or ``num_samples x q x 1`` targets.
            kwargs: passed to BoTorch (e.g. ``noise``).

        Returns:
            The conditioned (fantasy) model.
        """
        self._check_if_fitted()
        if X.ndim == 2 and Y.ndim == 2:
            X = X.repeat(*self.batch_shape, 1, 1)
            Y = Y.repeat(*self.batch_shape, 1, 1)
        elif X.ndim < Y.ndim:
            X = X.repeat(*Y.shape[:-2], 1, 1)
        return super().condition_on_observations(X, Y, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a state dict saved from a fitted model (builds placeholder modules of the right batch size first).

        Args:
            state_dict: as returned by ``state_dict()`` of a fitted model.
            strict: as in ``torch.nn.Module.load_state_dict``.
            assign: as in ``torch.nn.Module.load_state_dict``.
        """
        raw_mean = state_dict["mean_module.raw_constant"]
        tkwargs = {"dtype": self.train_inputs[0].dtype, "device": raw_mean.device}
        self.load_mcmc_samples(self.pyro_model.get_dummy_mcmc_samples(len(raw_mean), **tkwargs))
        return super().load_state_dict(state_dict=state_dict, strict=strict, assign=assign)




