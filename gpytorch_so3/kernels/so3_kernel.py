r"""The Lie-algebraic anisotropic kernel: three principal length-scales and a rotation ``exp(hat(w))``."""

from __future__ import annotations

from torch import Tensor

from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel

__all__ = ["SO3AnisotropicKernel"]


class SO3AnisotropicKernel(RotatedAnisotropicKernel):
    r"""Stationary kernel on 3-D inputs with a rotated anisotropic metric.

    .. math::
        k(x, x') = \kappa_\nu(r), \qquad r^2 = (x - x')^\top M (x - x'), \qquad
        M = R\, \mathrm{diag}(l)^{-2} R^\top, \qquad R = \exp(\hat w),

    where :math:`\kappa_\nu` is gpytorch's RBF (``nu=None``) or Matern-:math:`\nu` correlation at unit
    length-scale, :math:`l` the three principal length-scales and :math:`w \in \mathfrak{so}(3) \cong
    \mathbb{R}^3` an axis-angle vector mapped to a rotation by Rodrigues' formula [WarriorChakrabarty2026]_.

    Conventions:

    * column ``i`` of :attr:`rotation_matrix` is the principal direction whose length-scale is
      ``lengthscale[..., 0, i]`` (as in GSTools/PyKrige: columns are the main axes);
    * the paper writes the metric as ``R^T D^-2 R``; ours is ``R D^-2 R^T``, so ``w_paper = -w``;
    * with ``rotation = 0`` the kernel equals ``RBFKernel(ard_num_dims=3)`` / ``MaternKernel(nu, ard_num_dims=3)``
      with the same length-scales;
    * ``(l, R)`` and ``(l P, R P)`` for the 24 signed permutations ``P`` with ``det P = 1`` give the same kernel;
      use :func:`gpytorch_so3.so3.canonicalize` to compare fits.

    Like every gpytorch kernel it has unit output-scale; wrap it in :class:`gpytorch.kernels.ScaleKernel`.
    It is :class:`~gpytorch_so3.kernels.rotated_kernel.RotatedAnisotropicKernel` with ``dim`` fixed to 3.

    Example:
        >>> import torch, gpytorch
        >>> k = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel(nu=2.5))
        >>> k.base_kernel.lengthscale = torch.tensor([[0.2, 0.5, 1.0]])
        >>> k.base_kernel.rotation = torch.tensor([0.3, -0.2, 0.9])
        >>> x = torch.rand(10, 3)
        >>> k(x).to_dense().shape
        torch.Size([10, 10])

        Derived matrices (``batch_shape x 3 x 3``) and the canonical form of the parameters:

        >>> import math
        >>> base = SO3AnisotropicKernel()
        >>> base.lengthscale = torch.tensor([[1.0, 0.5, 2.0]])
        >>> base.rotation = torch.tensor([0.0, 0.0, math.pi / 2])  # 90 degrees about z: x -> y, y -> -x
        >>> base.rotation_matrix.detach().round(decimals=4) + 0.0  # columns: the principal directions
        tensor([[ 0., -1.,  0.],
                [ 1.,  0.,  0.],
                [ 0.,  0.,  1.]])
        >>> base.metric.detach().diagonal().round(decimals=4)  # R diag(l^-2) R^T: l = 0.5 now along x
        tensor([4.0000, 1.0000, 0.2500])
        >>> A = base.whitening_matrix
        >>> torch.allclose(A @ A.mT, base.metric)
        True
        >>> l, R = base.canonical()  # ascending length-scales: this is the axis-aligned kernel l = (0.5, 1, 2)
        >>> l, R.round(decimals=4) + 0.0
        (tensor([0.5000, 1.0000, 2.0000]), tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]]))

    .. [WarriorChakrabarty2026] Warrior & Chakrabarty, "Lie-algebraic anisotropic kernels", arXiv:2605.11179.
    """

    #: Class-level defaults for objects pickled by the first release (before the d-dimensional base class).
    dim = 3
    num_rotation_coordinates = 3

    def __init__(self, nu: float | None = None, **kwargs) -> None:
        """Build the kernel: :class:`~gpytorch_so3.RotatedAnisotropicKernel` with ``dim = 3``.

        Args:
            nu: ``None`` (squared exponential, default) or 0.5, 1.5, 2.5 (Matern smoothness).
            **kwargs: keyword-only arguments of :class:`~gpytorch_so3.RotatedAnisotropicKernel`, all optional:
                ``lengthscale_prior`` (on the ``batch_shape x 1 x 3`` principal length-scales),
                ``lengthscale_constraint`` (default ``Positive()``), ``rotation_prior`` (on the ``batch_shape x 3``
                axis-angle vector, ``event_shape`` ``()`` or ``(3,)``, e.g. from :mod:`gpytorch_so3.priors`),
                ``batch_shape``, ``active_dims`` (three input columns; default: all, and inputs must be 3-D) and
                ``eps`` (gpytorch's lower bound on the length-scale). An unknown name is a ``TypeError``.
        """
        super().__init__(3, nu, **kwargs)

    @property
    def rotation(self) -> Tensor:
        """The axis-angle vector ``w``, ``batch_shape x 3`` (unconstrained)."""
        return self.raw_rotation

    @rotation.setter
    def rotation(self, value: Tensor | float) -> None:
        self._set_rotation(value)

    def extra_repr(self) -> str:
        """Base form and batch shape, shown by ``repr``."""
        return f"base={self._nu_repr()}, batch_shape={tuple(self.batch_shape)}"
