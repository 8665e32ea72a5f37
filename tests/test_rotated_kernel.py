"""RotatedAnisotropicKernel: gpytorch's BaseKernelTestCase for d = 2, 4, 6; values against an independent
numpy/scipy reference; d = 3 equals SO3AnisotropicKernel; rotation 0 equals gpytorch's ARD kernels (values and
gradients); equivariance; batching, slicing, pickling, priors, MCMC-sample loading; and parameter validation."""

from __future__ import annotations

import math
import pickle
import unittest

import gpytorch
import numpy as np
import pytest
import scipy.linalg
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import GammaPrior, LogNormalPrior, NormalPrior
from gpytorch.test.base_kernel_test_case import BaseKernelTestCase
from reference import base_kernel, to_np

from gpytorch_so3 import sod
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel
from gpytorch_so3.priors import GaussianLieAlgebraPrior, HaarAnglePrior, ShrinkageRotationPrior

NUS = [None, 0.5, 1.5, 2.5]
NU_IDS = ["rbf", "matern12", "matern32", "matern52"]
KTOL = {torch.float32: {"rtol": 0.0, "atol": 2e-5}, torch.float64: {"rtol": 0.0, "atol": 1e-12}}
GTOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-4}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}


def make_kernel(dim, nu=None, dtype=torch.float64, batch_shape=(), seed=0, **kwargs) -> RotatedAnisotropicKernel:
    """Random rotation coordinates (scale 0.8) and distinct length-scales in [0.3, 1.8]."""
    g = torch.Generator().manual_seed(seed)
    k = RotatedAnisotropicKernel(dim, nu, batch_shape=torch.Size(batch_shape), **kwargs).to(dtype)
    m = dim * (dim - 1) // 2
    k.rotation = (torch.randn(*batch_shape, m, generator=g, dtype=torch.float64) * 0.8).to(dtype)
    k.lengthscale = (torch.rand(*batch_shape, 1, dim, generator=g, dtype=torch.float64) * 1.5 + 0.3).to(dtype)
    return k


def rand_x(*shape, dtype=torch.float64, seed=1, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def dense(k, x1, x2=None, **kw):
    out = k(x1, x2, **kw)
    return out if torch.is_tensor(out) else out.to_dense()


def ref_rotation(w: np.ndarray, dim: int) -> np.ndarray:
    """Independent reference: the documented coordinate order written out again, then scipy's expm (or cos/sin)."""
    if dim == 2:
        c, s = math.cos(w[0]), math.sin(w[0])
        return np.array([[c, -s], [s, c]])
    pairs = [(2, 1), (0, 2), (1, 0)] + [(j, i) for j in range(3, dim) for i in range(j)]
    W = np.zeros((dim, dim))
    for k, (j, i) in enumerate(pairs):
        W[j, i], W[i, j] = w[k], -w[k]
    return scipy.linalg.expm(W)


def ref_gram(x1, x2, lengthscale, w, nu, dim):
    R = ref_rotation(to_np(w).reshape(-1), dim)
    M = R @ np.diag(to_np(lengthscale).reshape(-1) ** -2.0) @ R.T
    x1, x2 = to_np(x1), to_np(x2)
    out = np.empty((x1.shape[0], x2.shape[0]))
    for i in range(x1.shape[0]):
        for j in range(x2.shape[0]):
            d = x1[i] - x2[j]
            out[i, j] = base_kernel(math.sqrt(max(float(d @ M @ d), 0.0)), nu)
    return out


# ------------------------------------------------------------------------------------------ gpytorch contract suite
class _RotatedContract(BaseKernelTestCase):
    seed = 0
    nu = None
    dim = 2

    def create_kernel_no_ard(self, **kwargs):
        kernel = RotatedAnisotropicKernel(self.dim, self.nu, **kwargs)
        bs = kernel.batch_shape
        kernel.rotation = torch.randn(*bs, kernel.num_rotation_coordinates)
        kernel.lengthscale = torch.rand(*bs, 1, self.dim) + 0.5
        return kernel

    def create_kernel_ard(self, num_dims, **kwargs):
        # ARD in its d principal axes by construction; the data factories below are d-dimensional.
        return self.create_kernel_no_ard(**kwargs)

    def create_data_no_batch(self):
        return torch.randn(50, self.dim)

    def create_data_single_batch(self):
        return torch.randn(2, 10, self.dim)

    def create_data_double_batch(self):
        return torch.randn(3, 2, 50, self.dim)

    def _check_active_dims(self, active_dims, width):
        kernel = self.create_kernel_no_ard(active_dims=active_dims)
        x = torch.randn(50, width)
        covar_mat = kernel(x).evaluate_kernel().to_dense()
        kernel_basic = self.create_kernel_no_ard()
        kernel_basic.load_state_dict({k: v for k, v in kernel.state_dict().items() if k != "active_dims"})
        covar_mat_actual = kernel_basic(x[:, list(active_dims)]).evaluate_kernel().to_dense()
        self.assertAllClose(covar_mat, covar_mat_actual, rtol=1e-5, atol=1e-6)
        other = list(range(self.dim)) if list(active_dims) != list(range(self.dim)) else list(range(1, self.dim + 1))
        self.assertFalse(torch.allclose(covar_mat, kernel_basic(x[:, other]).to_dense(), rtol=1e-3, atol=1e-3))

    def test_active_dims_list(self):
        self._check_active_dims(list(range(0, 2 * self.dim, 2)), width=2 * self.dim)

    def test_active_dims_range(self):
        self._check_active_dims(list(range(3, 3 + self.dim)), width=self.dim + 5)


class TestRotated2DRBF(_RotatedContract, unittest.TestCase):
    dim, nu = 2, None


class TestRotated2DMatern12(_RotatedContract, unittest.TestCase):
    dim, nu = 2, 0.5


class TestRotated4DMatern52(_RotatedContract, unittest.TestCase):
    dim, nu = 4, 2.5


class TestRotated4DRBF(_RotatedContract, unittest.TestCase):
    dim, nu = 4, None


class TestRotated6DMatern32(_RotatedContract, unittest.TestCase):
    dim, nu = 6, 1.5


class TestRotated6DRBF(_RotatedContract, unittest.TestCase):
    dim, nu = 6, None


# ------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("dim", [2, 4, 6])
@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_values_match_independent_reference(dim, nu, dtype):
    k = make_kernel(dim, nu, dtype, seed=dim)
    x1, x2 = rand_x(9, dim, dtype=dtype, seed=2), rand_x(7, dim, dtype=dtype, seed=3)
    with torch.no_grad():
        K = dense(k, x1, x2)
        Kd = k(x1, x1, diag=True)
    ref = ref_gram(x1, x2, k.lengthscale, k.rotation, nu, dim)
    np.testing.assert_allclose(to_np(K), ref, atol=KTOL[dtype]["atol"] * 5, rtol=0)
    np.testing.assert_allclose(to_np(Kd), np.ones(9), atol=1e-6, rtol=0)
    np.testing.assert_allclose(to_np(k.rotation_matrix), ref_rotation(to_np(k.rotation), dim), atol=1e-6)


def test_two_dimensional_closed_form_and_azimuth():
    k = RotatedAnisotropicKernel(2).double()
    k.rotation = torch.tensor([0.3], dtype=torch.float64)
    c, s = math.cos(0.3), math.sin(0.3)
    assert torch.equal(k.rotation_matrix, torch.tensor([[c, -s], [s, c]], dtype=torch.float64))
    # moving by t along column i changes r^2 by (t / l_i)^2
    k.lengthscale = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    for i, li in enumerate((0.5, 2.0)):
        x1 = (0.7 * k.rotation_matrix[:, i]).unsqueeze(0).detach()
        torch.testing.assert_close(
            dense(k, x0, x1).detach(), torch.tensor([[math.exp(-0.5 * (0.7 / li) ** 2)]]).double()
        )


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_dim3_equals_so3_kernel_values_and_gradients(nu, dtype):
    a = RotatedAnisotropicKernel(3, nu).to(dtype)
    b = SO3AnisotropicKernel(nu).to(dtype)
    w = torch.tensor([0.4, -1.1, 2.0], dtype=dtype)
    ls = torch.tensor([[0.3, 0.9, 1.7]], dtype=dtype)
    for k in (a, b):
        k.rotation, k.lengthscale = w, ls
    x1, x2 = rand_x(10, 3, dtype=dtype, seed=4), rand_x(8, 3, dtype=dtype, seed=5)
    C = torch.randn(10, 8, generator=torch.Generator().manual_seed(6), dtype=dtype)
    Ka, Kb = dense(a, x1, x2), dense(b, x1, x2)
    assert torch.equal(Ka, Kb)
    (Ka * C).sum().backward()
    (Kb * C).sum().backward()
    assert torch.equal(a.raw_rotation.grad, b.raw_rotation.grad)
    assert torch.equal(a.raw_lengthscale.grad, b.raw_lengthscale.grad)
    assert isinstance(b, RotatedAnisotropicKernel) and b.dim == 3


def _ard(nu, dim, dtype):
    k = RBFKernel(ard_num_dims=dim) if nu is None else MaternKernel(nu=nu, ard_num_dims=dim)
    return k.to(dtype)


@pytest.mark.parametrize("dim", [2, 4, 6])
@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_rotation_zero_equals_gpytorch_ard(dim, nu, dtype):
    ours, ard = RotatedAnisotropicKernel(dim, nu).to(dtype), _ard(nu, dim, dtype)
    ls = torch.linspace(0.3, 1.7, dim, dtype=dtype).unsqueeze(0)
    ours.lengthscale = ls
    ard.lengthscale = ls
    x1, x2 = rand_x(12, dim, dtype=dtype, seed=11), rand_x(9, dim, dtype=dtype, seed=12)
    C = torch.randn(12, 9, generator=torch.Generator().manual_seed(13), dtype=dtype)
    K_ours, K_ard = dense(ours, x1, x2), dense(ard, x1, x2)
    torch.testing.assert_close(K_ours, K_ard, **KTOL[dtype])
    (K_ours * C).sum().backward()
    (K_ard * C).sum().backward()
    torch.testing.assert_close(ours.raw_lengthscale.grad, ard.raw_lengthscale.grad, **GTOL[dtype])
    assert torch.isfinite(ours.raw_rotation.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(dense(ours, x1), dense(ard, x1), **KTOL[dtype])


def test_rotation_gradient_matches_finite_differences():
    k = make_kernel(4, 2.5, seed=7)
    x1, x2 = rand_x(6, 4, seed=8), rand_x(5, 4, seed=9)
    w = k.rotation.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: dense(_with_rotation(k, v), x1, x2).sum(), (w,))


def _with_rotation(k, v):
    """A functional copy of ``k`` whose rotation is the differentiable tensor ``v``."""

    class _K(RotatedAnisotropicKernel):
        @property
        def rotation(self):
            return v

    out = _K(k.dim, k.nu).to(v.dtype)
    out.lengthscale = k.lengthscale.detach()
    return out


@pytest.mark.parametrize("dim", [2, 4, 6])
@pytest.mark.parametrize("nu", [None, 2.5], ids=["rbf", "matern52"])
def test_equivariance(dim, nu, dtype):
    # k_R(Q x, Q x') = k_{Q^T R}(x, x'); rows are points, so Q x is x @ Q^T.
    for seed in range(2):
        k = make_kernel(dim, nu, dtype, seed=20 + seed)
        Q = sod.random_rotation(dim, generator=torch.Generator().manual_seed(30 + seed), dtype=torch.float64).to(dtype)
        k2 = make_kernel(dim, nu, dtype, seed=20 + seed)
        k2.rotation = sod.log_map((Q.T.double() @ k.rotation_matrix.double()).detach()).to(dtype)
        x1, x2 = rand_x(8, dim, dtype=dtype, seed=40 + seed), rand_x(6, dim, dtype=dtype, seed=50 + seed)
        with torch.no_grad():
            lhs, rhs = dense(k, x1 @ Q.T, x2 @ Q.T), dense(k2, x1, x2)
            torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)
            k3 = make_kernel(dim, nu, dtype, seed=20 + seed)
            k3.rotation = sod.log_map((Q.double() @ k.rotation_matrix.double()).detach()).to(dtype)
            assert not torch.allclose(lhs, dense(k3, x1, x2), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------ batches, slicing, state
def test_batch_kernel_equals_individual_kernels_and_getitem(dtype):
    k = make_kernel(4, 1.5, dtype, batch_shape=(3, 2), seed=3)
    x = rand_x(3, 2, 7, 4, dtype=dtype, seed=4)
    with torch.no_grad():
        K = dense(k, x)
        for i in range(3):
            for j in range(2):
                kij = k[i, j]
                assert kij.rotation.shape == (6,) and kij.lengthscale.shape == (1, 4)
                torch.testing.assert_close(dense(kij, x[i, j]), K[i, j], **KTOL[dtype])
        assert k[1].batch_shape == (2,) and k[1].rotation.shape == (2, 6)
    assert k.rotation_matrix.shape == (3, 2, 4, 4) and k.metric.shape == (3, 2, 4, 4)
    l_c, _ = k.canonical()
    assert l_c.shape == (3, 2, 4) and bool((l_c[..., 1:] >= l_c[..., :-1]).all())
    torch.testing.assert_close(
        sod.exp_map(k.rotation, 4) @ torch.diag_embed(k.lengthscale.squeeze(-2) ** -2) @ sod.exp_map(k.rotation, 4).mT,
        k.metric,
    )


def test_scale_kernel_sum_product_and_active_dims():
    k = ScaleKernel(make_kernel(2, 2.5, active_dims=(0, 2))) * RBFKernel(active_dims=(1,)).double()
    x = rand_x(10, 3, seed=5)
    K = dense(k, x)
    assert K.shape == (10, 10) and torch.isfinite(K).all()
    assert torch.linalg.eigvalsh(K.detach() + 1e-8 * torch.eye(10, dtype=torch.float64)).min() > 0


def test_state_dict_pickle_with_priors():
    k = make_kernel(
        4,
        2.5,
        lengthscale_prior=LogNormalPrior(0.0, 1.0),
        rotation_prior=ShrinkageRotationPrior(4),
        batch_shape=(2,),
    )
    k2 = pickle.loads(pickle.dumps(k))
    x = rand_x(2, 6, 4, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(dense(k2, x), dense(k, x), rtol=0, atol=0)
    names = {name for name, *_ in k2.named_priors()}
    assert names == {"lengthscale_prior", "rotation_prior"}
    fresh = RotatedAnisotropicKernel(4, 2.5, batch_shape=torch.Size([2])).double()
    fresh.load_state_dict({n: v for n, v in k.state_dict().items() if "prior" not in n})
    assert torch.equal(fresh.rotation, k.rotation)


def test_setters_and_initialize(dtype):
    k = RotatedAnisotropicKernel(5).to(dtype)
    assert k.rotation.shape == (10,) and torch.equal(k.rotation, torch.zeros(10, dtype=dtype))
    k.initialize(rotation=torch.arange(10.0) / 10, lengthscale=torch.arange(1.0, 6.0))
    torch.testing.assert_close(k.rotation, (torch.arange(10.0) / 10).to(dtype))
    torch.testing.assert_close(k.lengthscale, torch.arange(1.0, 6.0).to(dtype).unsqueeze(0))
    other = RotatedAnisotropicKernel(5).to(dtype)
    other.rotation = k.rotation  # a Parameter: copied through the setter
    assert torch.equal(other.rotation, k.rotation) and other.raw_rotation is not k.raw_rotation
    kb = RotatedAnisotropicKernel(3, batch_shape=torch.Size([2]))
    kb.rotation = torch.tensor([0.1, 0.2, 0.3])
    assert kb.rotation.shape == (2, 3) and torch.equal(kb.rotation[0], kb.rotation[1])
    assert "dim=5" in repr(k)


def test_sample_from_prior_and_pyro_load_from_samples():
    k = RotatedAnisotropicKernel(
        4, 2.5, rotation_prior=ShrinkageRotationPrior(4), lengthscale_prior=GammaPrior(3.0, 6.0)
    ).double()
    torch.manual_seed(0)
    k.sample_from_prior("rotation_prior")
    assert k.rotation.shape == (6,) and bool((k.rotation != 0).any())
    # gpytorch's fully Bayesian recipe: load S samples into the kernel (parameters gain a leading sample dim).
    S = 5
    samples = {
        "rotation_prior": torch.randn(S, 6, dtype=torch.float64) * 0.3,
        "lengthscale_prior": torch.rand(S, 1, 4, dtype=torch.float64) + 0.5,
    }
    k.pyro_load_from_samples(samples)
    assert k.rotation.shape == (S, 6) and k.lengthscale.shape == (S, 1, 4)
    x = rand_x(7, 4, seed=7)
    with torch.no_grad():
        K = dense(k, x.expand(S, 7, 4))
    for s in range(S):
        ks = RotatedAnisotropicKernel(4, 2.5).double()
        ks.rotation, ks.lengthscale = samples["rotation_prior"][s], samples["lengthscale_prior"][s]
        with torch.no_grad():
            torch.testing.assert_close(K[s], dense(ks, x), **KTOL[torch.float64])
    # outside sample loading the same shape is an error (strict)
    with pytest.raises(ValueError, match="rotation must have shape"):
        RotatedAnisotropicKernel(4).rotation = torch.zeros(5, 6)


def test_botorch_sample_all_priors_and_mll_gradients():
    from botorch.models import SingleTaskGP
    from botorch.optim.utils import sample_all_priors

    X = torch.rand(15, 4, dtype=torch.float64)
    Y = torch.sin(3 * X.sum(-1, keepdim=True))
    base = RotatedAnisotropicKernel(
        4, 2.5, rotation_prior=ShrinkageRotationPrior(4), lengthscale_prior=LogNormalPrior(-1.0, 0.5)
    )
    model = SingleTaskGP(X, Y, covar_module=ScaleKernel(base))
    torch.manual_seed(1)
    sample_all_priors(model)
    assert base.rotation.shape == (6,) and bool((base.rotation != 0).any())
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    loss = -mll(model(X), Y.squeeze(-1))
    loss.backward()
    assert torch.isfinite(base.raw_rotation.grad).all() and base.raw_rotation.grad.abs().sum() > 0


def test_priors_of_every_kind_are_accepted():
    for dim, prior in (
        (2, HaarAnglePrior()),
        (5, GaussianLieAlgebraPrior(5, 0.3)),
        (5, NormalPrior(0.0, 1.0)),  # scalar prior: applies to each coordinate
        (3, GaussianLieAlgebraPrior(3, batch_shape=(2,))),
    ):
        bs = prior.batch_shape
        k = RotatedAnisotropicKernel(dim, rotation_prior=prior, batch_shape=bs)
        assert torch.isfinite(k.named_priors().__next__()[2].log_prob(k.rotation)).all()


# ------------------------------------------------------------------------------------------ validation
def test_constructor_errors():
    with pytest.raises(ValueError, match="dim must be >= 2"):
        RotatedAnisotropicKernel(1)
    with pytest.raises(TypeError, match="dim must be an int"):
        RotatedAnisotropicKernel(2.0)
    with pytest.raises(ValueError, match="active_dims must list exactly 4 input columns"):
        RotatedAnisotropicKernel(4, active_dims=(0, 1, 2))
    with pytest.raises(ValueError, match="nu must be"):
        RotatedAnisotropicKernel(4, nu=3.5)
    with pytest.raises(TypeError, match="rotation_prior"):
        RotatedAnisotropicKernel(4, rotation_prior="haar")


def test_prior_shape_errors_name_the_prior_and_shapes():
    with pytest.raises(ValueError, match=r"rotation_prior has event_shape \(3,\).*\(6,\)"):
        RotatedAnisotropicKernel(4, rotation_prior=GaussianLieAlgebraPrior(3))
    with pytest.raises(ValueError, match=r"rotation_prior has batch_shape \(3,\).*\(2, 6\)"):
        RotatedAnisotropicKernel(4, rotation_prior=GaussianLieAlgebraPrior(4, batch_shape=(3,)), batch_shape=(2,))
    with pytest.raises(ValueError, match=r"lengthscale_prior has batch_shape \(3,\).*\(1, 4\)"):
        RotatedAnisotropicKernel(4, lengthscale_prior=GammaPrior(torch.ones(3), torch.ones(3)))


def test_input_errors_name_the_kernel_and_shape():
    k = RotatedAnisotropicKernel(4)
    with pytest.raises(ValueError, match=r"RotatedAnisotropicKernel works on 4-D inputs.*\(5, 3\)"):
        k(torch.rand(5, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        k(torch.full((5, 4), float("nan"))).to_dense()  # the NaN scan runs when the lazy kernel is evaluated


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_lengthscale_raises(bad):
    k = RotatedAnisotropicKernel(3)
    with pytest.raises(ValueError, match="lengthscale must be positive and finite"):
        k.lengthscale = torch.tensor([[1.0, bad, 1.0]])
    with pytest.raises(ValueError, match="lengthscale must be positive and finite"):
        k.initialize(lengthscale=bad)
    assert torch.isfinite(k.lengthscale).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rotation_and_raw_values_raise(bad):
    k = RotatedAnisotropicKernel(4)
    with pytest.raises(ValueError, match="rotation must be finite"):
        k.rotation = torch.tensor([0.0, bad, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="rotation must be finite"):
        k.initialize(raw_rotation=torch.full((6,), bad))
    with pytest.raises(ValueError, match="lengthscale must be finite"):
        k.initialize(raw_lengthscale=bad)
    sd = k.state_dict()
    for name in ("raw_rotation", "raw_lengthscale"):
        bad_sd = dict(sd)
        bad_sd[name] = torch.full_like(sd[name], bad)
        with pytest.raises(ValueError, match=f"{name[4:]} must be finite"):
            k.load_state_dict(bad_sd)
    assert torch.isfinite(k.rotation).all() and torch.isfinite(k.lengthscale).all()


def test_shape_errors_name_parameter_and_both_shapes():
    for bs in ((), (2,)):
        k = RotatedAnisotropicKernel(3, batch_shape=torch.Size(bs))
        with pytest.raises(ValueError, match=rf"rotation must have shape \(\*batch_shape, 3\), got \(4, 3\); .*{bs}"):
            k.rotation = torch.zeros(4, 3)
        with pytest.raises(ValueError, match=r"lengthscale must have shape \(\*batch_shape, 1, 3\), got \(2,\)"):
            k.lengthscale = torch.ones(2)
        with pytest.raises(ValueError, match=r"raw_rotation must have shape .* got \(5,\)"):
            k.initialize(raw_rotation=torch.zeros(5))
    k = RotatedAnisotropicKernel(3, batch_shape=torch.Size([3]))
    with pytest.raises(ValueError, match=r"rotation must have shape \(\*batch_shape, 3\), got \(2, 3\)"):
        k.rotation = torch.zeros(2, 3)


# ------------------------------------------------------------------------------------------ recovery (slow)
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_map_recovers_planar_azimuth(seed):
    """d = 2, n = 200 noisy draws of a Matern-5/2 field rotated by 30 degrees (length-scales 0.08, 0.4, unit square):
    the best of an identity (ARD) start and 4 Haar starts, each fitted by BoTorch's L-BFGS-B with the default
    shrinkage rotation prior, recovers the principal directions within 6 degrees and beats ARD's held-out RMSE by a
    factor <= 0.75 (the issue-17 targets). Seeded; about 10 s per seed on one core."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from gpytorch_so3.priors import default_sod_rotation_prior

    g = torch.Generator().manual_seed(seed)
    d, n, ls_true = 2, 200, torch.tensor([[0.08, 0.4]], dtype=torch.float64)
    # An oblique truth (30 degrees; 45 is the most oblique in 2-D): near-axis-aligned truths leave ARD nothing to lose.
    R_true = sod.exp_map(torch.tensor([math.pi / 6], dtype=torch.float64), 2)
    truth = RotatedAnisotropicKernel(d, 2.5).double()
    truth.lengthscale, truth.rotation = ls_true, sod.log_map(R_true)
    X = torch.rand(n + 200, d, generator=g, dtype=torch.float64)
    with torch.no_grad():
        K = truth(X).to_dense() + 1e-6 * torch.eye(n + 200, dtype=torch.float64)
        f = torch.linalg.cholesky(K) @ torch.randn(n + 200, 1, generator=g, dtype=torch.float64)
    Y = f + 0.05 * torch.randn(n + 200, 1, generator=g, dtype=torch.float64)
    best = None
    for restart in range(5):
        base = RotatedAnisotropicKernel(
            d, 2.5, rotation_prior=default_sod_rotation_prior(d), lengthscale_prior=LogNormalPrior(math.log(0.5), 1.0)
        ).double()
        model = SingleTaskGP(X[:n], Y[:n], covar_module=ScaleKernel(base))
        R0 = torch.eye(d, dtype=torch.float64) if restart == 0 else sod.random_rotation(d, generator=g).double()
        base.rotation, base.lengthscale = sod.log_map(R0), 0.5
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll)
        model.train()
        with torch.no_grad():
            value = float(mll(model(X[:n]), model.train_targets))
        if best is None or value > best[0]:
            best = (value, model)
    model = best[1].eval()
    l_fit, R_fit = model.covar_module.base_kernel.canonical()
    _, R_ref = sod.canonicalize(ls_true[0], R_true)
    angles = torch.rad2deg(torch.acos((R_fit * R_ref).sum(0).abs().clamp(max=1.0)))
    assert float(angles.max()) < 6.0, (angles, l_fit)
    ard = SingleTaskGP(X[:n], Y[:n])
    fit_gpytorch_mll(ExactMarginalLogLikelihood(ard.likelihood, ard))
    with torch.no_grad():
        rmse = (model.posterior(X[n:]).mean - f[n:]).pow(2).mean().sqrt()
        rmse_ard = (ard.posterior(X[n:]).mean - f[n:]).pow(2).mean().sqrt()
    assert float(rmse / rmse_ard) <= 0.75
