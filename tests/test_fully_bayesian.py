"""SO3FullyBayesianGP, fit_nuts (Pyro NUTS) and summarize_posterior.

Default-suite tests use tiny MCMC budgets (n = 24 points, a few dozen NUTS iterations): they check the API,
shapes, the parity of the sampler's covariance/likelihood with the batched GPyTorch model and an independent
explicit-difference reference, robustness to failing Cholesky factorisations and seeding. Statistical recovery
(R-hat, ESS, directions, RMSE vs ARD MAP) runs with realistic budgets under ``@pytest.mark.slow``.
"""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import MCMC_DIM, GaussianMixturePosterior
from linear_operator.utils.errors import NanError, NotPSDError
from scipy.spatial.transform import Rotation

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3
from gpytorch_so3.fully_bayesian import NotFittedError, SO3FullyBayesianGP, SO3PyroModel
from gpytorch_so3.nuts import NutsInfo, fit_nuts, is_numerical_failure
from gpytorch_so3.summary import PosteriorSummary, azimuth_dip, diagnostics, summarize_posterior, summarize_samples

# num_workers=1: chains in this process (toy budgets; worker start-up would dominate). Parallel chains: own tests.
TINY = {
    "warmup_steps": 12,
    "num_samples": 12,
    "thinning": 4,
    "disable_progbar": True,
    "max_tree_depth": 4,
    "num_workers": 1,
}
MINI = {**TINY, "warmup_steps": 6, "num_samples": 6, "thinning": 2}


def _pyro_diagnostics(x):
    """The fallback (no ArviZ) R-hat/ESS path."""
    return diagnostics(x, use_arviz=False)


def _field(n: int, dtype=torch.float64, seed: int = 0):
    """A small rotated Matern-5/2 field on the unit cube (explicit formulas, no package code)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=torch.float64)
    R = torch.as_tensor(Rotation.from_rotvec([0.5, -0.4, 0.9]).as_matrix())
    ls = torch.tensor([0.15, 0.4, 1.0], dtype=torch.float64)
    d = (X[:, None, :] - X[None, :, :]) @ R / ls
    r = d.norm(dim=-1)
    K = (1 + math.sqrt(5) * r + 5 / 3 * r**2) * torch.exp(-math.sqrt(5) * r) + 1e-6 * torch.eye(n, dtype=torch.float64)
    y = torch.linalg.cholesky(K) @ torch.randn(n, generator=g, dtype=torch.float64)
    y = y + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    Y = ((y - y.mean()) / y.std()).unsqueeze(-1)
    return X.to(dtype), Y.to(dtype)


@pytest.fixture(scope="module")
def fitted() -> SO3FullyBayesianGP:
    X, Y = _field(24)
    model = SO3FullyBayesianGP(X, Y)
    return fit_nuts(model, num_chains=2, seed=1, **TINY)


# ------------------------------------------------------------------------------------------ model + fit API
def test_loaded_sample_shapes(fitted):
    S = 2 * 3  # 2 chains x ceil(12 / 4)
    assert fitted.num_mcmc_samples == S
    assert fitted.batch_shape == torch.Size([S])
    k = fitted.kernel
    assert k.lengthscale.shape == (S, 1, 3)
    assert k.rotation.shape == (S, 3)
    assert fitted.covar_module.outputscale.shape == (S,)
    assert fitted.likelihood.noise.shape == (S, 1)
    assert fitted.mean_module.constant.shape == (S,)
    assert not fitted.training
    info = fitted.fit_nuts_info_
    assert isinstance(info, NutsInfo)
    assert info.num_chains == 2
    assert info.samples["lengthscale"].shape == (2, 12, 3)
    assert info.samples["rotation"].shape == (2, 12, 3)
    assert info.samples["noise"].shape == (2, 12)
    # At least one potential evaluation per NUTS iteration, at most 2^depth - 1 (+ set-up) per iteration.
    assert len(info.num_evaluations) == 2
    assert all(24 <= e <= 24 * 15 + 100 for e in info.num_evaluations), info.num_evaluations
    assert info.potential == "analytic"  # the defaults
    assert info.num_workers == 1 and info.chain_seeds and len(info.chain_seeds) == 2
    # Loaded = every 4th draw of each chain, chain-major.
    thinned = info.samples["lengthscale"][:, ::4].reshape(-1, 3)
    torch.testing.assert_close(k.lengthscale.squeeze(-2), thinned)
    # Two chains start from different (Haar-random) rotations.
    assert info.initial_rotation.shape == (2, 3)
    assert not torch.allclose(info.initial_rotation[0], info.initial_rotation[1])
    assert bool((info.initial_rotation.norm(dim=-1) < math.radians(63.0)).all())
    assert fitted.median_lengthscale.shape == (3,)


def test_posterior_is_mixture_with_mcmc_batch(fitted):
    S = fitted.num_mcmc_samples
    Xt = torch.rand(7, 3, dtype=torch.float64)
    post = fitted.posterior(Xt)
    assert isinstance(post, GaussianMixturePosterior)
    assert post.mean.shape == (S, 7, 1)
    assert post.mean.shape[MCMC_DIM] == S
    assert post.mixture_mean.shape == (7, 1)
    assert post.mixture_variance.shape == (7, 1)
    assert bool(torch.isfinite(post.mixture_mean).all())
    assert bool((post.mixture_variance > 0).all())
    # Mixture moments are the law of total variance over the equally weighted samples.
    torch.testing.assert_close(post.mixture_mean, post.mean.mean(0))
    var = post.variance.mean(0) + post.mean.var(0, unbiased=False)
    torch.testing.assert_close(post.mixture_variance, var)
    # t-batches of q points.
    post_b = fitted.posterior(torch.rand(4, 2, 3, dtype=torch.float64))
    assert post_b.mean.shape == (4, S, 2, 1)
    # Observation noise adds each sample's noise variance.
    post_n = fitted.posterior(Xt, observation_noise=True)
    noise = fitted.likelihood.noise.reshape(S, 1, 1)
    torch.testing.assert_close(post_n.variance, post.variance + noise)


def test_posterior_before_fitting_raises():
    X, Y = _field(10)
    model = SO3FullyBayesianGP(X, Y)
    with pytest.raises(NotFittedError, match="fit_nuts"):
        model.posterior(X)
    with pytest.raises(RuntimeError, match="fit_nuts"):  # NotFittedError is a RuntimeError, as in BoTorch
        _ = model.num_mcmc_samples
    with pytest.raises(NotFittedError):
        summarize_posterior(model)


def test_train_mode_drops_samples():
    X, Y = _field(12)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **MINI)
    assert model.is_fitted
    model.train()
    assert not model.is_fitted and model.fit_nuts_info_ is None


def test_acquisition_on_mixture(fitted):
    X = fitted.train_inputs[0]
    acqf = qLogNoisyExpectedImprovement(model=fitted, X_baseline=X, prune_baseline=False)
    val = acqf(torch.rand(5, 2, 3, dtype=torch.float64))
    assert val.shape == (5,)
    assert bool(torch.isfinite(val).all())
    bounds = torch.stack([torch.zeros(3), torch.ones(3)]).to(X)
    cand, acq_val = optimize_acqf(
        acqf, bounds=bounds, q=2, num_restarts=2, raw_samples=16, options={"maxiter": 5, "batch_limit": 2}
    )
    assert cand.shape == (2, 3)
    assert bool(((cand >= 0) & (cand <= 1)).all())
    assert bool(torch.isfinite(acq_val))


def test_seed_reproducibility():
    X, Y = _field(16)
    a = fit_nuts(SO3FullyBayesianGP(X, Y), seed=7, **MINI).fit_nuts_info_.samples
    torch_state = torch.get_rng_state()
    b = fit_nuts(SO3FullyBayesianGP(X, Y), seed=7, **MINI).fit_nuts_info_.samples
    # fit_nuts restores the global RNG state.
    assert torch.equal(torch_state, torch.get_rng_state())
    c = fit_nuts(SO3FullyBayesianGP(X, Y), seed=8, **MINI).fit_nuts_info_.samples
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["rotation"], c["rotation"])


def test_survives_failing_cholesky(monkeypatch):
    """Every 5th evaluation of the covariance raises a linear-algebra error; NUTS must reject, not crash."""
    X, Y = _field(16)
    model = SO3FullyBayesianGP(X, Y)
    orig = SO3PyroModel.noiseless_covariance
    calls = {"n": 0, "raised": 0, "armed": False}
    errors = [
        torch.linalg.LinAlgError("linalg.cholesky: The factorization could not be completed"),
        NotPSDError("Matrix not positive definite after repeatedly adding jitter"),
        NanError("cholesky_cpu: 20 of 20 elements of the input are NaN"),
    ]

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["armed"] and calls["n"] % 5 == 0:
            calls["raised"] += 1
            raise errors[calls["raised"] % len(errors)]
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(SO3PyroModel, "noiseless_covariance", flaky)
    # Arm the failures once the sampler is set up (initialisation must succeed, as with a sane model).
    import gpytorch_so3.nuts as nuts_mod

    orig_nuts = nuts_mod.NUTS

    def nuts_armed(*args, **kwargs):
        calls["armed"] = True
        return orig_nuts(*args, **kwargs)

    monkeypatch.setattr(nuts_mod, "NUTS", nuts_armed)
    # A patched program is not the default one: Pyro's generic potential, untraced so the patch runs every call.
    fit_nuts(model, jit_compile=False, **TINY)
    info = model.fit_nuts_info_
    assert info.potential == "pyro"
    assert calls["raised"] > 0
    assert info.num_rejected == [calls["raised"]]
    assert model.num_mcmc_samples == 3
    assert bool(torch.isfinite(model.kernel.lengthscale).all())


def test_fast_potential_survives_failing_cholesky(monkeypatch):
    """The analytic potential: every 4th likelihood evaluation raises; NUTS rejects the step and carries on."""
    import gpytorch_so3.fully_bayesian as fb

    X, Y = _field(16)
    model = SO3FullyBayesianGP(X, Y)
    calls = {"n": 0, "raised": 0}
    orig = fb._GPLogMarginal

    class Flaky(orig):
        @staticmethod
        def forward(ctx, *args):
            calls["n"] += 1
            # Initialisation and Pyro's initial step-size search (first calls) must succeed, as with a sane model.
            if calls["n"] > 20 and calls["n"] % 5 == 0:
                calls["raised"] += 1
                raise torch.linalg.LinAlgError("linalg.cholesky: The factorization could not be completed")
            return orig.forward(ctx, *args)

    monkeypatch.setattr(fb, "_GPLogMarginal", Flaky)
    fit_nuts(model, **TINY)
    info = model.fit_nuts_info_
    assert info.potential == "analytic"
    assert calls["raised"] > 0 and info.num_rejected == [calls["raised"]]
    assert bool(torch.isfinite(model.kernel.lengthscale).all())


def test_unrelated_errors_still_raise(monkeypatch):
    X, Y = _field(12)
    model = SO3FullyBayesianGP(X, Y)

    def broken(self, *args, **kwargs):
        raise KeyError("a bug, not a numerical failure")

    monkeypatch.setattr(SO3PyroModel, "noiseless_covariance", broken)
    with pytest.raises(KeyError):
        fit_nuts(model, **TINY)


def test_initial_frame_is_interior_and_metric_preserving():
    """Chains start from the smallest-angle frame among the 24 equivalent ones (away from the prior's edge)."""
    from gpytorch_so3.nuts import _interior_representative

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        R = so3.random_rotation(generator=g, dtype=torch.float64)
        ls = torch.rand(3, generator=g, dtype=torch.float64) + 0.1
        ls2, R2 = _interior_representative(ls, R)
        torch.testing.assert_close(F.metric(ls2, R2), F.metric(ls, R))
        # The octahedral group's fundamental domain has covering angle < 63 degrees.
        assert float(so3.rotation_angle(R2)) < math.radians(63.0)


def test_default_noise_prior_is_botorch_fully_bayesian():
    """Default noise prior: BoTorch 0.18's fully Bayesian Gamma(0.9, 10.0) on the variance above 1e-4; overridable."""
    import pyro
    from gpytorch.priors import GammaPrior
    from scipy.stats import gamma

    from gpytorch_so3.fully_bayesian import default_fully_bayesian_noise_prior

    p = default_fully_bayesian_noise_prior()
    assert isinstance(p, GammaPrior)
    # gpytorch stores the parameters in float32 (default dtype): 0.9 -> 0.89999998.
    assert (float(p.concentration), float(p.rate)) == pytest.approx((0.9, 10.0), rel=1e-7)
    assert default_fully_bayesian_noise_prior() is not p  # fresh objects
    X, Y = _field(10)
    pm = SO3FullyBayesianGP(X, Y).pyro_model
    prior = pm.priors["noise"]
    assert (float(prior.concentration), float(prior.rate)) == pytest.approx((0.9, 10.0), rel=1e-7)
    # The density NUTS sees at the "noise" site is scipy's Gamma(a=0.9, scale=1/10) (independent reference).
    v = torch.tensor(0.037, dtype=torch.float64)
    tr = pyro.poutine.trace(pyro.poutine.condition(pm.sample, data={"noise": v})).get_trace()
    assert float(tr.nodes["noise"]["fn"].log_prob(v)) == pytest.approx(gamma(0.9, scale=0.1).logpdf(0.037), rel=1e-6)
    # ... and the likelihood adds BoTorch's MIN_INFERRED_NOISE_LEVEL floor to it (as BoTorch's sample_noise).
    K = tr.nodes["Y"]["fn"].covariance_matrix
    K0 = pm.noiseless_covariance(
        tr.nodes["outputscale"]["value"], tr.nodes["lengthscale"]["value"], tr.nodes["rotation"]["value"]
    )
    torch.testing.assert_close(K - K0, (0.037 + 1e-4) * torch.eye(10, dtype=torch.float64))
    # Overridable.
    custom = SO3PyroModel(noise_prior=GammaPrior(2.0, 3.0))
    model = SO3FullyBayesianGP(X, Y, pyro_model=custom)
    assert (float(model.pyro_model.priors["noise"].concentration), float(model.pyro_model.priors["noise"].rate)) == (
        2.0,
        3.0,
    )


def test_default_noise_prior_does_not_explain_small_data_as_noise():
    """n = 12 points of a smooth bump + 1% noise (standardised): the posterior noise must stay far below var(y) = 1.

    Seeded (data seed 0, NUTS seed 0), 32 warm-up + 32 draws, tree depth 5 (a few seconds). Measured: posterior
    median noise 0.045 with the default Gamma(0.9, 10) (0.0003-0.079 on data seeds 0-3); with the former default
    Gamma(1.1, 0.05) the same run gives 0.45 (0.14-0.90 on seeds 0-3, up to 81% of the draws above 0.5), i.e. it
    explains about half the variance as noise, which is what misled qLogNEI in the BO benchmark. The threshold 0.1
    sits between the two on this seed.
    """
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 3, generator=g, dtype=torch.float64)
    f = torch.exp(-((X - 0.5) ** 2).sum(-1) / (2 * 0.25**2))
    y = f + 0.01 * f.std() * torch.randn(12, generator=g, dtype=torch.float64)
    Y = ((y - y.mean()) / y.std()).unsqueeze(-1)
    model = fit_nuts(
        SO3FullyBayesianGP(X, Y),
        warmup_steps=32,
        num_samples=32,
        thinning=1,
        max_tree_depth=5,
        seed=0,
        disable_progbar=True,
    )
    noise = model.fit_nuts_info_.samples["noise"]
    assert float(noise.median()) < 0.1, noise.median()
    assert float(model.median_noise) < 0.1


def test_numerical_failure_predicate_matches_types_not_messages():
    assert is_numerical_failure(torch.linalg.LinAlgError("x"))
    assert is_numerical_failure(NotPSDError("x"))
    assert is_numerical_failure(NanError("x"))
    # What torch raises for a NaN or indefinite kernel matrix is a LinAlgError (the type is what counts) ...
    for bad in (torch.full((2, 2), math.nan), -torch.eye(2)):
        with pytest.raises(torch.linalg.LinAlgError) as err:
            torch.linalg.cholesky(bad)
        assert is_numerical_failure(err.value)
    # ... and message text alone does not make an exception a numerical failure.
    assert not is_numerical_failure(RuntimeError("linalg.cholesky: The factorization could not be completed because"))
    assert not is_numerical_failure(RuntimeError("nan"))
    assert not is_numerical_failure(ValueError("cholesky"))


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize(
    ("nu", "fixed_noise", "dtype"),
    [
        (2.5, False, torch.float64),
        (None, False, torch.float64),
        (0.5, True, torch.float64),
        (1.5, False, torch.float32),
    ],
)
def test_analytic_potential_equals_pyro_potential(nu, fixed_noise, dtype):
    """make_potential_fn == Pyro's generic potential of the Pyro program (value and gradient), at random points.

    The reference is Pyro's own ``initialize_model(pm.sample)`` potential, i.e. autograd through the traced program
    (MultivariateNormal.log_prob, the transforms' Jacobians, the priors). float64: agreement to ~1e-12 relative
    (round-off; the likelihood gradient is analytic); float32: to 1e-3 (Cholesky round-off).
    """
    from pyro.infer.mcmc.util import initialize_model

    X, Y = _field(30, dtype=dtype)
    Yvar = torch.full_like(Y, 0.05) if fixed_noise else None
    pm = SO3FullyBayesianGP(X, Y, Yvar, nu=nu).pyro_model
    init, pyro_pe, transforms, _ = initialize_model(pm.sample, jit_compile=False)
    assert pm.has_default_program
    fast = pm.make_potential_fn(transforms)
    g = torch.Generator().manual_seed(3)
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 2e-3, "atol": 2e-3}
    for _ in range(4):
        # (Pyro's default initial values of the lengthscale site are float32 draws of the float32 prior: cast.)
        z = {
            k: (v.detach().to(dtype) + 0.5 * torch.randn(v.shape, generator=g).to(dtype)).requires_grad_()
            for k, v in init.items()
        }
        ref = pyro_pe(z)
        ref_grad = torch.autograd.grad(ref, list(z.values()))
        val = fast(z)
        grad = torch.autograd.grad(val, list(z.values()))
        torch.testing.assert_close(val, ref, **tol)
        for a, b in zip(grad, ref_grad, strict=True):
            torch.testing.assert_close(a, b, **tol)


def test_custom_program_uses_pyro_potential():
    """A subclass overriding a sample method must not get the analytic potential (it would ignore the override)."""

    class FixedRotation(SO3PyroModel):
        def sample_rotation(self):
            return torch.zeros(3, dtype=self.dtype)

        @property
        def sample_sites(self):
            return {k: v for k, v in super().sample_sites.items() if k != "rotation"}

        def postprocess_mcmc_samples(self, mcmc_samples):
            out = dict(mcmc_samples)
            out["rotation"] = torch.zeros_like(out["lengthscale"])
            return super().postprocess_mcmc_samples(out)

    X, Y = _field(12)
    pm = FixedRotation(nu=2.5)
    assert not pm.has_default_program and SO3PyroModel(nu=2.5).has_default_program
    with pytest.raises(RuntimeError, match="overridden"):
        pm.set_inputs(X, Y)
        pm.make_potential_fn({})
    model = fit_nuts(SO3FullyBayesianGP(X, Y, pyro_model=FixedRotation(nu=2.5)), **MINI)
    assert model.fit_nuts_info_.potential == "pyro"
    assert bool((model.kernel.rotation == 0).all())


def test_analytic_and_pyro_potential_give_the_same_chain():
    """Same seed, same initial point: the chains of the analytic and the generic potential agree to round-off.

    Equal potentials and gradients (previous test) make NUTS' trajectories, accept decisions and adaptation the same
    unless round-off flips a decision; with this short budget (6 + 6 iterations, seed 7) it does not, and the draws
    agree to 1e-6 (they differ at ~1e-12).
    """
    X, Y = _field(16)
    a = fit_nuts(SO3FullyBayesianGP(X, Y), seed=7, fast_potential=True, **MINI).fit_nuts_info_
    b = fit_nuts(SO3FullyBayesianGP(X, Y), seed=7, fast_potential=False, **MINI).fit_nuts_info_
    assert a.potential == "analytic" and b.potential == "pyro"
    for k in a.samples:
        torch.testing.assert_close(a.samples[k], b.samples[k], rtol=1e-6, atol=1e-6)


def test_loaded_kernel_equals_functional_covariance(fitted):
    """Sample i in the batched ScaleKernel(SO3AnisotropicKernel) == s_i * base(|(x - x') R_i / l_i|) (explicit)."""
    X = fitted.train_inputs[0]
    pm = fitted.pyro_model
    with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
        K_batched = fitted.covar_module(X).to_dense()
        for i in range(fitted.num_mcmc_samples):
            ls = fitted.kernel.lengthscale[i, 0]
            w = fitted.kernel.rotation[i]
            s = fitted.covar_module.outputscale[i]
            R = torch.as_tensor(Rotation.from_rotvec(w.numpy()).as_matrix())  # independent rotation
            d = (X[:, None, :] - X[None, :, :]) @ R / ls
            r = d.norm(dim=-1)
            ref = s * (1 + math.sqrt(5) * r + 5 / 3 * r**2) * torch.exp(-math.sqrt(5) * r)
            torch.testing.assert_close(K_batched[i], ref, rtol=1e-10, atol=1e-12)
            A = F.so3_whitening_matrix(ls, so3.exp_map(w))
            torch.testing.assert_close(K_batched[i], s * F.covariance(X, X, A, 2.5))
            # The sampler's covariance (what NUTS sees) is the same matrix.
            torch.testing.assert_close(pm.noiseless_covariance(s, ls, w), ref, rtol=1e-10, atol=1e-12)


def test_sampler_likelihood_equals_gpytorch_mll(fitted):
    """The Pyro model's log p(y | theta_i) equals GPyTorch's exact marginal likelihood of loaded sample i."""
    import pyro

    pm = fitted.pyro_model
    X, y = fitted.train_inputs[0], fitted.train_targets
    S = fitted.num_mcmc_samples
    with torch.no_grad():
        K = fitted.covar_module(X).to_dense() + torch.diag_embed(fitted.likelihood.noise.expand(S, X.shape[0]))
        mvn = torch.distributions.MultivariateNormal(fitted.mean_module.constant[:, None].expand(S, X.shape[0]), K)
        ref = mvn.log_prob(y)
    for i in range(S):
        values = {
            "outputscale": fitted.covar_module.outputscale[i],
            "noise": fitted.likelihood.noise[i, 0] - 1e-4,  # the site is the noise above BoTorch's 1e-4 floor
            "mean": fitted.mean_module.constant[i],
            "lengthscale": fitted.kernel.lengthscale[i, 0],
            "rotation": fitted.kernel.rotation[i],
        }
        with torch.no_grad():
            tr = pyro.poutine.trace(pyro.poutine.condition(pm.sample, data=values)).get_trace()
            lp = tr.nodes["Y"]["fn"].log_prob(tr.nodes["Y"]["value"])
        torch.testing.assert_close(lp, ref[i], rtol=1e-9, atol=1e-9)
        # Prior sites use the package priors' log densities (rotation: the Haar prior on R^3).
        torch.testing.assert_close(
            tr.nodes["rotation"]["fn"].log_prob(values["rotation"]), pm.priors["rotation"].log_prob(values["rotation"])
        )


def test_float32_inputs_and_sampler_dtypes():
    X, Y = _field(14, dtype=torch.float32)
    for sampler_dtype in (torch.float64, None):
        model = fit_nuts(SO3FullyBayesianGP(X, Y), dtype=sampler_dtype, **MINI)
        assert model.kernel.lengthscale.dtype == torch.float32
        assert model.fit_nuts_info_.dtype == (torch.float64 if sampler_dtype else torch.float32)
        post = model.posterior(torch.rand(3, 3))
        assert post.mixture_mean.dtype == torch.float32
        assert bool(torch.isfinite(post.mixture_mean).all())


def test_outcome_transform_and_fixed_noise():
    X, Y = _field(14)
    Yraw = 3.0 + 10.0 * Y
    model = SO3FullyBayesianGP(X, Yraw, torch.full_like(Y, 0.01), outcome_transform=Standardize(m=1))
    fit_nuts(model, **MINI)
    assert "noise" not in model.fit_nuts_info_.samples
    assert isinstance(model.likelihood, gpytorch.likelihoods.FixedNoiseGaussianLikelihood)
    with torch.no_grad():
        post = model.posterior(X[:4])
    # Back on the original scale: near the (noise-free-ish) training values.
    assert float((post.mixture_mean - Yraw[:4]).abs().max()) < 5.0
    s = summarize_posterior(model)
    assert s.noise is None and "noise" not in s.rhat


def test_state_dict_round_trip(fitted):
    X, Y = fitted.pyro_model.train_X, fitted.pyro_model.train_Y
    clone = SO3FullyBayesianGP(X, Y)
    clone.load_state_dict(fitted.state_dict())
    clone.eval()
    Xt = torch.rand(5, 3, dtype=torch.float64)
    torch.testing.assert_close(clone.posterior(Xt).mixture_mean, fitted.posterior(Xt).mixture_mean)


def test_condition_on_observations(fitted):
    S = fitted.num_mcmc_samples
    Xn = torch.rand(2, 3, dtype=torch.float64)
    with torch.no_grad():
        Yn = fitted.posterior(Xn).mixture_mean
        cond = fitted.condition_on_observations(Xn, Yn)
        post = cond.posterior(Xn)
    assert post.mean.shape == (S, 2, 1)
    # Conditioning on a value shrinks every sample's variance there.
    assert bool((post.variance < fitted.posterior(Xn).variance).all())


def test_per_axis_normalize_warns():
    from botorch.models.transforms.input import Normalize

    from gpytorch_so3.exceptions import NonIsotropicInputScalingWarning

    X, Y = _field(10)
    X = X * torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)
    with pytest.warns(NonIsotropicInputScalingWarning, match="shears"):
        SO3FullyBayesianGP(X, Y, input_transform=Normalize(d=3))
    # One common factor for all axes keeps angles: no warning (GPyTorchSO3Warning is an error in tests).
    bounds = torch.tensor([[0.0] * 3, [5.0] * 3], dtype=torch.float64)
    SO3FullyBayesianGP(X, Y, input_transform=Normalize(d=3, bounds=bounds))


def test_input_validation():
    X, Y = _field(10)
    with pytest.raises(ValueError, match="3-D"):
        SO3FullyBayesianGP(torch.rand(10, 2, dtype=torch.float64), Y)
    with pytest.raises(ValueError, match="n x 1"):
        SO3FullyBayesianGP(X, Y.squeeze(-1))
    with pytest.raises(TypeError):
        SO3FullyBayesianGP(X.long(), Y)
    with pytest.raises(ValueError, match="finite"):
        SO3FullyBayesianGP(X, Y.masked_fill(torch.arange(10).unsqueeze(-1) == 3, float("nan")))
    model = SO3FullyBayesianGP(X, Y)
    with pytest.raises(TypeError):
        fit_nuts(object())
    for bad in (
        {"num_samples": 0},
        {"thinning": 0},
        {"target_accept_prob": 1.0},
        {"init_strategy": "nope"},
        {"dtype": torch.int64},
    ):
        with pytest.raises(ValueError):
            fit_nuts(model, **{**TINY, **bad})
    with pytest.raises(TypeError, match="fit_nuts: num_chains must be an int"):  # a non-integer count
        fit_nuts(model, **{**TINY, "num_chains": 1.5})
    with pytest.raises(ValueError, match="nu"):
        SO3FullyBayesianGP(X, Y, nu=2.0)
    with pytest.raises(ValueError, match="event_shape"):
        SO3PyroModel(rotation_prior=torch.distributions.Normal(0.0, 1.0))


# ------------------------------------------------------------------------------------------ summary
def test_summary_shapes_keys_and_canonical_form(fitted):
    s = summarize_posterior(fitted)
    assert isinstance(s, PosteriorSummary)
    info = fitted.fit_nuts_info_
    N = 2 * 12
    assert s.num_chains == 2 and s.num_samples == N
    assert s.lengthscale.shape == (N, 3)
    assert s.axes.shape == (N, 3, 3)
    assert bool((s.lengthscale.diff(dim=-1) >= 0).all())
    # Canonical axes: orthonormal, det +1, and the same metric as the raw draws.
    eye = torch.eye(3, dtype=s.axes.dtype).expand(N, 3, 3)
    torch.testing.assert_close(s.axes.transpose(-1, -2) @ s.axes, eye)
    torch.testing.assert_close(torch.linalg.det(s.axes), torch.ones(N, dtype=s.axes.dtype))
    raw_l = info.samples["lengthscale"].reshape(N, 3)
    raw_R = so3.exp_map(info.samples["rotation"].reshape(N, 3))
    M_raw = F.metric(raw_l, raw_R)
    torch.testing.assert_close(F.metric(s.lengthscale, s.axes), M_raw)
    for key in ("lengthscale", "outputscale", "noise", "mean", "axes"):
        assert key in s.rhat and key in s.ess
    assert s.rhat["lengthscale"].shape == (3,) and s.ess["lengthscale"].shape == (3,)
    assert s.rhat["outputscale"].shape == () and s.rhat["axes"].shape == (3, 3)
    assert s.interval["lengthscale"].shape == (2, 3)
    assert bool((s.interval["lengthscale"][0] <= s.posterior_mean["lengthscale"]).all())
    torch.testing.assert_close(s.directions.norm(dim=0), torch.ones(3, dtype=s.directions.dtype))
    assert s.azimuth.shape == (3,) and s.dip.shape == (3,)
    assert bool(((s.dip >= 0) & (s.dip <= 90)).all()) and bool(((s.azimuth >= 0) & (s.azimuth < 360)).all())
    text = str(s)
    for token in ("lengthscale[short]", "outputscale", "R-hat", "ESS", "azimuth", "dip"):
        assert token in text


def test_summary_to_arviz(fitted):
    az = pytest.importorskip("arviz")
    idata = summarize_posterior(fitted).to_arviz()
    post = idata.posterior
    assert post["lengthscale"].shape == (2, 12, 3)
    assert post["axes"].shape == (2, 12, 3, 3)
    # ArviZ's own R-hat on the canonical variables is finite (an independent implementation).
    assert bool(az.rhat(idata, var_names=["lengthscale"])["lengthscale"].notnull().all())


def _synthetic_draws(ls: torch.Tensor, axis_jitter: float, num_chains=2, draws=200, seed=0) -> dict:
    """Draws around a fixed frame; each draw gets a random signed axis permutation (the 24-fold symmetry)."""
    g = torch.Generator().manual_seed(seed)
    n = num_chains * draws
    R0 = torch.as_tensor(Rotation.from_rotvec([0.3, 0.7, -0.2]).as_matrix())
    small = torch.as_tensor(Rotation.from_rotvec((axis_jitter * torch.randn(n, 3, generator=g)).numpy()).as_matrix())
    lsd = ls * torch.exp(0.03 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    perms = torch.as_tensor(Rotation.create_group("O").as_matrix())  # the 24 signed permutations with det +1
    P = perms[torch.randint(0, 24, (n,), generator=g)]
    R = small @ R0 @ P
    lsp = (lsd.unsqueeze(-2) @ P.abs()).squeeze(-2)  # columns permuted alike
    rot = torch.as_tensor(Rotation.from_matrix(R.numpy()).as_rotvec())
    return {
        "lengthscale": lsp.reshape(num_chains, draws, 3),
        "rotation": rot.reshape(num_chains, draws, 3),
        "outputscale": 1.0 + 0.1 * torch.randn(num_chains, draws, generator=g, dtype=torch.float64),
        "mean": 0.1 * torch.randn(num_chains, draws, generator=g, dtype=torch.float64),
        "noise": 0.01 + 0.001 * torch.rand(num_chains, draws, generator=g, dtype=torch.float64),
    }, R0


def test_summary_removes_symmetry_and_finds_directions():
    draws, R0 = _synthetic_draws(torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64), axis_jitter=0.02)
    s = summarize_samples(draws)
    assert not s.weakly_identified and s.explanation == ""
    torch.testing.assert_close(
        s.posterior_mean["lengthscale"], torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64), rtol=0.02, atol=0
    )
    ang = so3.angle_between_axes(s.directions.T, R0.T)
    assert bool((ang < 3.0).all()), ang
    # i.i.d. draws: R-hat ~ 1 and ESS ~ number of draws, despite the random axis permutations of the raw draws.
    assert bool((s.rhat["lengthscale"] < 1.05).all()) and bool((s.rhat["axes"] < 1.05).all())
    assert bool((s.ess["lengthscale"] > 200).all())


def test_summary_flags_near_isotropic_pair():
    draws, R0 = _synthetic_draws(torch.tensor([0.3, 0.3, 1.0], dtype=torch.float64), axis_jitter=0.02)
    s = summarize_samples(draws)
    assert s.weak_pairs == [(0, 1)]
    assert "weakly identified" in s.explanation and "short and middle" in s.explanation
    assert "(weakly identified)" in str(s)
    # The long axis (normal of the flagged plane) is still recovered, and length-scales are well converged.
    assert float(so3.angle_between_axes(s.directions[:, 2], R0[:, 2])) < 3.0
    assert bool((s.rhat["lengthscale"] < 1.05).all())


def test_diagnostics_nan_with_too_few_draws():
    """Fewer than 4 draws per chain: R-hat and ESS are NaN (ArviZ's min_draws=4), and the table still renders."""
    draws, _ = _synthetic_draws(torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64), 0.02, draws=3)
    s = summarize_samples(draws)
    for key in ("lengthscale", "outputscale", "noise", "mean", "axes"):
        assert bool(torch.isnan(s.rhat[key]).all()) and bool(torch.isnan(s.ess[key]).all()), key
    assert "nan" in str(s)
    # With 4 draws per chain they are defined (finite), and ESS is positive.
    draws, _ = _synthetic_draws(torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64), 0.02, draws=4)
    s = summarize_samples(draws)
    for key in ("lengthscale", "outputscale", "noise", "mean", "axes"):
        assert bool(torch.isfinite(s.ess[key]).all()) and bool((s.ess[key] > 0).all()), key


def test_ess_is_bounded_like_arviz():
    """ESS lies in (0, C N log10(C N)] (ArviZ/Stan: tau >= 1 / log10(C N)); raw Pyro ESS can be negative.

    Cases: 4 i.i.d. draws in 1 chain (64 seeded series; Pyro's raw ESS is negative for some of them)
    and exactly antithetic chains (lag-1 correlation -1), where ArviZ returns the bound itself.
    """
    from pyro.ops.stats import effective_sample_size

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 64, generator=g, dtype=torch.float64)  # 64 independent 1-chain x 4-draw series
    raw = effective_sample_size(x, chain_dim=0, sample_dim=1)
    assert bool((raw < 0).any())  # the failure being guarded against
    rhat, ess = _pyro_diagnostics(x)
    cap = 4 * math.log10(4)
    assert bool((ess > 0).all()) and bool((ess <= cap + 1e-12).all())
    assert bool(torch.isfinite(rhat).all())
    # Antithetic pairs: 2 chains x 200 draws with x[2k+1] = -x[2k]; Pyro's raw ESS is absurd (negative or
    # ~10x the number of draws, depending on the draws).
    base = torch.randn(2, 100, generator=g, dtype=torch.float64)
    anti = torch.stack((base, -base), dim=-1).reshape(2, 200)
    raw_anti = float(effective_sample_size(anti, 0, 1))
    assert not 0 < raw_anti <= 400 * math.log10(400), raw_anti
    _, ess_anti = _pyro_diagnostics(anti)
    torch.testing.assert_close(ess_anti, torch.tensor(400 * math.log10(400), dtype=torch.float64))
    az = pytest.importorskip("arviz")
    # Independent implementation: ArviZ's (non-rank) mean ESS hits the same bound here, and agrees on an
    # i.i.d. chain pair (Pyro's estimator does not split chains, ArviZ's does: agreement within 10%).
    assert float(ess_anti) == pytest.approx(float(az.ess(anti.numpy(), method="mean")), rel=1e-10)
    iid = torch.randn(2, 400, generator=g, dtype=torch.float64)
    _, ess_iid = _pyro_diagnostics(iid)
    assert float(ess_iid) == pytest.approx(float(az.ess(iid.numpy(), method="mean")), rel=0.1)


def test_diagnostics_bad_component_does_not_poison_others():
    """A NaN or constant component gets NaN / ESS = C N (ArviZ) without turning the other components NaN."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    rhat0, ess0 = _pyro_diagnostics(x)
    x[1, 3, 1] = math.nan
    x[:, :, 2] = 2.0
    rhat, ess = _pyro_diagnostics(x)
    torch.testing.assert_close(rhat[0], rhat0[0])
    torch.testing.assert_close(ess[0], ess0[0])
    assert math.isnan(float(rhat[1])) and math.isnan(float(ess[1]))
    assert math.isnan(float(rhat[2])) and float(ess[2]) == 100.0


def test_summary_validation():
    draws, _ = _synthetic_draws(torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64), 0.02, draws=8)
    with pytest.raises(ValueError, match="weak_ratio"):
        summarize_samples(draws, weak_ratio=0.9)
    with pytest.raises(ValueError, match="prob"):
        summarize_samples(draws, prob=1.5)
    with pytest.raises(ValueError, match="rotation"):
        summarize_samples({k: v for k, v in draws.items() if k != "rotation"})
    with pytest.raises(TypeError):
        summarize_posterior(object())


def test_azimuth_dip_conventions():
    u = torch.tensor(
        [
            [0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, -math.sqrt(2)],
            [-1.0, -1.0, math.sqrt(2)],
            [-1.0, 0.0, 0.0],
            [0.0, -1.0, -1.0],
        ],
        dtype=torch.float64,
    )
    az, dip = azimuth_dip(u)
    torch.testing.assert_close(az, torch.tensor([0.0, 90.0, 0.0, 45.0, 45.0, 90.0, 180.0], dtype=torch.float64))
    torch.testing.assert_close(dip, torch.tensor([0.0, 0.0, 90.0, 45.0, 45.0, 0.0, 45.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------ statistics (slow)
@pytest.mark.slow
def test_recovery_on_rotated_field():
    """Issue-5 acceptance on a seeded rotated field (seed 0, n = 120, 2 chains x (256 warm-up + 256 draws)).

    Thresholds (from the issue): R-hat < 1.1 and ESS > 30 on canonical length-scales, posterior-mean shortest
    direction within 12 degrees of the truth, mixture-mean RMSE below an ARD (axis-aligned) MAP fit. Why they
    hold: with 120 points on the unit cube and length-scales (0.15, 0.4, 1.0) (ratios 2.7 and 2.5) each axis
    is well identified, and an axis-aligned kernel cannot represent the rotated metric. Measured on this exact
    configuration: R-hat <= 1.001, ESS >= 310, short axis 6.1 degrees off, RMSE 0.217 vs 0.331 (re-measured with
    the Gamma(0.9, 10) noise prior and the analytic potential: R-hat <= 1.008, ESS >= 298, 6.0 degrees, RMSE
    0.219 vs 0.331, 0 divergences); over seeds
    0-4, 6-11 (benchmarks/bench_nuts.py acceptance): R-hat <= 1.025, ESS >= 90, angle <= 7.9 degrees, RMSE
    better than ARD MAP on 11/11. So the thresholds have margin without being vacuous.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from gpytorch_so3.datasets import make_rotated_field

    data = make_rotated_field(120, 400, seed=0)
    model = SO3FullyBayesianGP(data.train_X, data.train_Y, outcome_transform=Standardize(m=1))
    fit_nuts(model, num_chains=2, warmup_steps=256, num_samples=256, thinning=16, seed=0, disable_progbar=True)
    s = summarize_posterior(model)
    assert bool((s.rhat["lengthscale"] < 1.1).all()), s.rhat["lengthscale"]
    assert bool((s.ess["lengthscale"] > 30).all()), s.ess["lengthscale"]
    true_l = torch.as_tensor(data.lengthscale).to(s.lengthscale)
    _, true_R = so3.canonicalize(true_l, torch.as_tensor(data.rotation_matrix).to(s.axes))
    angle = float(so3.angle_between_axes(s.directions[:, 0], true_R[:, 0]))
    assert angle < 12.0, angle
    with torch.no_grad():
        rmse_fb = float((model.posterior(data.test_X).mixture_mean - data.test_Y).pow(2).mean().sqrt())
    ard = SingleTaskGP(data.train_X, data.train_Y, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(ard.likelihood, ard))
    with torch.no_grad():
        rmse_ard = float((ard.posterior(data.test_X).mean - data.test_Y).pow(2).mean().sqrt())
    assert rmse_fb < rmse_ard, (rmse_fb, rmse_ard)


@pytest.mark.slow
def test_near_isotropic_field_is_flagged():
    """Issue-5 acceptance: two equal length-scales (0.3, 0.3, 1.0), seed 0, n = 120, 2 chains x (256 + 256).

    The short/middle pair must be flagged as weakly identified while the length-scales themselves converge
    (R-hat < 1.1) and the long axis (the normal of the flagged plane, well identified: ratio 3.3) is still found.
    Measured on this configuration: pair (0, 1) flagged, R-hat <= 1.004, ESS >= 257, long axis 4.9 degrees off
    (the short/middle directions are 45 degrees off: unidentified, as flagged); re-measured with the Gamma(0.9, 10)
    noise prior and the analytic potential: (0, 1) flagged, R-hat <= 1.0, ESS >= 286, long axis 4.8 degrees off.
    """
    from gpytorch_so3.datasets import make_rotated_field

    data = make_rotated_field(120, 400, lengthscale=(0.3, 0.3, 1.0), seed=0)
    model = SO3FullyBayesianGP(data.train_X, data.train_Y, outcome_transform=Standardize(m=1))
    fit_nuts(model, num_chains=2, warmup_steps=256, num_samples=256, seed=0, disable_progbar=True)
    s = summarize_posterior(model)
    assert (0, 1) in s.weak_pairs and (1, 2) not in s.weak_pairs, s.explanation
    assert bool((s.rhat["lengthscale"] < 1.1).all()), s.rhat["lengthscale"]
    true_long = torch.as_tensor(data.rotation_matrix)[:, 2].to(s.directions)
    assert float(so3.angle_between_axes(s.directions[:, 2], true_long)) < 15.0
