r"""Pathwise sampling with the package's kernels: BoTorch's random Fourier features and :func:`simulate`.

The anisotropic kernels are isotropic base kernels of whitened inputs, ``k(x, x') = kappa_nu(|(x - x') A|)`` with
``A`` the kernel's :attr:`~gpytorch_so3.kernels.Anisotropic3DKernel.whitening_matrix` (metric ``M = A A^T``). By
Bochner's theorem ``kappa_nu(|z - z'|) = E_w[cos(w^T (z - z'))]`` with ``w`` drawn from the spectral density of the
unit-length-scale base, so random Fourier features of the base applied to ``z = x A`` are an exact spectral
representation [rahimi2007random]_: Gaussian frequencies for the squared exponential, multivariate Student-t
frequencies with ``2 nu`` degrees of freedom for Matern-``nu`` (the samplers of BoTorch's own RBF/Matern
generators, reused here).

What this module adds to BoTorch 0.18 (``botorch.sampling.pathwise``):

* a ``GenKernelFeatures`` entry for :class:`~gpytorch_so3.kernels.Anisotropic3DKernel` (so for
  :class:`~gpytorch_so3.SO3AnisotropicKernel` and :class:`~gpytorch_so3.FullSPDKernel`, any ``batch_shape``,
  ``active_dims``, inside ``ScaleKernel``), so that ``draw_matheron_paths`` and everything built on it
  (``PathwiseThompsonSampling``, ``get_matheron_path_model``) work with the package's models;
* a ``GenKernelFeatures`` entry for ``gpytorch.kernels.ProductKernel`` that handles products *containing one of
  the package's kernels* (e.g. the SO(3) kernel on the spatial columns times a Matern kernel on time), which
  BoTorch 0.18 does not support for any kernel: the frequencies of the factors are drawn independently and
  their phases add, which samples the product's spectral measure (the convolution of the factors') exactly;
* :func:`simulate`: conditional (or unconditional) realisations of the latent field on any number of points,
  streamed in blocks.

Registration (:func:`register_pathwise`) runs when this module is imported and again (as a no-op) from
:func:`simulate`. Registering with ``Dispatcher.register`` is how BoTorch itself extends its pathwise dispatchers
(e.g. ``GetTrainInputs`` for variational models); the entries only change what happens for the package's kernels:
the ``ProductKernel`` entry declines (``MDNotImplementedError``) every product without one of our kernels, so
BoTorch still raises ``NotImplementedError`` for those (its message then reads "found, but none completed
successfully" instead of "Could not find signature"), and it is not installed at all if BoTorch already has a
``ProductKernel`` entry (a newer BoTorch), whose recursion then reaches our kernel entry. Nothing else global
(settings, RNG state, other registries) is touched. To support a new kernel base class (e.g. a d-dimensional rotated
kernel exposing ``whitening_matrix``, ``nu``, ``active_dims``, ``batch_shape``), add it to
:data:`ANISOTROPIC_KERNEL_TYPES`.

.. [rahimi2007random] A. Rahimi and B. Recht. Random features for large-scale kernel machines. NeurIPS 2007.
.. [wilson2020sampling] J. Wilson, V. Borovitskiy, A. Terenin, P. Mostowsky and M. Deisenroth. Efficiently
    sampling functions from Gaussian process posteriors. ICML 2020.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator

import torch
from botorch.models.model_list_gp_regression import ModelListGP
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.sampling.pathwise import draw_kernel_feature_paths
from botorch.sampling.pathwise.features import KernelEvaluationMap, KernelFeatureMap, gen_kernel_features
from botorch.sampling.pathwise.features.generators import GenKernelFeatures
from botorch.sampling.pathwise.paths import GeneralizedLinearPath, PathDict, SamplePath
from botorch.sampling.pathwise.posterior_samplers import MatheronPath
from botorch.sampling.pathwise.update_strategies import gaussian_update
from botorch.sampling.pathwise.utils import (
    ChainedTransform,
    FeatureSelector,
    OutputscaleTransform,
    SineCosineTransform,
    TensorTransform,
    get_input_transform,
    get_output_transform,
    get_train_inputs,
    get_train_targets,
)
from botorch.utils.context_managers import delattr_ctx
from botorch.utils.sampling import draw_sobol_normal_samples
from botorch.utils.transforms import is_ensemble
from gpytorch.kernels import Kernel, ProductKernel, ScaleKernel
from gpytorch.likelihoods import _GaussianLikelihoodBase
from gpytorch.models import ExactGP
from linear_operator.operators import LinearOperator
from multipledispatch.dispatcher import MDNotImplementedError
from torch import Size, Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3._validation import check_int
from gpytorch_so3.kernels import Anisotropic3DKernel

__all__ = ["WhiteningTransform", "gen_anisotropic_features", "register_pathwise", "regular_grid", "simulate"]

#: Kernel classes whose instances expose ``whitening_matrix`` (``batch_shape x d x d``), ``nu``, ``active_dims``
#: and ``batch_shape``: the one place to add a new base class (e.g. a d-dimensional rotated kernel).
ANISOTROPIC_KERNEL_TYPES: tuple[type[Kernel], ...] = (Anisotropic3DKernel,)

#: Work-array budget of one block of :func:`simulate` (bytes); blocks have at most ``chunk_size`` rows and are cut
#: further so that the feature matrix, its sine/cosine and the cross-covariance with the training inputs fit.
_BLOCK_BYTES = 2**28

_registered = False


# ------------------------------------------------------------------------------------------ feature maps
class WhiteningTransform(TensorTransform):
    """Input transform ``x -> x A`` of the random Fourier features of an anisotropic kernel.

    ``A`` is the kernel's current whitening matrix, read at every call (as BoTorch's ``InverseLengthscaleTransform``
    reads the length-scale).

    Example:
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> k = SO3AnisotropicKernel(); k.lengthscale = torch.tensor([1.0, 2.0, 4.0])
        >>> WhiteningTransform(k)(torch.tensor([[2.0, 2.0, 2.0]]))  # rotation 0: divide by the length-scales
        tensor([[2.0000, 1.0000, 0.5000]], grad_fn=<SumBackward1>)
    """

    def __init__(self, kernel: Kernel) -> None:
        """Wrap ``kernel`` (any kernel with a ``whitening_matrix`` property)."""
        super().__init__()
        self.kernel = kernel

    def forward(self, values: Tensor) -> Tensor:
        """Whiten ``values`` (``... x n x d``); returns ``broadcast(..., batch_shape) x n x d``."""
        A = self.kernel.whitening_matrix
        if values.shape[-1] != A.shape[-1]:
            raise ValueError(
                f"{type(self.kernel).__name__}: its (active) inputs must have {A.shape[-1]} columns, got "
                f"{tuple(values.shape)}"
            )
        return F.whiten(values, A)


def _draw_frequencies(nu: float | None, n: int, d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``n x d`` spectral frequencies of the unit-length-scale base, drawn as BoTorch's RBF/Matern generators do.

    Squared exponential: scrambled-Sobol standard normals. Matern-``nu``: the same normals divided by
    ``sqrt(g)``, ``g ~ Gamma(nu, rate=nu)`` per frequency: a multivariate Student-t with ``2 nu`` degrees of freedom,
    whose density ``(2 nu + |w|^2)^-(nu + d / 2)`` is the Matern spectral density. Uses the global torch RNG (for
    the Sobol scramble and the Gamma draws), like BoTorch; :func:`simulate` forks and seeds it.
    """
    normals = draw_sobol_normal_samples(n=n, d=d, device=device, dtype=dtype)
    if nu is None:
        return normals
    rate = torch.tensor(nu, device=device, dtype=dtype)
    return torch.distributions.Gamma(rate, rate).rsample((n, 1)).rsqrt() * normals


def _check_num_features(name: str, value: object, what: str = "", *, where: str = "") -> int:
    """A number of Fourier features: an even int >= 2 (sine and cosine pairs), via :func:`check_int`."""
    n = check_int(name, value, 2, where=where)
    if n % 2:
        raise ValueError(f"{where}{name}{what} must be an even int >= 2, got {n}")
    return n


def gen_anisotropic_features(kernel: Kernel, *, num_inputs: int, num_outputs: int) -> KernelFeatureMap:
    r"""Random Fourier feature map of an anisotropic kernel (the ``GenKernelFeatures`` entry for our kernels).

    ``phi(x) = sqrt(2 / F) [sin(W z), cos(W z)]`` with ``z = x[active_dims] A`` and ``W`` (``batch_shape x F/2 x
    d``) drawn from the base's spectral density, so that ``E[phi(x)^T phi(x')] = k(x, x')`` exactly.

    Args:
        kernel: a kernel with ``whitening_matrix`` (``batch_shape x d x d``), ``nu``, ``active_dims`` and
            ``batch_shape``, e.g. :class:`~gpytorch_so3.SO3AnisotropicKernel`.
        num_inputs: number of input columns (ignored when the kernel has ``active_dims``).
        num_outputs: number of features ``F`` (even: sine and cosine pairs).

    Returns:
        a BoTorch ``KernelFeatureMap`` mapping ``... x n x num_inputs`` to ``... x batch_shape x n x F``.

    Raises:
        TypeError: ``num_outputs`` is not an int (numpy integers are accepted).
        ValueError: ``num_outputs`` is odd or not positive.

    Example:
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> k = SO3AnisotropicKernel(nu=2.5, batch_shape=torch.Size([2]))
        >>> fmap = gen_anisotropic_features(k, num_inputs=3, num_outputs=64)
        >>> fmap.weight.shape, fmap(torch.rand(5, 3)).shape
        (torch.Size([2, 32, 3]), torch.Size([2, 5, 64]))
    """
    num_outputs = _check_num_features("num_outputs", num_outputs, " (the number of Fourier features)")
    A = kernel.whitening_matrix
    d = A.shape[-1]
    input_transform: TensorTransform = WhiteningTransform(kernel)
    if kernel.active_dims is not None:
        input_transform = ChainedTransform(input_transform, FeatureSelector(indices=kernel.active_dims))
    batch_shape = kernel.batch_shape
    weight = _draw_frequencies(
        kernel.nu, batch_shape.numel() * (num_outputs // 2), d, dtype=A.dtype, device=A.device
    ).reshape(*batch_shape, num_outputs // 2, d)
    scale = torch.tensor((2.0 / num_outputs) ** 0.5, dtype=A.dtype, device=A.device)
    return KernelFeatureMap(
        kernel=kernel, weight=weight, input_transform=input_transform, output_transform=SineCosineTransform(scale)
    )


def _contains_anisotropic(kernel: Kernel) -> bool:
    if isinstance(kernel, ANISOTROPIC_KERNEL_TYPES):
        return True
    return any(_contains_anisotropic(k) for k in kernel.sub_kernels())


class _ConcatTransform(TensorTransform):
    """Apply several transforms to the same inputs, broadcast their batch dimensions, concatenate the columns."""

    def __init__(self, transforms: list[TensorTransform | None]) -> None:
        super().__init__()
        self.transforms = torch.nn.ModuleList([t if t is not None else torch.nn.Identity() for t in transforms])

    def forward(self, values: Tensor) -> Tensor:
        outs = [t(values) for t in self.transforms]
        batch = torch.broadcast_shapes(*(o.shape[:-1] for o in outs))
        return torch.cat([o.expand(*batch, o.shape[-1]) for o in outs], dim=-1)


def _fourier_parts(
    feature_map: object, factor: Kernel
) -> tuple[TensorTransform | None, Tensor, list[ScaleKernel], SineCosineTransform]:
    """Split a Fourier feature map ``prod_k sqrt(s_k) c [sin(W T x), cos(W T x)]`` into its parts.

    Returns ``(T, W, [ScaleKernels of the s_k], the SineCosineTransform holding c)``; raises
    ``MDNotImplementedError`` for any other form of feature map.
    """
    ok = isinstance(feature_map, KernelFeatureMap) and feature_map.bias is None
    scales: list[ScaleKernel] = []
    stack = [feature_map.output_transform] if ok else []
    sincos = None
    while ok and stack:
        t = stack.pop()
        if isinstance(t, ChainedTransform):
            stack.extend(t.transforms)
        elif isinstance(t, OutputscaleTransform):
            scales.append(t.kernel)
        elif isinstance(t, SineCosineTransform) and sincos is None:
            sincos = t
        else:
            ok = False
    if not (ok and sincos is not None):
        raise MDNotImplementedError(
            f"gen_kernel_features: the factor {type(factor).__name__} of a product has no random-Fourier-feature "
            "map of the form scale * [sin(W x), cos(W x)], so the product's spectral measure cannot be sampled"
        )
    return feature_map.input_transform, feature_map.weight, scales, sincos


def _gen_product_features(kernel: ProductKernel, *, num_inputs: int, num_outputs: int) -> KernelFeatureMap:
    """Fourier features of a product of stationary kernels: independent frequencies per factor, phases added.

    For stationary factors ``k_i(x - x') = E[cos(w_i^T T_i (x - x'))]`` with independent ``w_i``,
    ``prod_i k_i = E[cos(sum_i w_i^T T_i (x - x'))]``: concatenating the factors' (linear) input transforms and
    frequencies samples the product exactly, whatever the factors' active dimensions (shared or disjoint).
    """
    if not _contains_anisotropic(kernel):
        # Leave products without the package's kernels to BoTorch (which has no entry for them: NotImplementedError).
        raise MDNotImplementedError("gen_kernel_features: no package kernel in this product")
    if kernel.active_dims is not None:
        raise MDNotImplementedError("gen_kernel_features: ProductKernel with its own active_dims is not supported")
    transforms, weights, scales = [], [], []
    for factor in kernel.kernels:
        fmap = gen_kernel_features(factor, num_inputs=num_inputs, num_outputs=num_outputs)
        t, w, s, _ = _fourier_parts(fmap, factor)
        transforms.append(t)
        weights.append(w)
        scales.extend(s)
    batch = torch.broadcast_shapes(*(w.shape[:-2] for w in weights))
    weights = [w.expand(*batch, *w.shape[-2:]) for w in weights]
    # The factors' frequencies must be independent, but BoTorch's generators draw them from scrambled Sobol
    # sequences whose first coordinates share one structure (the pairing of row k of one factor with row k of
    # another is far from independent: covariance errors of ~0.2 were measured). A uniformly random permutation of
    # each further factor's rows makes the pairing independent: averaged over the permutation the features'
    # product equals the product of the factors' empirical spectral measures.
    for i in range(1, len(weights)):
        w = weights[i].reshape(-1, *weights[i].shape[-2:])
        perms = torch.stack([torch.randperm(w.shape[-2], device=w.device) for _ in range(w.shape[0])])
        weights[i] = w.gather(-2, perms.unsqueeze(-1).expand_as(w)).reshape(weights[i].shape)
    weight = torch.cat(weights, dim=-1)
    scale = torch.tensor((2.0 / num_outputs) ** 0.5, dtype=weight.dtype, device=weight.device)
    output_transform = ChainedTransform(*(OutputscaleTransform(s) for s in scales), SineCosineTransform(scale))
    return KernelFeatureMap(
        kernel=kernel, weight=weight, input_transform=_ConcatTransform(transforms), output_transform=output_transform
    )


def register_pathwise() -> None:
    """Register the package's kernels with BoTorch's ``GenKernelFeatures`` dispatcher (idempotent).

    Adds an entry for every class in :data:`ANISOTROPIC_KERNEL_TYPES` and, unless BoTorch already has one, an
    entry for ``ProductKernel`` that only handles products containing one of those kernels (see the module
    docstring for why this is safe). Called when :mod:`gpytorch_so3.pathwise` is imported and by :func:`simulate`.

    Example:
        >>> from botorch.sampling.pathwise.features.generators import GenKernelFeatures
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> register_pathwise()
        >>> GenKernelFeatures.dispatch(SO3AnisotropicKernel) is gen_anisotropic_features
        True
    """
    global _registered
    if _registered:
        return
    GenKernelFeatures.register(ANISOTROPIC_KERNEL_TYPES)(gen_anisotropic_features)
    if GenKernelFeatures.dispatch(ProductKernel) is None:
        GenKernelFeatures.register(ProductKernel)(_gen_product_features)
    _registered = True


# ------------------------------------------------------------------------------------------ simulate
def _unsupported(kernel: Kernel) -> Kernel | None:
    """The first sub-kernel without a feature map (or None if the whole tree is supported)."""
    if isinstance(kernel, ProductKernel) and GenKernelFeatures.dispatch(ProductKernel) is _gen_product_features:
        if not _contains_anisotropic(kernel):
            return kernel
        for k in kernel.kernels:
            bad = _unsupported(k)
            if bad is not None:
                return bad
        return None
    if isinstance(kernel, ScaleKernel):
        return _unsupported(kernel.base_kernel)
    return None if GenKernelFeatures.dispatch(type(kernel)) is not None else kernel


def _check_X(X: object) -> Tensor:
    if not torch.is_tensor(X):
        raise TypeError(f"simulate: X must be a torch.Tensor, got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"simulate: X must have a floating dtype (float32 or float64), got {X.dtype}")
    if X.dim() != 2:
        raise ValueError(f"simulate: X must have shape N x d, got {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        bad = int((~torch.isfinite(X)).any(-1).sum())
        raise ValueError(f"simulate: X contains NaN or inf in {bad} of its {X.shape[0]} rows")
    return X


def _kernel_tensor(kernel: Kernel) -> Tensor:
    for p in kernel.parameters():
        return p
    for b in kernel.buffers():
        return b
    raise TypeError(f"simulate: the kernel {type(kernel).__name__} has no parameters to take a dtype/device from")


def _train_size(model: ExactGP) -> int:
    inputs = model.train_inputs
    if inputs is None or len(inputs) == 0 or inputs[0] is None:
        return 0
    return int(inputs[0].shape[-2])


def _prior_paths(
    kernel: Kernel,
    num_inputs: int,
    sample_shape: Size,
    num_features: int,
    weight_generator: Callable[[Size], Tensor],
    model: ExactGP | None,
) -> GeneralizedLinearPath:
    """Prior sample paths of ``kernel`` (plus the model's mean and transforms), as BoTorch's fallback builds them."""
    feature_map = gen_kernel_features(kernel, num_inputs=num_inputs, num_outputs=num_features)
    weight = weight_generator(sample_shape + kernel.batch_shape + (feature_map.num_outputs,))
    output_transform = None
    if model is not None and getattr(model, "outcome_transform", None) is not None:
        output_transform = get_output_transform(model)
    return GeneralizedLinearPath(
        feature_map=feature_map,
        weight=weight,
        bias_module=None if model is None else model.mean_module,
        input_transform=None if model is None else get_input_transform(model),
        output_transform=output_transform,
        is_ensemble=model is not None and bool(getattr(model, "_is_ensemble", False)),
    )


def _transform_in(path: SamplePath, x: Tensor) -> Tensor:
    tf = getattr(path, "input_transform", None)  # as botorch.sampling.pathwise.utils.TransformedModuleMixin
    if tf is None:
        return x
    return tf.forward(x) if isinstance(tf, InputTransform) else tf(x)


def _transform_out(path: SamplePath, y: Tensor) -> Tensor:
    tf = getattr(path, "output_transform", None)
    if tf is None:
        return y
    return tf.untransform(y)[0] if isinstance(tf, OutcomeTransform) else tf(y)


def _evaluate(path: SamplePath, x: Tensor, transforms: bool = True) -> Tensor:
    """``path(x)`` for BoTorch's prior/Matheron paths, without materialising features per draw.

    ``GeneralizedLinearPath.forward`` computes ``features @ weight`` with the features broadcast over the sample
    dimensions, which copies them once per draw (``num_samples x rows x num_features`` values); here the draws are
    moved to the last dimension so that one matrix product serves them all. Same transforms, same result.
    """
    if transforms:
        x = _transform_in(path, x)
    if isinstance(path, PathDict) and path.join is sum:
        out = sum(_evaluate(p, x) for p in path.paths.values())
    elif isinstance(path, GeneralizedLinearPath):
        if path.is_ensemble and not path.ensemble_as_batch:
            x = x.unsqueeze(-3)
        fmap = path.feature_map
        weight = path.weight  # sample_shape x batch_shape x num_features
        try:
            _, _, scales, sincos = _fourier_parts(fmap, fmap.kernel)
        except (MDNotImplementedError, AttributeError):
            sincos = None
        if sincos is not None:
            # Random Fourier features: fold the amplitudes into the weights and multiply sin(P) and cos(P) by their
            # halves of the weights, instead of building concat([sin P, cos P]) and scaling it (two fewer
            # rows x num_features arrays, ~40% less time per block).
            phase = fmap.forward(_transform_in(fmap, x))  # batch x rows x num_features / 2
            nb = phase.dim() - 2
            amp = torch.ones((), dtype=phase.dtype, device=phase.device)
            if sincos.scale is not None:
                amp = amp * sincos.scale
            for k in scales:
                amp = amp * k.outputscale.sqrt()
            w = weight.reshape(-1, *weight.shape[-nb - 1 :]).movedim(0, -1)  # batch x num_features x samples
            w = w * amp.reshape(*amp.shape, 1, 1)
            half = phase.shape[-1]
            out = phase.sin() @ w[..., :half, :]
            out = out + phase.cos_() @ w[..., half:, :]
            rows_shape = phase.shape[:-1]
        else:
            feat = fmap(x)
            if isinstance(feat, LinearOperator):
                feat = feat.to_dense()
            nb = feat.dim() - 2  # batch dimensions of the features
            w = weight.reshape(-1, *weight.shape[-nb - 1 :]).movedim(0, -1)  # batch x num_features x samples
            out = feat @ w
            rows_shape = feat.shape[:-1]
        sample_shape = weight.shape[: weight.dim() - nb - 1]
        out = out.movedim(-1, 0).reshape(*sample_shape, *rows_shape).contiguous()  # contiguous as BoTorch: randn_like
        if path.bias_module is not None:
            out = out + path.bias_module(x)
    else:  # pragma: no cover - other path types: BoTorch's own evaluation
        return path(x) if transforms else path.forward(x)
    return _transform_out(path, out) if transforms else out


def _matheron_paths(model: ExactGP, sample_shape: Size, prior_sampler: Callable[..., SamplePath]) -> MatheronPath:
    """BoTorch's ``draw_matheron_paths`` for an ``ExactGP``: same steps, same random stream, same result.

    Only the prior draws at the training inputs are evaluated by :func:`_evaluate` (BoTorch's path evaluation holds
    ``num_samples x n x num_features`` values there: gigabytes for thousands of training points), and the update
    solves for all draws at once (:func:`_gaussian_update`).
    """
    (train_X,) = get_train_inputs(model, transformed=True)
    train_Y = get_train_targets(model, transformed=True)
    with delattr_ctx(model, "outcome_transform"):
        prior_paths = prior_sampler(model=model, sample_shape=sample_shape)
        sample_values = _evaluate(prior_paths, train_X, transforms=False)
        if isinstance(getattr(model, "likelihood", None), _GaussianLikelihoodBase):
            update_paths = _gaussian_update(model, train_X, train_Y, sample_values)
        else:  # pragma: no cover - other likelihoods: BoTorch's own update
            update_paths = gaussian_update(model=model, sample_values=sample_values, target_values=train_Y)
    return MatheronPath(
        prior_paths=prior_paths, update_paths=update_paths, output_transform=get_output_transform(model)
    )


def _gaussian_update(model: ExactGP, points: Tensor, targets: Tensor, sample_values: Tensor) -> GeneralizedLinearPath:
    """BoTorch's ``gaussian_update`` of an ``ExactGP`` with a Gaussian likelihood, one solve for all draws.

    The steps of BoTorch's ``_gaussian_update_exact`` (same noise draw, same factor), but one triangular solve with
    every draw as a column.

    BoTorch solves ``cholesky_solve(errors.unsqueeze(-1), L)``, which broadcasts the ``n x n`` factor to one copy per
    draw (``num_samples x n^2`` floats: 4.3 GB for 16 draws at n = 5,808, 40 GB for 200 draws at n = 5,000).
    """
    noise_covariance = model.likelihood.noise_covar(shape=points.shape[:-1])
    noise = noise_covariance.cholesky() @ torch.randn_like(sample_values).unsqueeze(-1)
    errors = targets - (sample_values + noise.squeeze(-1))  # sample_shape x batch x n
    scale_tril = (model.covar_module(points) + noise_covariance).cholesky().to_dense()  # batch x n x n
    batch = scale_tril.shape[:-2]
    sample_dims = errors.dim() - len(batch) - 1
    cols = errors.expand(*errors.shape[:sample_dims], *batch, errors.shape[-1])
    cols = cols.reshape(-1, *batch, errors.shape[-1]).movedim(0, -1)  # batch x n x draws
    weight = torch.cholesky_solve(cols, scale_tril).movedim(-1, 0).reshape(errors.shape[:sample_dims] + cols.shape[:-1])
    feature_map = KernelEvaluationMap(
        kernel=model.covar_module, points=points, input_transform=get_input_transform(model)
    )
    return GeneralizedLinearPath(feature_map=feature_map, weight=weight, is_ensemble=is_ensemble(model))


def _blocks(n: int, rows: int) -> Iterator[slice]:
    for lo in range(0, n, rows):
        yield slice(lo, min(lo + rows, n))


def simulate(
    model: ExactGP | Kernel,
    X: Tensor,
    num_samples: int,
    *,
    seed: int | None = None,
    num_features: int = 4096,
    chunk_size: int = 65536,
) -> Tensor:
    r"""Draw realisations of the latent field at ``X``, conditional on the model's training data.

    Pathwise (Matheron) conditioning [wilson2020sampling]_, the steps of BoTorch's ``draw_matheron_paths`` (same
    random stream, same values; only the evaluation is organised to need no per-draw copies of the features):
    ``(f | y)(x) = f(x) + k(x, X) (K + S)^{-1} (y - f(X) - e)`` with ``f`` a prior path built from ``num_features``
    random Fourier features (sine/cosine pairs of ``num_features / 2`` frequencies, shared by all the draws of one
    call, as in BoTorch) with independent standard-normal weights per draw, and ``e ~ N(0, S)`` the observation
    noise. The result is the latent field (mean function included, outcome transform undone, no observation
    noise). ``X`` is processed in blocks of at most ``chunk_size`` rows, cut further so that one block's work
    arrays stay below about 256 MiB: memory is ``O(N num_samples)`` for the output plus ``O(n^2)`` for the training
    set's Cholesky factor.

    * ``model`` a bare kernel, or an ``ExactGP`` without training data: unconditional realisations
      (zero mean for a kernel).
    * A fully Bayesian model (``_is_fully_bayesian``, kernel ``batch_shape = (num_mcmc,)``, e.g.
      :class:`~gpytorch_so3.SO3FullyBayesianGP`): draws are mixed over the MCMC samples. If
      ``num_samples >= num_mcmc`` draw ``j`` uses MCMC sample ``j % num_mcmc`` (round-robin); otherwise draw ``j``
      uses MCMC sample ``(j * num_mcmc) // num_samples`` (evenly spread). Every MCMC sample's features are
      evaluated, so the cost is that of ``num_mcmc`` MAP models.

    Reproducibility: with ``seed`` the draws depend only on ``seed`` (and the model); the global torch RNG is
    forked for the call, so its state is unchanged afterwards. With ``seed=None`` the global RNG is used.
    Device and dtype follow the model's kernel (``X`` is moved/cast to them): use ``model.float()`` for float32.
    A model is put in eval mode first, as BoTorch's ``posterior`` does (in train mode a learned input transform
    would refit itself to every block of ``X``).

    Args:
        model: a single-output gpytorch ``ExactGP`` (e.g. BoTorch's ``SingleTaskGP``) or a bare kernel.
        X: ``N x d`` points (raw inputs: the model's input transform is applied inside).
        num_samples: number of realisations (>= 1).
        seed: seed for every random draw of the call (frequencies, weights, noise), or ``None``.
        num_features: number of random Fourier features (even, >= 2; BoTorch's meaning: sine plus cosine).
        chunk_size: maximum number of rows of ``X`` evaluated at once.

    Returns:
        ``num_samples x N`` tensor (the model's dtype and device).

    Raises:
        TypeError: ``model`` is neither a kernel nor an ``ExactGP``; a kernel without a feature map (the message
            names it); ``X`` not a floating tensor; ``num_samples``, ``num_features`` or ``chunk_size`` not an int.
        ValueError: ``X`` not ``N x d`` or non-finite; ``num_samples < 1``; odd ``num_features``; a multi-output or
            batched (non fully Bayesian) model.

    Example:
        >>> import gpytorch
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> kernel = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel(nu=1.5)).double()
        >>> X = torch.rand(100, 3, dtype=torch.float64)
        >>> draws = simulate(kernel, X, 4, seed=0, num_features=256)  # unconditional
        >>> draws.shape, torch.equal(draws, simulate(kernel, X, 4, seed=0, num_features=256))
        (torch.Size([4, 100]), True)

        Conditional on data, the draws pass through the (nearly noise-free) observations:

        >>> from botorch.models import SingleTaskGP
        >>> tX = torch.rand(8, 3, dtype=torch.float64); tY = torch.sin(4 * tX[:, :1])
        >>> gp = SingleTaskGP(tX, tY, covar_module=kernel); gp.likelihood.noise = 1e-6
        >>> bool((simulate(gp, tX, 2, seed=1, num_features=256) - tY.T).abs().max() < 1e-2)
        True
    """
    register_pathwise()
    num_samples = check_int("num_samples", num_samples, 1, where="simulate: ")
    chunk_size = check_int("chunk_size", chunk_size, 1, where="simulate: ")
    num_features = _check_num_features("num_features", num_features, where="simulate: ")
    X = _check_X(X)

    if isinstance(model, Kernel):
        kernel, gp = model, None
    elif isinstance(model, ModelListGP):
        raise ValueError("simulate: a ModelListGP has several outputs; call simulate on each of `model.models`")
    elif isinstance(model, ExactGP):
        kernel, gp = model.covar_module, model
        if getattr(model, "num_outputs", 1) != 1:
            raise ValueError(f"simulate: the model has {model.num_outputs} outputs; simulate draws one output")
    else:
        raise TypeError(f"simulate: model must be a gpytorch ExactGP or a Kernel, got {type(model).__name__}")
    if kernel is None:
        raise ValueError("simulate: the model has no covar_module (a fully Bayesian model must be fitted first)")
    if gp is not None:
        gp.eval()
    bad = _unsupported(kernel)
    if bad is not None:
        raise TypeError(
            f"simulate: no random-Fourier-feature map for the kernel {type(bad).__name__} (supported: the package's "
            "anisotropic kernels, gpytorch RBF/Matern kernels, ScaleKernel and products containing a package kernel)"
        )
    if gp is not None and _train_size(gp) > 0:
        width = gp.train_inputs[0].shape[-1]
        tf = getattr(gp, "input_transform", None)
        if tf is not None:  # the stored inputs are transformed; the raw width is what X must have
            width = get_train_inputs(gp, transformed=False)[0].shape[-1]
        if X.shape[-1] != width:
            raise ValueError(f"simulate: X has {X.shape[-1]} columns but the model's inputs have {width}")
    for k in kernel.modules():
        if isinstance(k, Kernel) and k.active_dims is not None and X.shape[-1] <= int(k.active_dims.max()):
            raise ValueError(
                f"simulate: {type(k).__name__} has active_dims={k.active_dims.tolist()} but X has only "
                f"{X.shape[-1]} columns"
            )
    ref = _kernel_tensor(kernel)
    dtype, device = ref.dtype, ref.device
    X = X.to(dtype=dtype, device=device)

    batch = kernel.batch_shape
    num_batch = batch.numel()
    fully_bayesian = gp is not None and bool(getattr(gp, "_is_fully_bayesian", False))
    if len(batch) > (1 if fully_bayesian else 0):
        what = "fully Bayesian model's kernel" if fully_bayesian else "kernel"
        raise ValueError(f"simulate: the {what} has batch_shape {tuple(batch)}; simulate needs one model per call")
    if num_samples >= num_batch:
        per_batch = math.ceil(num_samples / num_batch)
        rows = torch.arange(num_samples, device=device)
    else:  # fewer draws than MCMC samples: spread them over the chain
        per_batch = 1
        rows = torch.div(torch.arange(num_samples, device=device) * num_batch, num_samples, rounding_mode="floor")
    sample_shape = Size([per_batch])

    n_train = 0 if gp is None else _train_size(gp)
    itemsize = torch.finfo(dtype).bits // 8
    per_row = itemsize * num_batch * (3 * num_features + 4 * n_train + 2 * per_batch)
    block_rows = max(1, min(chunk_size, _BLOCK_BYTES // per_row))

    rng = contextlib.nullcontext()
    if seed is not None:
        rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    out = torch.empty(num_samples, X.shape[0], dtype=dtype, device=device)
    with rng, torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)

        def weight_generator(shape: Size) -> Tensor:
            return torch.randn(shape, dtype=dtype, device=device)

        paths: SamplePath
        if n_train == 0:
            paths = _prior_paths(kernel, X.shape[-1], sample_shape, num_features, weight_generator, gp)
        else:
            prior_sampler = functools.partial(
                draw_kernel_feature_paths, num_features=num_features, weight_generator=weight_generator
            )
            paths = _matheron_paths(gp, sample_shape, prior_sampler)
        for sl in _blocks(X.shape[0], block_rows):
            values = _evaluate(paths, X[sl])  # per_batch x [num_batch x] rows
            out[:, sl] = values.reshape(per_batch * num_batch, -1).index_select(0, rows)
    return out


def regular_grid(bounds: Tensor, shape: tuple[int, ...] | list[int]) -> Tensor:
    """Points of a regular grid over a box, as rows (for :func:`simulate` and the command line's ``--grid``).

    Args:
        bounds: ``2 x d`` box (lower and upper corner), e.g. the data's ``torch.stack([X.min(0).values,
            X.max(0).values])``.
        shape: ``d`` positive ints, points per axis (an axis with 1 point sits at the box's midpoint).

    Returns:
        ``prod(shape) x d`` points in C order: the last axis varies fastest, so ``values.reshape(*shape)`` of any
        per-point result (e.g. one row of :func:`simulate`) is the grid as an array indexed ``[i, j, k]``.

    Raises:
        TypeError: an entry of ``shape`` is not an int (numpy integers are accepted).
        ValueError: bad ``bounds`` (shape, non-finite, lower > upper) or ``shape``.

    Example:
        >>> regular_grid(torch.tensor([[0.0, 0.0], [1.0, 10.0]]), (2, 3))
        tensor([[ 0.,  0.],
                [ 0.,  5.],
                [ 0., 10.],
                [ 1.,  0.],
                [ 1.,  5.],
                [ 1., 10.]])
    """
    if not torch.is_tensor(bounds) or not bounds.is_floating_point() or bounds.dim() != 2 or bounds.shape[0] != 2:
        raise ValueError(
            f"regular_grid: bounds must be a floating 2 x d tensor, got {getattr(bounds, 'shape', bounds)}"
        )
    d = bounds.shape[1]
    shape = tuple(shape)
    message = f"regular_grid: shape must be {d} positive ints (one per column of bounds), got {shape!r}"
    if len(shape) != d:
        raise ValueError(message)
    try:  # a non-integer entry is a TypeError (check_int's message), one below 1 keeps the message above
        shape = tuple(check_int("shape entries", n, 1, where="regular_grid: ") for n in shape)
    except ValueError:
        raise ValueError(message) from None
    if not bool(torch.isfinite(bounds).all()) or bool((bounds[0] > bounds[1]).any()):
        raise ValueError(f"regular_grid: bounds must be finite with lower <= upper, got {bounds.tolist()}")
    axes = [
        torch.linspace(float(lo), float(hi), n, dtype=bounds.dtype, device=bounds.device)
        if n > 1
        else ((bounds[0, i] + bounds[1, i]) / 2).reshape(1)
        for i, (lo, hi, n) in enumerate(zip(bounds[0], bounds[1], shape, strict=True))
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)


register_pathwise()
