"""FullSPDKernel: Cholesky parametrisation, metric, principal axes, equality with the SO(3) kernel, reference values."""

from __future__ import annotations

import math
import pickle

import gpytorch
import numpy as np
import pytest
import torch
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.priors import LogNormalPrior, NormalPrior
from reference import batched_gram, gram, to_np

from gpytorch_so3 import FullSPDKernel, SO3AnisotropicKernel, so3

NUS = [None, 0.5, 1.5, 2.5]
NU_IDS = ["rbf", "matern12", "matern32", "matern52"]
KTOL = {torch.float32: {"rtol": 0.0, "atol": 1e-5}, torch.float64: {"rtol": 0.0, "atol": 1e-12}}


def make_kernel(nu=None, dtype=torch.float64, batch_shape=(), seed=0, **kwargs) -> FullSPDKernel:
    g = torch.Generator().manual_seed(seed)
    k = FullSPDKernel(nu=nu, batch_shape=torch.Size(batch_shape), **kwargs).to(dtype)
    # Raw (pre-constraint) diagonal of either sign: the constraint must make it positive.
    k.initialize(raw_cholesky_diag=torch.randn(*batch_shape, 3, generator=g, dtype=torch.float64).to(dtype))
    k.initialize(cholesky_offdiag=torch.randn(*batch_shape, 3, generator=g, dtype=torch.float64).to(dtype))
    return k


def rand_x(*shape, dtype=torch.float64, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2).to(dtype)


def dense(k, x1, x2=None, **kw):
    out = k(x1, x2, **kw)
    return out if torch.is_tensor(out) else out.to_dense()


def ref_L(k: FullSPDKernel) -> np.ndarray:
    """``L`` assembled by hand from the documented parameter layout: diag, then (1,0), (2,0), (2,1)."""
    d = to_np(k.cholesky_diag).reshape(*k.batch_shape, 3)
    o = to_np(k.cholesky_offdiag).reshape(*k.batch_shape, 3)
    L = np.zeros((*k.batch_shape, 3, 3))
    for i in range(3):
        L[..., i, i] = d[..., i]
    L[..., 1, 0], L[..., 2, 0], L[..., 2, 1] = o[..., 0], o[..., 1], o[..., 2]
    return L


@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)], ids=["nobatch", "2", "2x3"])
def test_cholesky_factor_lower_triangular_positive_diagonal(batch_shape):
    k = make_kernel(None, torch.float64, batch_shape, seed=1)
    # Negative raw values: the constraint has work to do.
    k.initialize(raw_cholesky_diag=torch.tensor([-1.5, 0.3, -8.0], dtype=torch.float64).expand(*batch_shape, 3))
    L = k.cholesky_factor
    assert L.shape == (*batch_shape, 3, 3)
    assert torch.equal(L, L.tril())
    assert (L.diagonal(dim1=-2, dim2=-1) > 0).all()
    np.testing.assert_array_equal(to_np(L), ref_L(k))
    assert torch.equal(k.whitening_matrix, L)


@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)], ids=["nobatch", "2", "2x3"])
def test_metric_is_L_LT(batch_shape):
    k = make_kernel(None, torch.float64, batch_shape, seed=2)
    L = ref_L(k)
    np.testing.assert_allclose(to_np(k.metric), L @ np.swapaxes(L, -1, -2), rtol=1e-14, atol=1e-14)
    assert k.metric.shape == (*batch_shape, 3, 3)
    assert (torch.linalg.eigvalsh(k.metric) > 0).all()


def test_default_is_gpytorch_default_rbf():
    # Initial L = I / ln 2: the metric of gpytorch's default length-scale softplus(0) = ln 2.
    k = FullSPDKernel()
    torch.testing.assert_close(k.cholesky_factor, torch.eye(3) / math.log(2.0))
    x = rand_x(7, 3, dtype=torch.float32, seed=3)
    torch.testing.assert_close(dense(k, x), dense(RBFKernel(ard_num_dims=3), x), rtol=0, atol=1e-6)


def test_principal_vs_eigendecomposition():
    k = make_kernel(None, torch.float64, (4,), seed=4)
    ls, R = k.canonical()
    assert ls.shape == (4, 3) and R.shape == (4, 3, 3) and not ls.requires_grad
    M = to_np(k.metric)
    for b in range(4):
        evals, evecs = np.linalg.eigh(M[b])  # ascending eigenvalues = descending length-scales
        np.testing.assert_allclose(to_np(ls[b]), np.sort(evals**-0.5), rtol=1e-10)
        for j in range(3):
            # Column j of R (length-scale ls[j]) spans the eigenvector of eigenvalue ls[j]^-2, up to sign.
            v = evecs[:, 2 - j]
            assert abs(abs(float(to_np(R[b, :, j]) @ v)) - 1.0) < 1e-10
        np.testing.assert_allclose(
            to_np(R[b]) @ np.diag(to_np(ls[b]) ** -2) @ to_np(R[b]).T, M[b], rtol=1e-10, atol=1e-12
        )
        assert abs(np.linalg.det(to_np(R[b])) - 1.0) < 1e-12


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_equals_so3_kernel_with_cholesky_of_its_metric(nu, dtype):
    # Whitening z = x L gives r^2 = d^T L L^T d, so L = cholesky(M_so3) reproduces the SO(3) kernel exactly.
    for seed in range(3):
        g = torch.Generator().manual_seed(10 + seed)
        ks = SO3AnisotropicKernel(nu=nu).to(dtype)
        ks.rotation = (torch.randn(3, generator=g, dtype=torch.float64) * 1.5).to(dtype)
        ks.lengthscale = (torch.rand(1, 3, generator=g, dtype=torch.float64) + 0.3).to(dtype)
        L = torch.linalg.cholesky(ks.metric.detach().double())
        kf = FullSPDKernel(nu=nu).to(dtype)
        kf.cholesky_diag = L.diagonal().to(dtype)
        kf.initialize(cholesky_offdiag=L[[1, 2, 2], [0, 0, 1]].to(dtype))
        torch.testing.assert_close(
            kf.metric,
            ks.metric,
            rtol=1e-5 if dtype == torch.float32 else 1e-12,
            atol=1e-5 if dtype == torch.float32 else 1e-12,
        )
        x1, x2 = rand_x(9, 3, dtype=dtype, seed=20 + seed), rand_x(6, 3, dtype=dtype, seed=30 + seed)
        torch.testing.assert_close(dense(kf, x1, x2), dense(ks, x1, x2), **KTOL[dtype])
        torch.testing.assert_close(dense(kf, x1), dense(ks, x1), **KTOL[dtype])
        # And principal() recovers the SO(3) kernel's canonical parameters.
        lf, Rf = kf.canonical()
        lc, Rc = ks.canonical()
        tol = {"rtol": 1e-3, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
        torch.testing.assert_close(lf, lc, **tol)
        torch.testing.assert_close(Rf, Rc, **tol)


BATCH_CASES = [((), ()), ((), (2,)), ((2,), ()), ((2,), (3, 2))]
BATCH_IDS = ["k-x-", "k-x2", "k2-x-", "k2-x3x2"]


@pytest.mark.parametrize(("kernel_batch", "x_batch"), BATCH_CASES, ids=BATCH_IDS)
@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_values_match_reference(nu, dtype, kernel_batch, x_batch):
    k = make_kernel(nu, dtype, kernel_batch, seed=40)
    x1, x2 = rand_x(*x_batch, 6, 3, dtype=dtype, seed=41), rand_x(*x_batch, 5, 3, dtype=dtype, seed=42)
    batch = torch.broadcast_shapes(torch.Size(kernel_batch), torch.Size(x_batch))
    L = ref_L(k)
    Ms = np.broadcast_to(L @ np.swapaxes(L, -1, -2), (*batch, 3, 3))
    ref = batched_gram(np.broadcast_to(to_np(x1), (*batch, 6, 3)), np.broadcast_to(to_np(x2), (*batch, 5, 3)), Ms, nu)
    K = dense(k, x1, x2)
    assert K.shape == (*batch, 6, 5) and K.dtype == dtype
    np.testing.assert_allclose(to_np(K), ref, **KTOL[dtype])


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_diag_and_psd(nu, dtype):
    k = make_kernel(nu, dtype, seed=50)
    x1, x2 = rand_x(8, 3, dtype=dtype, seed=51), rand_x(8, 3, dtype=dtype, seed=52)
    L = ref_L(k)
    np.testing.assert_allclose(to_np(k(x1, x2, diag=True)), gram(x1, x2, L @ L.T, nu, diag=True), **KTOL[dtype])
    torch.testing.assert_close(k(x1, diag=True), torch.ones(8, dtype=dtype), rtol=0, atol=3e-15)
    x = rand_x(50, 3, dtype=dtype, seed=53)
    with torch.no_grad():
        K = dense(k, x).double()
    # Same bound as for the SO(3) kernel: n * 100 * eps (Weyl, entry errors ~25 eps).
    assert torch.linalg.eigvalsh(0.5 * (K + K.T)).min() >= -50 * 100 * torch.finfo(dtype).eps


def test_setters_and_initialize():
    k = FullSPDKernel(nu=1.5, batch_shape=torch.Size([2]))
    k.cholesky_diag = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(k.cholesky_diag, torch.tensor([[1.0, 2.0, 3.0]] * 2))
    k.cholesky_diag = 0.5
    torch.testing.assert_close(k.cholesky_diag, torch.full((2, 3), 0.5))
    k.initialize(cholesky_offdiag=torch.tensor([0.1, 0.2, 0.3]), cholesky_diag=torch.tensor([2.0, 1.0, 1.0]))
    torch.testing.assert_close(k.cholesky_factor[1], torch.tensor([[2.0, 0.0, 0.0], [0.1, 1.0, 0.0], [0.2, 0.3, 1.0]]))


def test_state_dict_and_pickle_with_priors():
    k = make_kernel(
        2.5,
        torch.float32,
        (2,),
        seed=60,
        cholesky_diag_prior=LogNormalPrior(0.0, 1.0),
        cholesky_offdiag_prior=NormalPrior(0.0, 1.0),
    )
    x = rand_x(6, 3, dtype=torch.float32, seed=61)
    k2 = pickle.loads(pickle.dumps(k))
    assert torch.equal(dense(k, x), dense(k2, x))
    assert [n for n, *_ in k2.named_priors()] == ["cholesky_diag_prior", "cholesky_offdiag_prior"]
    k3 = FullSPDKernel(
        nu=2.5,
        batch_shape=torch.Size([2]),
        cholesky_diag_prior=LogNormalPrior(0.0, 1.0),
        cholesky_offdiag_prior=NormalPrior(0.0, 1.0),
    )
    assert not torch.equal(dense(k3, x), dense(k, x))
    k3.load_state_dict(k.state_dict())
    assert torch.equal(dense(k3, x), dense(k, x))


def test_priors_sample():
    import pyro

    k = FullSPDKernel(
        batch_shape=torch.Size([3]),
        cholesky_diag_prior=LogNormalPrior(0.0, 1.0),
        cholesky_offdiag_prior=NormalPrior(0.0, 1.0),
    )
    torch.manual_seed(0)
    k.sample_from_prior("cholesky_offdiag_prior")
    assert k.cholesky_offdiag.shape == (3, 3) and k.cholesky_offdiag.abs().sum() > 0
    pyro.set_rng_seed(0)
    trace = pyro.poutine.trace(k.pyro_sample_from_prior).get_trace()
    sites = {n: s["value"] for n, s in trace.nodes.items() if s["type"] == "sample"}
    assert sites["cholesky_diag_prior"].shape == (3, 3) and sites["cholesky_offdiag_prior"].shape == (3, 3)
    new = trace.nodes["_RETURN"]["value"]
    torch.testing.assert_close(new.cholesky_diag, sites["cholesky_diag_prior"])
    torch.testing.assert_close(new.cholesky_offdiag, sites["cholesky_offdiag_prior"])


def test_exact_gp_gradients_reach_cholesky(seed):
    x = torch.rand(30, 3, dtype=torch.float64)
    y = torch.sin(5 * (x[:, 0] + x[:, 1])) + 0.05 * torch.randn(30, dtype=torch.float64)

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = ScaleKernel(FullSPDKernel(nu=2.5))

        def forward(self, t):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(t), self.covar_module(t))

    model = GP().double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        kf = model.covar_module.base_kernel
        assert torch.isfinite(kf.cholesky_offdiag.grad).all() and kf.cholesky_offdiag.grad.abs().sum() > 0
        assert torch.isfinite(kf.raw_cholesky_diag.grad).all()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_inputs():
    k = ScaleKernel(FullSPDKernel(nu=0.5))
    x = torch.rand(4, 3)
    x[1, 1] = float("nan")
    with pytest.raises(ValueError, match="FullSPDKernel: x1 contains NaN or inf"):
        dense(k, x)
    with pytest.raises(
        ValueError, match=r"FullSPDKernel works on 3-D inputs: x1 must have shape \(\.\.\., n, 3\), got \(4, 5\)"
    ):
        dense(k, torch.rand(4, 5))
    with pytest.raises(TypeError, match=r"inputs are torch\.float64 but the kernel's parameters are torch\.float32"):
        dense(k, torch.rand(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="active_dims must list exactly 3 input columns"):
        FullSPDKernel(active_dims=(0, 1))
    with pytest.raises(ValueError, match="nu must be None"):
        FullSPDKernel(nu=3.0)
    with pytest.raises(ValueError, match="last_dim_is_batch=True has no meaning"):
        FullSPDKernel()(torch.rand(3, 3), last_dim_is_batch=True)
    with pytest.raises(TypeError, match=r"Expected gpytorch\.priors\.Prior for cholesky_diag_prior"):
        FullSPDKernel(cholesky_diag_prior=torch.distributions.LogNormal(0.0, 1.0))
    with pytest.raises(TypeError, match=r"Expected gpytorch\.priors\.Prior for cholesky_offdiag_prior"):
        FullSPDKernel(cholesky_offdiag_prior=torch.distributions.Normal(0.0, 1.0))


def test_active_dims_and_sum():
    X = rand_x(6, 5, seed=70)
    k = make_kernel(1.5, torch.float64, seed=71, active_dims=(4, 0, 2))
    alone = make_kernel(1.5, torch.float64, seed=71)
    torch.testing.assert_close(dense(k, X), dense(alone, X[:, [4, 0, 2]]), rtol=0, atol=1e-14)
    t = RBFKernel(active_dims=(1,)).double()
    torch.testing.assert_close(dense(k + t, X), dense(alone, X[:, [4, 0, 2]]) + dense(t, X))


def test_rotation_of_inputs_matches_rotated_factor():
    # Equivariance in Cholesky form: k_L(Q x, Q x') = k_{L'}(x, x') with L' L'^T = Q^T L L^T Q.
    k = make_kernel(2.5, torch.float64, seed=80)
    Q = so3.random_rotation(generator=torch.Generator().manual_seed(81), dtype=torch.float64)
    L2 = torch.linalg.cholesky(Q.T @ k.metric.detach() @ Q)
    k2 = FullSPDKernel(nu=2.5).double()
    k2.cholesky_diag = L2.diagonal()
    k2.initialize(cholesky_offdiag=L2[[1, 2, 2], [0, 0, 1]])
    x1, x2 = rand_x(7, 3, seed=82), rand_x(5, 3, seed=83)
    torch.testing.assert_close(dense(k, x1 @ Q.T, x2 @ Q.T), dense(k2, x1, x2), rtol=0, atol=1e-12)


def test_repr():
    assert "Matern(nu=0.5)" in repr(FullSPDKernel(nu=0.5))


# ---------------------------------------------------------------------------------------------------------------
# parameter validation (issue 15)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_cholesky_diag_raises(bad):
    k = FullSPDKernel()
    before = k.cholesky_diag.detach().clone()
    with pytest.raises(ValueError, match="FullSPDKernel: cholesky_diag must be positive and finite"):
        k.cholesky_diag = torch.tensor([1.0, bad, 1.0])
    with pytest.raises(ValueError, match="cholesky_diag must be positive and finite"):
        k.initialize(cholesky_diag=bad)
    assert torch.equal(k.cholesky_diag, before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_offdiag_and_raw_values_raise(bad):
    k = FullSPDKernel()
    with pytest.raises(ValueError, match="FullSPDKernel: cholesky_offdiag must be finite"):
        k.initialize(cholesky_offdiag=torch.tensor([0.0, bad, 0.0]))
    with pytest.raises(ValueError, match="cholesky_offdiag must be finite"):
        k.cholesky_offdiag = torch.tensor([bad, 0.0, 0.0])
    with pytest.raises(ValueError, match="cholesky_diag must be finite"):
        k.initialize(raw_cholesky_diag=torch.full((3,), bad))
    for name, public in (("raw_cholesky_diag", "cholesky_diag"), ("cholesky_offdiag", "cholesky_offdiag")):
        sd = k.state_dict()
        sd[name] = torch.full_like(sd[name], bad)
        with pytest.raises(ValueError, match=f"{public} must be finite"):
            k.load_state_dict(sd)
    assert torch.isfinite(k.cholesky_factor).all()


def test_shape_errors_name_parameter_and_both_shapes():
    for bs in ((), (2,)):
        k = FullSPDKernel(batch_shape=torch.Size(bs))
        with pytest.raises(ValueError, match=r"cholesky_diag must have shape \(\*batch_shape, 3\), got \(4, 3\)"):
            k.cholesky_diag = torch.ones(4, 3)
        with pytest.raises(ValueError, match=r"cholesky_offdiag must have shape .* got \(2,\)"):
            k.initialize(cholesky_offdiag=torch.zeros(2))
        with pytest.raises(ValueError, match=r"cholesky_offdiag must have shape .* got \(4, 3\)"):
            k.cholesky_offdiag = torch.zeros(4, 3)
    k = FullSPDKernel()
    k.cholesky_offdiag = torch.tensor([0.1, 0.2, 0.3])  # plain assignment works and copies into the parameter
    assert isinstance(k.cholesky_offdiag, torch.nn.Parameter)
    assert torch.equal(k.cholesky_offdiag.detach(), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"cholesky_diag_prior has batch_shape \(3, 3\).*\(2, 3\)"):
        FullSPDKernel(cholesky_diag_prior=LogNormalPrior(torch.zeros(3, 3), 1.0), batch_shape=torch.Size([2]))
