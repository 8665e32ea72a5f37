"""KeOpsRotatedAnisotropicKernel: the KeOps code path with a mocked LazyTensor (runs without pykeops) against the
dense RotatedAnisotropicKernel, values and gradients for d = 2, 5; real pykeops on CPU under the ``keops`` marker;
the fallback without pykeops."""

from __future__ import annotations

import warnings
from unittest.mock import MagicMock

import pytest
import torch
from linear_operator.operators import KernelLinearOperator

from gpytorch_so3.exceptions import KeOpsFallbackWarning
from gpytorch_so3.kernels import keops as keops_mod
from gpytorch_so3.kernels.keops import KeOpsRotatedAnisotropicKernel
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel

# Correlations are <= 1: absolute tolerances. The dense path uses gpytorch's expanded-norm distances, the KeOps
# formula explicit differences, and sqrt(r^2 + 1e-20) in the Matern branches: differences ~1e-14 in float64.
ATOL = 1e-9


def _pair(dim, nu, use_keops=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    kk = KeOpsRotatedAnisotropicKernel(dim, nu, use_keops=use_keops).double()
    kd = RotatedAnisotropicKernel(dim, nu).double()
    w = torch.randn(dim * (dim - 1) // 2, generator=g, dtype=torch.float64)
    ls = torch.rand(1, dim, generator=g, dtype=torch.float64) + 0.3
    for k in (kk, kd):
        k.rotation, k.lengthscale = w, ls
    return kk, kd


@pytest.fixture
def mock_lazy_tensor(monkeypatch):
    """Identity LazyTensor (dense torch ops) and "pykeops importable", as in tests/test_keops.py."""
    monkeypatch.setattr(keops_mod, "_HAS_KEOPS", True)
    mock = MagicMock(wraps=lambda x: x)
    monkeypatch.setattr(keops_mod, "LazyTensor", mock)
    return mock


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("nu", [None, 0.5, 2.5], ids=["rbf", "matern05", "matern25"])
def test_mocked_values_and_gradients_match_dense(mock_lazy_tensor, dim, nu):
    kk, kd = _pair(dim, nu)
    x1, x2 = torch.rand(40, dim, dtype=torch.float64), torch.rand(30, dim, dtype=torch.float64)
    op = kk(x1, x2).evaluate_kernel()
    assert isinstance(op, KernelLinearOperator)
    torch.testing.assert_close(op.to_dense(), kd(x1, x2).to_dense(), rtol=0, atol=ATOL)
    torch.testing.assert_close(kk(x1, diag=True), kd(x1, diag=True), rtol=0, atol=ATOL)
    v = torch.randn(40, 2, dtype=torch.float64)
    params = lambda k: [k.raw_lengthscale, k.raw_rotation]
    g_k = torch.autograd.grad((kk(x1) @ v).pow(2).sum(), params(kk))
    g_d = torch.autograd.grad((kd(x1) @ v).pow(2).sum(), params(kd))
    assert mock_lazy_tensor.called
    for a, b in zip(g_k, g_d, strict=True):
        assert torch.count_nonzero(b) > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_small_blocks_and_use_keops_false_are_dense(mock_lazy_tensor):
    kk, kd = _pair(3, 1.5, use_keops=False)
    x = torch.rand(20, 3, dtype=torch.float64)
    out = kk(x).evaluate_kernel()
    torch.testing.assert_close(out.to_dense(), kd(x).to_dense(), rtol=0, atol=ATOL)
    assert not mock_lazy_tensor.called
    with pytest.raises(ValueError, match="works on 3-D inputs"):
        KeOpsRotatedAnisotropicKernel(3, use_keops=True)(torch.rand(20, 4)).to_dense()
    with pytest.raises(TypeError, match="use_keops"):
        KeOpsRotatedAnisotropicKernel(3, use_keops="yes")
    assert "use_keops=False" in repr(kk) and "dim=3" in repr(kk)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(keops_mod, "_HAS_KEOPS", False)
    monkeypatch.setattr(keops_mod, "_FALLBACK_WARNED", False)
    k = KeOpsRotatedAnisotropicKernel(4, use_keops=True)  # no warning at construction: only when KeOps would run
    kd = RotatedAnisotropicKernel(4)
    x = torch.rand(30, 4)
    with pytest.warns(KeOpsFallbackWarning, match="fall back to the dense path"):
        out = k(x).to_dense()
    torch.testing.assert_close(out, kd(x).to_dense(), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k(x).to_dense()  # once per process


@pytest.mark.keops
@pytest.mark.skipif(not keops_mod.keops_available(), reason="pykeops not installed")
def test_real_keops_matches_dense():
    # Real KeOps on CPU: compiles one reduction per formula and dimension on a cold cache (~5-8 s each).
    kk, kd = _pair(5, 2.5)
    x = torch.rand(300, 5, dtype=torch.float64)
    v = torch.randn(300, 2, dtype=torch.float64)
    torch.testing.assert_close(kk(x) @ v, kd(x).to_dense() @ v, rtol=0, atol=1e-10)
