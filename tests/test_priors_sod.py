"""Rotation priors in d dimensions (appended block of gpytorch_so3.priors): log densities against explicit formulas
(scipy), normalisation by quadrature, sample shapes and laws (seeded KS tests), ``expand`` round trips, pickling,
gpytorch/Pyro/BoTorch prior machinery on a RotatedAnisotropicKernel."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from gpytorch_so3 import sod
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.priors import (
    DEFAULT_SHRINKAGE_SLAB_SCALE,
    DEFAULT_SHRINKAGE_SPIKE_SCALE,
    DEFAULT_SHRINKAGE_SPIKE_WEIGHT,
    GaussianLieAlgebraPrior,
    GaussianRotationPrior,
    HaarAnglePrior,
    ShrinkageRotationPrior,
    default_sod_rotation_prior,
)

PRIOR_MAKERS = {
    "gaussian": lambda d: GaussianLieAlgebraPrior(d, 0.4),
    "shrinkage": lambda d: ShrinkageRotationPrior(d),
}


# ------------------------------------------------------------------------------------------ log densities
@pytest.mark.parametrize("d", [2, 3, 4, 6])
def test_gaussian_log_prob_matches_scipy(d):
    m = d * (d - 1) // 2
    prior = GaussianLieAlgebraPrior(d, scale=0.7).double()
    pts = np.random.default_rng(d).normal(size=(10, m))
    ref = stats.multivariate_normal(np.zeros(m), 0.49 * np.eye(m)).logpdf(pts)
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(pts)).numpy(), ref, rtol=1e-12)


def test_gaussian_d3_equals_gaussian_rotation_prior():
    w = torch.randn(5, 3, dtype=torch.float64)
    a = GaussianLieAlgebraPrior(3, 0.6).double().log_prob(w)
    b = GaussianRotationPrior(torch.tensor(0.6, dtype=torch.float64)).log_prob(w)
    torch.testing.assert_close(a, b, rtol=1e-14, atol=0)


@pytest.mark.parametrize("d", [2, 4])
def test_shrinkage_log_prob_matches_explicit_mixture(d):
    m = d * (d - 1) // 2
    prior = ShrinkageRotationPrior(d, spike_scale=0.1, slab_scale=2.0, spike_weight=0.3).double()
    pts = np.random.default_rng(0).normal(size=(20, m)) * np.array([0.05, 1.0, 3.0] * m)[:m]
    per_coord = 0.3 * stats.norm(0, 0.1).pdf(pts) + 0.7 * stats.norm(0, 2.0).pdf(pts)
    ref = np.log(per_coord).sum(-1)
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(pts)).numpy(), ref, rtol=1e-12)


def test_shrinkage_defaults_and_identity_is_favoured():
    prior = default_sod_rotation_prior(4)
    assert isinstance(prior, ShrinkageRotationPrior) and prior.event_shape == (6,)
    assert (prior.spike_scale, prior.slab_scale, prior.spike_weight) == (
        DEFAULT_SHRINKAGE_SPIKE_SCALE,
        DEFAULT_SHRINKAGE_SLAB_SCALE,
        DEFAULT_SHRINKAGE_SPIKE_WEIGHT,
    )
    slab = GaussianLieAlgebraPrior(4, DEFAULT_SHRINKAGE_SLAB_SCALE)
    zero, rotated = torch.zeros(6), torch.full((6,), 0.5)
    # at the identity: log(pi_0 s_1 / s_0 + (1 - pi_0)) = log 10.5 per coordinate above the slab alone
    gain = float(prior.log_prob(zero) - slab.log_prob(zero))
    assert gain == pytest.approx(6 * math.log(0.5 * 1.0 / 0.05 + 0.5), rel=1e-5)
    # away from it: at most log(1 / (1 - pi_0)) per coordinate below the slab
    assert float(slab.log_prob(rotated) - prior.log_prob(rotated)) <= 6 * math.log(2.0) + 1e-5


@pytest.mark.parametrize("s", [0.1, 0.3, 0.5])
def test_haar_angle_density_normalised_and_uniform_pushforward_density(s):
    prior = HaarAnglePrior(s).double()

    def p(t):
        return float(prior.log_prob(torch.tensor([[t]], dtype=torch.float64)).exp())

    total = integrate.quad(p, -math.pi - 12 * s, math.pi + 12 * s, points=[-math.pi, 0.0, math.pi], limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-9)
    # wrapped density: p(t) + p(t - 2 pi sign t) = 1 / (2 pi) for every angle
    for t in np.linspace(-math.pi, math.pi, 13):
        other = t - 2 * math.pi * np.sign(t) if t != 0 else 2 * math.pi
        assert p(t) + p(other) == pytest.approx(1 / (2 * math.pi), rel=1e-9)
    assert p(0.0) == pytest.approx(stats.norm.cdf(math.pi / s) / (2 * math.pi), rel=1e-12)  # 1 - Phi(-pi/s)
    assert p(math.pi) == pytest.approx(0.5 / (2 * math.pi), rel=1e-12)


def test_log_probs_finite_with_finite_gradients():
    for prior, m in ((HaarAnglePrior(), 1), (ShrinkageRotationPrior(5), 10), (GaussianLieAlgebraPrior(5), 10)):
        for fill in (0.0, math.pi, 50.0):
            w = torch.full((m,), fill, dtype=torch.float64, requires_grad=True)
            lp = prior.double().log_prob(w)
            (g,) = torch.autograd.grad(lp, w)
            assert torch.isfinite(lp) and torch.isfinite(g).all()
    # the Haar angle prior is flat at 0 (gradient exactly 0)
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(HaarAnglePrior().double().log_prob(w), w)
    assert float(g) == 0.0


# ------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("name", list(PRIOR_MAKERS))
@pytest.mark.parametrize("d", [2, 5])
def test_sample_shapes_dtype_and_expand_round_trip(name, d):
    m = d * (d - 1) // 2
    prior = PRIOR_MAKERS[name](d)
    assert prior.event_shape == (m,) and prior.batch_shape == ()
    assert prior.sample().shape == (m,) and prior.sample((4, 2)).shape == (4, 2, m)
    assert prior.double().sample((3,)).dtype == torch.float64
    expanded = prior.expand((2, 3, m))
    assert type(expanded) is type(prior) and expanded.batch_shape == (2, 3)
    assert expanded.sample((5,)).shape == (5, 2, 3, m)
    assert expanded.mean.shape == (2, 3, m) and expanded.variance.shape == (2, 3, m)
    w = torch.randn(4, 1, 1, m, dtype=torch.float64)
    torch.testing.assert_close(expanded.double().log_prob(w), prior.double().log_prob(w).expand(4, 2, 3))
    restored = pickle.loads(pickle.dumps(expanded))
    assert restored.batch_shape == (2, 3)
    torch.testing.assert_close(restored.double().log_prob(w), prior.double().log_prob(w).expand(4, 2, 3))
    with pytest.raises(ValueError, match=rf"\(\*batch_shape, {m}\)"):
        prior.expand((2,))
    with pytest.raises(ValueError, match=rf"shape \(\.\.\., {m}\)"):
        prior.log_prob(torch.zeros(m + 1))


# Seeded KS tests, 20000 draws: threshold p > 1e-3 (a random seed would fail with probability 1e-3); at n = 20000
# the critical KS distance is 0.014, so a CDF error of 0.02 would be detected with probability > 0.99.
N = 20000


def test_shrinkage_samples_follow_the_mixture(seed):
    prior = ShrinkageRotationPrior(3, spike_scale=0.1, slab_scale=1.5, spike_weight=0.4).double()
    x = prior.sample((N,)).reshape(-1)[:N].numpy()

    def cdf(t):
        return 0.4 * stats.norm(0, 0.1).cdf(t) + 0.6 * stats.norm(0, 1.5).cdf(t)

    assert stats.kstest(x, cdf).pvalue > 1e-3
    # power: the slab alone is rejected
    assert stats.kstest(x, stats.norm(0, 1.5).cdf).pvalue < 1e-10


def test_haar_angle_samples_push_forward_to_uniform(seed):
    prior = HaarAnglePrior(0.3).double()
    theta = prior.sample((N,))[..., 0]
    assert float(theta.abs().max()) > math.pi  # the smooth edge is used
    wrapped = sod.log_map(sod.exp_map(theta.unsqueeze(-1), 2))[..., 0].numpy()
    assert stats.kstest(wrapped, stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3
    # the raw samples follow p_s (CDF by quadrature of the density at a few points)
    for t in (-3.3, -1.0, 2.0, 3.4):
        mass = integrate.quad(lambda u: float(prior.log_prob(torch.tensor([[u]], dtype=torch.float64)).exp()), -6, t)[0]
        emp = float((theta <= t).double().mean())
        assert abs(emp - mass) < 4 * math.sqrt(mass * (1 - mass) / N) + 1e-4  # 4 binomial standard errors


def test_validation_errors():
    with pytest.raises(ValueError, match="spike_scale"):
        ShrinkageRotationPrior(3, spike_scale=1.0, slab_scale=0.5)
    with pytest.raises(ValueError, match="spike_weight"):
        ShrinkageRotationPrior(3, spike_weight=1.0)
    with pytest.raises(ValueError, match="scale must be positive"):
        GaussianLieAlgebraPrior(3, scale=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        HaarAnglePrior(0.6)
    with pytest.raises(ValueError, match="dim must be >= 2"):
        GaussianLieAlgebraPrior(1)
    with pytest.raises(TypeError, match="dim must be an int"):
        ShrinkageRotationPrior(2.5)
    with pytest.raises(NotImplementedError):
        ShrinkageRotationPrior(3).rsample()
    assert GaussianLieAlgebraPrior(3).rsample((2,)).shape == (2, 3)


# ------------------------------------------------------------------------------------------ prior machinery
@pytest.mark.parametrize("batch_shape", [(), (2,)])
def test_pyro_sample_from_prior_and_pickle_on_kernel(seed, batch_shape):
    import pyro

    k = RotatedAnisotropicKernel(4, 2.5, rotation_prior=ShrinkageRotationPrior(4), batch_shape=torch.Size(batch_shape))
    trace = pyro.poutine.trace(k.pyro_sample_from_prior).get_trace()
    site = trace.nodes["rotation_prior"]
    assert site["value"].shape == (*batch_shape, 6)
    assert site["fn"].batch_shape == batch_shape and torch.isfinite(site["fn"].log_prob(site["value"])).all()
    k2 = pickle.loads(pickle.dumps(k))
    assert isinstance(dict((n, p) for n, _, p, *_ in k2.named_priors())["rotation_prior"], ShrinkageRotationPrior)


def test_botorch_sample_all_priors(seed):
    from botorch.models import SingleTaskGP
    from botorch.optim.utils import sample_all_priors
    from gpytorch.kernels import ScaleKernel

    X = torch.rand(12, 2, dtype=torch.float64)
    Y = torch.randn(12, 2, dtype=torch.float64)  # two outputs: the kernel is batched over them
    for prior in (HaarAnglePrior(), ShrinkageRotationPrior(2), GaussianLieAlgebraPrior(2)):
        base = RotatedAnisotropicKernel(2, 2.5, rotation_prior=prior, batch_shape=torch.Size([2]))
        model = SingleTaskGP(X, Y, covar_module=ScaleKernel(base, batch_shape=torch.Size([2])))
        sample_all_priors(model)
        assert base.rotation.shape == (2, 1) and not torch.equal(base.rotation[0], base.rotation[1])
        model.eval()
        assert torch.isfinite(model.posterior(torch.rand(3, 2, dtype=torch.float64)).mean).all()
