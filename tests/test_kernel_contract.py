"""Both kernels through gpytorch's shipped contract suite ``BaseKernelTestCase``.

The suite's data factories default to 10-D / 2-D inputs and its active-dims tests select 4 and 6 columns; a 3-D
kernel overrides them with 3-D data and 3-column selections, everything else runs unchanged. Kernels are
created with random (non-zero) rotations / off-diagonal Cholesky entries and distinct length-scales per batch
element, so that batching and ``kernel[i]`` slicing are tested on parameters that differ.
"""

from __future__ import annotations

import unittest
from unittest.mock import MagicMock, patch

import torch
from gpytorch.test.base_kernel_test_case import BaseKernelTestCase

from gpytorch_so3 import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.kernels import keops as keops_mod
from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel


class _Anisotropic3DContract(BaseKernelTestCase):
    seed = 0  # BaseTestCase seeds torch with it in setUp and restores the RNG state in tearDown
    nu = None

    def _randomize(self, kernel):
        raise NotImplementedError

    def create_kernel_no_ard(self, **kwargs):
        kernel = self.kernel_class(nu=self.nu, **kwargs)
        self._randomize(kernel)
        return kernel

    def create_kernel_ard(self, num_dims, **kwargs):
        # The suite asks for 2 ARD dims because its default data are 2-D; these kernels are ARD in their three
        # principal axes by construction and the data factories below are 3-D.
        return self.create_kernel_no_ard(**kwargs)

    def create_data_no_batch(self):
        return torch.randn(50, 3)

    def create_data_single_batch(self):
        return torch.randn(2, 10, 3)

    def create_data_double_batch(self):
        return torch.randn(3, 2, 50, 3)

    def _check_active_dims(self, active_dims, width):
        kernel = self.create_kernel_no_ard(active_dims=active_dims)
        x = torch.randn(50, width)
        covar_mat = kernel(x).evaluate_kernel().to_dense()
        kernel_basic = self.create_kernel_no_ard()
        # Same parameters (gpytorch keeps active_dims as a buffer in the state_dict: leave it out).
        kernel_basic.load_state_dict({k: v for k, v in kernel.state_dict().items() if k != "active_dims"})
        covar_mat_actual = kernel_basic(x[:, list(active_dims)]).evaluate_kernel().to_dense()
        self.assertAllClose(covar_mat, covar_mat_actual, rtol=1e-5, atol=1e-6)
        # Not a vacuous comparison: the selected columns matter.
        other = kernel_basic(x[:, :3] if list(active_dims) != [0, 1, 2] else x[:, 3:6]).evaluate_kernel().to_dense()
        self.assertFalse(torch.allclose(covar_mat, other, rtol=1e-3, atol=1e-3))

    def test_active_dims_list(self):
        self._check_active_dims([0, 2, 4], width=6)

    def test_active_dims_range(self):
        self._check_active_dims(list(range(3, 6)), width=8)


class _SO3Contract(_Anisotropic3DContract):
    kernel_class = SO3AnisotropicKernel

    def _randomize(self, kernel):
        kernel.rotation = torch.randn(*kernel.batch_shape, 3)
        kernel.lengthscale = torch.rand(*kernel.batch_shape, 1, 3) + 0.5


class _FullSPDContract(_Anisotropic3DContract):
    kernel_class = FullSPDKernel

    def _randomize(self, kernel):
        kernel.cholesky_diag = torch.rand(*kernel.batch_shape, 3) + 0.5
        kernel.initialize(cholesky_offdiag=torch.randn(*kernel.batch_shape, 3) * 0.5)


class TestSO3KernelRBF(_SO3Contract, unittest.TestCase):
    nu = None


class TestSO3KernelMatern12(_SO3Contract, unittest.TestCase):
    nu = 0.5


class TestSO3KernelMatern32(_SO3Contract, unittest.TestCase):
    nu = 1.5


class TestSO3KernelMatern52(_SO3Contract, unittest.TestCase):
    nu = 2.5


class TestFullSPDKernelRBF(_FullSPDContract, unittest.TestCase):
    nu = None


class TestFullSPDKernelMatern12(_FullSPDContract, unittest.TestCase):
    nu = 0.5


class TestFullSPDKernelMatern32(_FullSPDContract, unittest.TestCase):
    nu = 1.5


class TestFullSPDKernelMatern52(_FullSPDContract, unittest.TestCase):
    nu = 2.5


# ----------------------------------------------------------------------------------------------------------------
# The KeOps kernel through the same contract suite, once on its dense path (automatic mode, small data) and once on
# its KeOps path with pykeops' LazyTensor replaced by an identity wrapper (so it runs without a KeOps compiler).
# ----------------------------------------------------------------------------------------------------------------
class TestKeOpsSO3KernelDensePath(_SO3Contract, unittest.TestCase):
    kernel_class = KeOpsSO3AnisotropicKernel
    nu = 2.5


class TestKeOpsSO3KernelKeOpsPath(_SO3Contract, unittest.TestCase):
    nu = 1.5

    def kernel_class(self, **kwargs):  # the suite calls kernel_class(nu=..., **kwargs)
        return KeOpsSO3AnisotropicKernel(use_keops=True, **kwargs)

    def setUp(self):
        super().setUp()
        self._lazy = MagicMock(wraps=lambda x: x)
        patches = [patch.object(keops_mod, "LazyTensor", self._lazy), patch.object(keops_mod, "_HAS_KEOPS", True)]
        for p in patches:
            p.start()
            self.addCleanup(p.stop)

    def tearDown(self):
        # Not vacuous: every test that evaluates a matrix with two or more rows on each side went through KeOps.
        called = self._lazy.called
        super().tearDown()
        evaluating = (
            "test_no_batch_kernel_single_batch_x_no_ard",
            "test_single_batch_kernel_single_batch_x_no_ard",
            "test_no_batch_kernel_double_batch_x_no_ard",
            "test_active_dims_list",
        )
        if self._testMethodName in evaluating:
            assert called, f"{self._testMethodName}: the KeOps branch did not run"
