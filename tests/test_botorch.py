"""BoTorch integration: IsotropicNormalize, physical-unit read-out, the shear warning, models and short BO loops.

Budgets are tiny (L-BFGS capped at a few dozen iterations, 1-2 restarts, NUTS 16 + 8 draws): the model and loop
tests check that the pieces fit together (shapes, finiteness, bounds, consistency with an independently built
model), not statistical quality. Recovery/quality is measured in benchmarks/bench_bo.py.
"""

import math
import warnings

import pytest
import torch
from botorch.acquisition import qUpperConfidenceBound
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.models.transforms.input import ChainedInputTransform, InputStandardize, Log10
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import MCMC_DIM, GaussianMixturePosterior
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.kernels import MaternKernel, ProductKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

from gpytorch_so3 import SO3AnisotropicKernel, functional, so3
from gpytorch_so3.botorch_utils import (
    IsotropicNormalize,
    check_input_scaling,
    input_scale_factors,
    metric_to_physical,
    physical_canonical,
    physical_principal_axes,
    so3_product_covar_module,
    to_physical_units,
)
from gpytorch_so3.exceptions import NonIsotropicInputScalingWarning
from gpytorch_so3.fit import fit_map
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
from gpytorch_so3.nuts import fit_nuts
from gpytorch_so3.priors import so3_covar_module

D64 = torch.float64
#: The non-cubic box of the hand-computed cases: ranges (2, 4, 1).
BOX = torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 1.0]], dtype=D64)
#: Small L-BFGS budget: enough to move the hyperparameters well away from their initial values.
FAST = {"maxiter": 40}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # n <= 30 GPs: thread start-up dominates; two threads competing with parallel test workers slow every step ~5x.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _box_points(n, seed, box=BOX, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    lo, hi = box[0].to(dtype), box[1].to(dtype)
    return lo + (hi - lo) * torch.rand(n, box.shape[-1], generator=g, dtype=dtype)


def _oblique(X, noise=0.0, seed=0):
    """A ridge along a direction that is oblique in the box [0,2]x[0,4]x[0,1]."""
    u = torch.tensor([0.6, 0.3, 0.74], dtype=X.dtype)[: X.shape[-1]]
    g = torch.Generator().manual_seed(seed + 100)
    y = torch.sin(3.0 * X[..., :3] @ u[:3]) + noise * torch.randn(X.shape[:-1], generator=g, dtype=X.dtype)
    return y.unsqueeze(-1)


def _angle_deg(a, b):
    cos = (a @ b) / (a.norm() * b.norm())
    return math.degrees(math.acos(max(-1.0, min(1.0, float(cos)))))


# ------------------------------------------------------------------------------------------ IsotropicNormalize
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bounds_variant_common_scale_by_hand(dtype):
    tf = IsotropicNormalize(3, bounds=BOX.to(dtype))
    assert float(tf.scale) == 4.0  # largest side of [0,2]x[0,4]x[0,1]
    # corners by hand: midpoint (1, 2, 0.5) -> 0.5 in every column, then divide by 4
    X = torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 1.0], [1.0, 2.0, 0.5]], dtype=dtype)
    expected = torch.tensor([[0.25, 0.0, 0.375], [0.75, 1.0, 0.625], [0.5, 0.5, 0.5]], dtype=dtype)
    for mode in ("train", "eval"):
        getattr(tf, mode)()
        out = tf(X)
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected)


def test_common_scale_preserves_angles_unlike_normalize():
    X = _box_points(30, 0)
    iso = IsotropicNormalize(3, bounds=BOX)(X)
    per_axis = Normalize(3, bounds=BOX)(X)
    d_phys, d_iso, d_norm = X[1:] - X[0], iso[1:] - iso[0], per_axis[1:] - per_axis[0]
    # a similarity: all distance ratios equal (one common factor), so all angles are preserved
    ratio = d_iso.norm(dim=-1) / d_phys.norm(dim=-1)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.25))
    cos = lambda D: (D[:-1] * D[1:]).sum(-1) / (D[:-1].norm(dim=-1) * D[1:].norm(dim=-1))
    torch.testing.assert_close(cos(d_iso), cos(d_phys))
    # the per-axis Normalize on this box does change angles (the reason for the transform)
    assert float((cos(d_norm) - cos(d_phys)).abs().max()) > 0.1


def test_cube_equals_normalize():
    cube = torch.tensor([[-1.0, 2.0, 0.0], [2.0, 5.0, 3.0]], dtype=D64)
    X = _box_points(10, 1, box=cube)
    torch.testing.assert_close(IsotropicNormalize(3, bounds=cube)(X), Normalize(3, bounds=cube)(X))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_all_variants(dtype):
    X = _box_points(12, 2, dtype=dtype)
    X4 = torch.cat([X, 10 * X[:, :1]], dim=-1)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    cases = [
        (IsotropicNormalize(3, bounds=BOX.to(dtype)), X),
        (IsotropicNormalize(3), X),
        (IsotropicNormalize(3, center=0.0), X),
        (IsotropicNormalize(4, indices=[0, 1, 2]), X4),
        (IsotropicNormalize(3, batch_shape=torch.Size([2])), torch.stack([X, 3 * X])),
    ]
    for tf, Z in cases:
        tf.train()
        Zt = tf(Z)
        tf.eval()
        torch.testing.assert_close(tf.untransform(tf(Z)), Z, **tol)
        torch.testing.assert_close(tf(Z), Zt, **tol)
    # reverse=True swaps the two directions
    tf = IsotropicNormalize(3, bounds=BOX.to(dtype), reverse=True)
    fwd = IsotropicNormalize(3, bounds=BOX.to(dtype))
    torch.testing.assert_close(tf.transform(X), fwd.untransform(X), **tol)


def test_learned_variant_train_vs_eval_and_indices():
    X = _box_points(25, 3)
    tf = IsotropicNormalize(3)
    assert tf.learn_bounds
    Z = tf(X)  # train mode: learns the data's bounding box
    lo, hi = X.min(0).values, X.max(0).values
    assert float(tf.scale) == pytest.approx(float((hi - lo).max()))
    torch.testing.assert_close(Z.amax(0) - Z.amin(0), (hi - lo) / (hi - lo).max())
    # the longest data extent maps onto [0, 1]; the data's midpoint onto 0.5
    torch.testing.assert_close(0.5 * (Z.amax(0) + Z.amin(0)), torch.full((3,), 0.5, dtype=D64))
    scale = tf.scale.clone()
    tf.eval()
    tf(10 * X)  # eval mode: nothing learned
    assert torch.equal(tf.scale, scale)
    tf.train()
    tf.preprocess_transform(10 * X)  # BoTorch's preprocess path must not learn either
    assert torch.equal(tf.scale, scale)
    # indices: the other columns pass through untouched
    X4 = torch.cat([X, 100 + X[:, :1]], dim=-1)
    tf4 = IsotropicNormalize(4, indices=[0, 1, 2])
    out = tf4(X4)
    assert torch.equal(out[:, 3], X4[:, 3])
    torch.testing.assert_close(out[:, :3], Z)
    # batch_shape: one common scale per batch member
    tfb = IsotropicNormalize(3, batch_shape=torch.Size([2]))
    tfb(torch.stack([X, 3 * X]))
    torch.testing.assert_close(tfb.scale, torch.stack([scale, 3 * scale]))


def test_get_init_args_rebuilds_the_same_transform():
    X = _box_points(15, 4)
    for tf in (IsotropicNormalize(3, bounds=BOX), IsotropicNormalize(3, center=0.2)):
        tf(X)
        copy = IsotropicNormalize(**{**tf.get_init_args(), "learn_bounds": False})
        torch.testing.assert_close(copy.coefficient, tf.coefficient)
        torch.testing.assert_close(copy.offset, tf.offset)
        tf.eval()
        copy.eval()
        torch.testing.assert_close(copy(X), tf(X))


def test_transform_bad_input():
    with pytest.raises(ValueError, match="learn_bounds=False needs bounds"):
        IsotropicNormalize(3, learn_bounds=False)
    with pytest.raises(Exception, match="bounds must have shape"):
        IsotropicNormalize(3, bounds=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="lower <= upper"):
        IsotropicNormalize(3, bounds=torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    with pytest.raises(TypeError, match="floating-point"):
        IsotropicNormalize(3, bounds=[[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="positive int"):
        IsotropicNormalize(0)
    with pytest.raises(TypeError, match="IsotropicNormalize: d must be an int"):
        IsotropicNormalize(3.0)


# ------------------------------------------------------------------------------------------ back to physical units
def test_metric_to_physical_diagonal_by_hand():
    # Normalize on [0,2]x[0,4]x[0,1]: x_n = x / (2, 4, 1). Length-scales (0.1, 0.2, 0.3) along the normalised axes
    # are (0.2, 0.8, 0.3) physically: M_n = diag(100, 25, 11.11), M_phys = diag(100/4, 25/16, 11.11/1).
    tf = Normalize(3, bounds=BOX)
    M_n = torch.diag(torch.tensor([0.1, 0.2, 0.3], dtype=D64) ** -2)
    M_p = metric_to_physical(M_n, tf)
    torch.testing.assert_close(M_p, torch.diag(torch.tensor([25.0, 25.0 / 16.0, 1.0 / 0.09], dtype=D64)))
    ls, axes = to_physical_units(torch.tensor([0.1, 0.2, 0.3], dtype=D64), torch.eye(3, dtype=D64), tf)
    torch.testing.assert_close(ls, torch.tensor([0.2, 0.3, 0.8], dtype=D64))  # canonical: ascending
    # shortest along x, then z, longest along y (columns, up to sign)
    torch.testing.assert_close(axes.abs(), torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=D64))
    # IsotropicNormalize on the same box: every length-scale times 4, directions unchanged
    ls_i, axes_i = to_physical_units(
        torch.tensor([0.1, 0.2, 0.3], dtype=D64), torch.eye(3, dtype=D64), IsotropicNormalize(3, bounds=BOX)
    )
    torch.testing.assert_close(ls_i, torch.tensor([0.4, 0.8, 1.2], dtype=D64))
    torch.testing.assert_close(axes_i.abs(), torch.eye(3, dtype=D64))


def test_metric_to_physical_oblique_by_hand():
    # M_n = [[2,1,0],[1,2,0],[0,0,1]] (principal axes at 45 deg in normalised x-y). With S = diag(1/2, 1/4, 1):
    # M_phys = [[2/4, 1/8, 0], [1/8, 2/16, 0], [0, 0, 1]]; its x-y block [[a, b], [b, c]] has eigenvalues
    # (a + c)/2 +- sqrt(((a - c)/2)^2 + b^2) and the eigenvector of the larger one at angle
    # atan2(2b, a - c)/2 from the x axis: 16.85 deg, not the 45 deg read off naively in the normalised space.
    M_n = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=D64)
    a, b, c = 0.5, 0.125, 0.125
    torch.testing.assert_close(
        metric_to_physical(M_n, Normalize(3, bounds=BOX)),
        torch.tensor([[a, b, 0.0], [b, c, 0.0], [0.0, 0.0, 1.0]], dtype=D64),
    )
    lam_hi = (a + c) / 2 + math.sqrt(((a - c) / 2) ** 2 + b**2)
    lam_lo = (a + c) / 2 - math.sqrt(((a - c) / 2) ** 2 + b**2)
    theta = 0.5 * math.atan2(2 * b, a - c)
    assert math.degrees(theta) == pytest.approx(16.845, abs=1e-3)
    ls_n, R_n = functional.metric_to_canonical(M_n)
    ls, axes = to_physical_units(ls_n, R_n, Normalize(3, bounds=BOX))
    # ascending: z (eigenvalue 1) is the shortest axis, then the x-y eigenvector of lam_hi, then that of lam_lo
    torch.testing.assert_close(ls, torch.tensor([1.0, lam_hi**-0.5, lam_lo**-0.5], dtype=D64))
    torch.testing.assert_close(axes[:, 0].abs(), torch.tensor([0.0, 0.0, 1.0], dtype=D64))
    u = torch.tensor([math.cos(theta), math.sin(theta), 0.0], dtype=D64)
    assert min(_angle_deg(axes[:, 1], u), _angle_deg(axes[:, 1], -u)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["normalize", "isotropic", "standardize", "batched"])
def test_physical_kernel_equals_kernel_on_transformed_inputs(kind, generator):
    # Independent check of the whole mapping: k_phys(x, x') with the mapped (l, R) equals k_n(T x, T x').
    X = _box_points(15, 5)
    tf = {
        "normalize": Normalize(3, bounds=BOX),
        "isotropic": IsotropicNormalize(3, bounds=BOX),
        "standardize": InputStandardize(3),
        "batched": Normalize(3, batch_shape=torch.Size([2])),
    }[kind]
    batch = (2,) if kind == "batched" else ()
    Xb = torch.stack([X, X * torch.tensor([1.0, 0.5, 3.0], dtype=D64)]) if batch else X
    tf.train()
    Xn = tf(Xb)
    ls_n = 0.1 + torch.rand(*batch, 3, generator=generator, dtype=D64)
    R_n = so3.random_rotation(*batch, generator=generator, dtype=D64)
    ls_p, R_p = to_physical_units(ls_n, R_n, tf)
    A_n, A_p = functional.so3_whitening_matrix(ls_n, R_n), functional.so3_whitening_matrix(ls_p, R_p)
    K_n = functional.covariance(Xn, Xn, A_n, 2.5)  # batch x 15 x 15: A's batch matches the inputs'
    K_p = functional.covariance(Xb, Xb, A_p, 2.5)
    torch.testing.assert_close(K_p, K_n, atol=1e-10, rtol=1e-10)
    if kind == "isotropic":  # length-scales times the common scale, directions unchanged
        ls_c, R_c = so3.canonicalize(ls_n * 4.0, R_n)
        torch.testing.assert_close(ls_p, ls_c)
        torch.testing.assert_close(R_p, R_c)


@pytest.mark.parametrize("dim", [2, 4, 5])
@pytest.mark.parametrize("kind", ["normalize", "isotropic"])
def test_physical_units_in_any_dimension(dim, kind, generator):
    # The same independent check in d dimensions, through the model helper too: a RotatedAnisotropicKernel(d) behind
    # a per-axis Normalize or IsotropicNormalize; k_phys(x, x') with physical_canonical's (l, R) equals the model's
    # kernel on the transformed inputs, and fit_map's warning no longer names an "SO(3) kernel".
    from gpytorch_so3 import RotatedAnisotropicKernel, sod
    from gpytorch_so3.botorch_utils import physical_canonical

    hi = torch.arange(1.0, dim + 1.0, dtype=D64)
    bounds = torch.stack([torch.zeros(dim, dtype=D64), hi])
    X = torch.rand(12, dim, generator=generator, dtype=D64) * hi
    tf = Normalize(dim, bounds=bounds) if kind == "normalize" else IsotropicNormalize(dim, bounds=bounds)
    k = RotatedAnisotropicKernel(dim, nu=2.5).to(D64)
    k.lengthscale = 0.1 + torch.rand(1, dim, generator=generator, dtype=D64)
    k.rotation = sod.log_map(sod.random_rotation(dim, generator=generator, dtype=D64))
    model = SingleTaskGP(X, torch.randn(12, 1, generator=generator, dtype=D64), covar_module=k, input_transform=tf)
    ls_p, R_p = physical_canonical(model)
    ls_t, R_t = to_physical_units(k.lengthscale.detach(), k.rotation_matrix.detach(), tf)
    torch.testing.assert_close(ls_p, ls_t)
    torch.testing.assert_close(R_p, R_t)
    assert bool((ls_p[1:] >= ls_p[:-1]).all())  # canonical: ascending
    torch.testing.assert_close(R_p.mT @ R_p, torch.eye(dim, dtype=D64))
    phys = RotatedAnisotropicKernel(dim, nu=2.5).to(D64)
    phys.lengthscale = ls_p.reshape(1, dim)
    phys.rotation = sod.log_map(R_p)
    tf.eval()
    with torch.no_grad():
        torch.testing.assert_close(phys(X).to_dense(), k(tf(X)).to_dense(), atol=1e-10, rtol=1e-10)
    if kind == "isotropic":  # length-scales times the common scale (the largest range), directions unchanged
        ls_c, R_c = sod.canonicalize(k.lengthscale.detach().reshape(dim) * float(hi.max()), k.rotation_matrix.detach())
        torch.testing.assert_close(ls_p, ls_c)
        torch.testing.assert_close(R_p, R_c)
    else:
        messages = check_input_scaling(model, warn=False)
        assert len(messages) == 1 and "anisotropic kernel's columns" in messages[0] and "SO(3)" not in messages[0]
    with pytest.raises(ValueError, match=f"lengthscale must have shape \\(..., {dim}\\)"):
        to_physical_units(torch.ones(dim + 1), torch.eye(dim, dtype=D64), tf)


def test_scale_factors_chains_indices_and_errors():
    X4 = torch.cat([_box_points(10, 6), torch.rand(10, 1, dtype=D64)], dim=-1)
    chain = ChainedInputTransform(
        iso=IsotropicNormalize(4, indices=[0, 1, 2], bounds=BOX), other=Normalize(4, indices=[3])
    )
    chain(X4)
    torch.testing.assert_close(input_scale_factors(chain, dims=(0, 1, 2)), torch.full((3,), 4.0, dtype=D64))
    # chained affine maps multiply; untouched columns count 1
    two = ChainedInputTransform(a=Normalize(3, bounds=BOX), b=IsotropicNormalize(3, bounds=BOX * 3))
    torch.testing.assert_close(input_scale_factors(two), torch.tensor([2.0, 4.0, 1.0], dtype=D64) * 12.0)
    torch.testing.assert_close(
        input_scale_factors(Normalize(3, indices=[1], bounds=BOX[:, 1:2])), torch.tensor([1.0, 4.0, 1.0], dtype=D64)
    )
    torch.testing.assert_close(
        input_scale_factors(Normalize(3, bounds=BOX, reverse=True)), torch.tensor([0.5, 0.25, 1.0], dtype=D64)
    )
    torch.testing.assert_close(input_scale_factors(None), torch.ones(3, dtype=D64))
    with pytest.raises(TypeError, match="cannot map back through a Log10"):
        input_scale_factors(Log10(indices=[0]))
    with pytest.raises(ValueError, match="at least two distinct"):
        input_scale_factors(None, dims=(0, 0, 1))
    with pytest.raises(ValueError, match="at least two distinct"):
        input_scale_factors(None, dims=(0,))
    with pytest.raises(ValueError, match="positive"):
        input_scale_factors(torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(\.\.\., d, d\)"):
        metric_to_physical(torch.ones(2, 3), None)
    with pytest.raises(ValueError, match="metric's 2 input columns"):
        metric_to_physical(torch.eye(2), None, dims=(0, 1, 2))


# ------------------------------------------------------------------------------------------ the shear warning
def _stgp(X, Y, tf=None, covar=None):
    return SingleTaskGP(
        X, Y, covar_module=covar or so3_covar_module(), input_transform=tf, outcome_transform=Standardize(m=Y.shape[-1])
    )


def test_warning_fires_for_normalize_not_for_isotropic():
    X = _box_points(12, 7)
    Y = _oblique(X)
    bad = _stgp(X, Y, Normalize(3))  # learned per-axis ranges ~ (2, 4, 1)
    with pytest.warns(NonIsotropicInputScalingWarning, match="shears"):
        msgs = check_input_scaling(bad)
    assert len(msgs) == 1
    assert check_input_scaling(bad, warn=False) == msgs  # warn=False: same findings, silently
    for tf in (
        IsotropicNormalize(3),
        IsotropicNormalize(3, bounds=BOX),
        None,
        Normalize(3, bounds=torch.tensor([[0.0, 1, 2], [3, 4, 5]], dtype=D64)),
    ):  # a cube: no shear
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert check_input_scaling(_stgp(X, Y, tf)) == []
    # filterable by class
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NonIsotropicInputScalingWarning)
        assert len(check_input_scaling(bad)) == 1


def test_warning_respects_active_dims_and_model_lists():
    X4 = torch.cat([_box_points(12, 8), 50 * torch.rand(12, 1, dtype=D64)], dim=-1)
    Y = _oblique(X4)
    covar = so3_product_covar_module(4, spatial_dims=(0, 1, 2))
    ok_tf = ChainedInputTransform(iso=IsotropicNormalize(4, indices=[0, 1, 2]), other=Normalize(4, indices=[3]))
    ok = _stgp(X4, Y, ok_tf, covar)
    assert check_input_scaling(ok) == []  # per-axis scaling of the non-spatial column is harmless
    bad = _stgp(X4, Y, Normalize(4), so3_product_covar_module(4))
    with pytest.warns(NonIsotropicInputScalingWarning):
        assert len(check_input_scaling(bad)) == 1
    # spatial columns (1, 2, 3): the huge column 3 is among them
    bad2 = _stgp(X4, Y, IsotropicNormalize(4, indices=[0, 1, 2]), so3_product_covar_module(4, spatial_dims=(1, 2, 3)))
    with pytest.warns(NonIsotropicInputScalingWarning):
        assert len(check_input_scaling(bad2)) == 1
    X = X4[:, :3]
    mlist = ModelListGP(_stgp(X, Y, IsotropicNormalize(3)), _stgp(X, Y, Normalize(3)))
    with pytest.warns(NonIsotropicInputScalingWarning):
        assert len(check_input_scaling(mlist)) == 1


def test_warning_for_models_that_declare_their_input_dims():
    """A model without an anisotropic kernel module (yet) is checked on the columns it declares (no import of it)."""
    X = _box_points(10, 9)

    class Declared(SingleTaskGP):
        anisotropic_input_dims = (0, 1, 2)

    bad = Declared(X, _oblique(X), input_transform=Normalize(3))  # default covar_module: no SO(3) kernel
    with pytest.warns(NonIsotropicInputScalingWarning):
        assert len(check_input_scaling(bad)) == 1
    assert check_input_scaling(Declared(X, _oblique(X), input_transform=IsotropicNormalize(3))) == []
    assert check_input_scaling(SingleTaskGP(X, _oblique(X), input_transform=Normalize(3))) == []  # declares nothing


def test_warning_for_fully_bayesian_model():
    X = _box_points(10, 9)
    with pytest.warns(NonIsotropicInputScalingWarning):  # the model's own check at construction ...
        fb = SO3FullyBayesianGP(X, _oblique(X), input_transform=Normalize(3), outcome_transform=Standardize(m=1))
    with pytest.warns(NonIsotropicInputScalingWarning):  # ... and ours, before any sample is loaded
        assert len(check_input_scaling(fb)) == 1
    fb_ok = SO3FullyBayesianGP(
        X, _oblique(X), input_transform=IsotropicNormalize(3), outcome_transform=Standardize(m=1)
    )
    assert check_input_scaling(fb_ok) == []


def test_fit_map_warns_behind_normalize():
    # Needs the one-line call `check_input_scaling(model, stacklevel=3)` in gpytorch_so3.fit.fit_map.
    X = _box_points(12, 10)
    model = _stgp(X, _oblique(X), Normalize(3))
    with pytest.warns(NonIsotropicInputScalingWarning):
        fit_map(model, num_restarts=1, seed=0, optimizer_options={"maxiter": 5})


# ------------------------------------------------------------------------------------------ models
def _mll_value(model):
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    with torch.no_grad():
        v = float(mll(model(*model.train_inputs), model.train_targets).sum())
    model.eval()
    return v


def test_singletaskgp_fit_gpytorch_mll_and_fit_map():
    X = _box_points(20, 11)
    Y = _oblique(X, noise=0.05)
    model = _stgp(X, Y, IsotropicNormalize(3, bounds=BOX))
    before = _mll_value(model)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), optimizer_kwargs={"options": FAST})
    after = _mll_value(model)
    # per-point objective; +0.2 nats per point (4 in total) is far beyond round-off: the default initial values
    # (isotropic 0.3, identity rotation) are not the optimum for this oblique ridge, so fitting must move them
    assert after > before + 0.2
    model2 = fit_map(_stgp(X, Y, IsotropicNormalize(3, bounds=BOX)), num_restarts=2, seed=0, optimizer_options=FAST)
    assert not model2.training
    assert _mll_value(model2) > before + 0.2
    post = model2.posterior(_box_points(7, 12))
    assert post.mean.shape == (7, 1) and bool(torch.isfinite(post.variance).all())
    # physical read-out: the kernel's canonical form in normalised units times the common scale 4
    ls, axes = physical_canonical(model2)
    ls_n, R_n = model2.covar_module.base_kernel.canonical()
    torch.testing.assert_close(ls, 4.0 * ls_n.squeeze(0))
    torch.testing.assert_close(axes, R_n.squeeze(0))
    with pytest.raises(ValueError, match="has 0 rotated/full-SPD kernels"):
        physical_canonical(SingleTaskGP(X, Y, input_transform=IsotropicNormalize(3)))


def test_physical_principal_axes_is_a_deprecated_alias():
    X, Y = 4 * torch.rand(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    model = SingleTaskGP(X, Y, covar_module=so3_covar_module(), input_transform=IsotropicNormalize(3))
    with pytest.warns(DeprecationWarning, match="physical_principal_axes is deprecated.*physical_canonical"):
        old = physical_principal_axes(model)
    for a, b in zip(old, physical_canonical(model), strict=True):
        assert torch.equal(a, b)


def test_model_list_of_two_so3_models():
    X = _box_points(16, 13)
    Y1, Y2 = _oblique(X), torch.cos(2 * X[:, :1] - X[:, 1:2])
    models = [
        fit_map(_stgp(X, Y, IsotropicNormalize(3)), num_restarts=1, seed=i, optimizer_options=FAST)
        for i, Y in enumerate((Y1, Y2))
    ]
    mlist = ModelListGP(*models)
    Xt = _box_points(5, 14)
    post = mlist.posterior(Xt)
    assert post.mean.shape == (5, 2)
    for j, m in enumerate(models):
        torch.testing.assert_close(post.mean[:, j], m.posterior(Xt).mean[:, 0])
    # the list also trains jointly with BoTorch's fitter
    from gpytorch.mlls import SumMarginalLogLikelihood

    mlist2 = ModelListGP(_stgp(X, Y1), _stgp(X, Y2))
    fit_gpytorch_mll(SumMarginalLogLikelihood(mlist2.likelihood, mlist2), optimizer_kwargs={"options": FAST})
    assert bool(torch.isfinite(mlist2.posterior(Xt).mean).all())


def test_batched_multi_output_matches_single_output_models():
    X = _box_points(18, 15)
    Y = torch.cat([_oblique(X), torch.cos(2 * X[:, :1] - X[:, 1:2])], dim=-1)  # n x 2
    model = SingleTaskGP(
        X,
        Y,
        covar_module=so3_covar_module(batch_shape=torch.Size([2])),
        input_transform=IsotropicNormalize(3),
        outcome_transform=Standardize(m=2),
    )
    fit_map(model, num_restarts=1, seed=0, optimizer_options=FAST)
    k = model.covar_module.base_kernel
    assert k.lengthscale.shape == (2, 1, 3) and k.rotation.shape == (2, 3)
    assert not torch.allclose(k.metric[0], k.metric[1])  # two outputs, two fitted metrics
    Xt = _box_points(6, 16)
    post = model.posterior(Xt)
    assert post.mean.shape == (6, 2)
    for j in range(2):  # a single-output model with output j's hyperparameters predicts the same
        single = SingleTaskGP(
            X,
            Y[:, j : j + 1],
            covar_module=so3_covar_module(),
            input_transform=IsotropicNormalize(3),
            outcome_transform=Standardize(m=1),
        )
        single.covar_module.base_kernel.initialize(lengthscale=k.lengthscale[j], rotation=k.rotation[j])
        single.covar_module.initialize(outputscale=model.covar_module.outputscale[j])
        single.likelihood.noise = model.likelihood.noise[j]
        single.mean_module.initialize(constant=model.mean_module.constant[j])
        single.eval()
        torch.testing.assert_close(single.posterior(Xt).mean[:, 0], post.mean[:, j])
        torch.testing.assert_close(single.posterior(Xt).variance[:, 0], post.variance[:, j])


def test_condition_on_observations_and_fantasize():
    X, Xnew, Xt = _box_points(15, 17), _box_points(3, 18), _box_points(5, 19)
    Y, Ynew = _oblique(X), _oblique(Xnew)
    model = fit_map(_stgp(X, Y, IsotropicNormalize(3, bounds=BOX)), num_restarts=1, seed=0, optimizer_options=FAST)
    model.posterior(Xt)  # gpytorch builds its prediction caches on the first prediction; conditioning needs them
    cond = model.condition_on_observations(Xnew, Ynew)  # original units, as BoTorch 0.18 expects
    # reference: the same hyperparameters on the concatenated data, built from scratch
    ref = _stgp(torch.cat([X, Xnew]), torch.cat([Y, Ynew]), IsotropicNormalize(3, bounds=BOX))
    ref.load_state_dict(model.state_dict(), strict=False)
    ref.outcome_transform = model.outcome_transform  # conditioning keeps the original standardisation
    ref.eval()
    torch.testing.assert_close(cond.posterior(Xt).mean, ref.posterior(Xt).mean, atol=1e-8, rtol=1e-6)
    # fantasize: a batch of 4 fantasy models, each the model conditioned on one fantasised outcome
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fm = model.fantasize(Xnew, sampler=SobolQMCNormalSampler(torch.Size([4]), seed=0))
    fpost = fm.posterior(Xt)
    assert fpost.mean.shape == (4, 5, 1) and bool(torch.isfinite(fpost.variance).all())
    y_f = model.outcome_transform.untransform(fm.train_targets[:, -3:].unsqueeze(-1))[0]  # 4 x 3 x 1
    for i in (0, 3):
        one = model.condition_on_observations(Xnew, y_f[i])
        torch.testing.assert_close(fpost.mean[i], one.posterior(Xt).mean, atol=1e-8, rtol=1e-6)


def test_four_inputs_so3_times_matern():
    X4 = torch.cat([_box_points(20, 20), torch.rand(20, 1, dtype=D64) * 10], dim=-1)
    Y = _oblique(X4) * torch.cos(0.3 * X4[:, 3:])
    covar = so3_product_covar_module(4, spatial_dims=(0, 1, 2))
    assert isinstance(covar.base_kernel, ProductKernel)
    so3k, other = covar.base_kernel.kernels
    assert isinstance(so3k, SO3AnisotropicKernel) and isinstance(other, MaternKernel)
    assert other.active_dims.tolist() == [3] and so3k.active_dims.tolist() == [0, 1, 2]
    assert {n for n, *_ in covar.named_priors()} >= {
        "outputscale_prior",
        "base_kernel.kernels.0.lengthscale_prior",
        "base_kernel.kernels.0.rotation_prior",
        "base_kernel.kernels.1.lengthscale_prior",
    }
    tf = ChainedInputTransform(iso=IsotropicNormalize(4, indices=[0, 1, 2]), other=Normalize(4, indices=[3]))
    model = _stgp(X4, Y, tf, covar)
    fit_map(model, num_restarts=1, seed=0, optimizer_options=FAST)
    # value check against an explicit product of the two factors on the transformed inputs
    Z = model.input_transform(X4[:6])
    K = covar(Z).to_dense()
    ref_so3 = functional.covariance(Z[:, :3], Z[:, :3], so3k.whitening_matrix, 2.5)
    ref_other = MaternKernel(nu=2.5).to(D64)
    ref_other.lengthscale = other.lengthscale
    expected = covar.outputscale * ref_so3 * ref_other(Z[:, 3:]).to_dense()
    torch.testing.assert_close(K, expected.detach(), atol=1e-10, rtol=1e-8)
    assert bool(torch.isfinite(model.posterior(X4[:3]).mean).all())
    # dim == 3 gives the plain factory; bad arguments are rejected
    assert isinstance(so3_product_covar_module(3).base_kernel, SO3AnisotropicKernel)
    with pytest.raises(ValueError, match="three distinct"):
        so3_product_covar_module(4, spatial_dims=(0, 1, 4))
    with pytest.raises(ValueError, match="dim must be"):
        so3_product_covar_module(2)
    with pytest.raises(TypeError, match="so3_product_covar_module: dim must be an int"):
        so3_product_covar_module(4.0)


# ------------------------------------------------------------------------------------------ BO loops
def _check_candidates(cand, bounds, q):
    assert cand.shape == (q, bounds.shape[-1])
    assert bool(torch.isfinite(cand).all())
    assert bool((cand >= bounds[0] - 1e-9).all()) and bool((cand <= bounds[1] + 1e-9).all())


ACQ_OPTS = {"num_restarts": 2, "raw_samples": 32, "options": {"maxiter": 15}}


@pytest.mark.parametrize("scaling", ["isotropic", "none"])
def test_bo_loop_with_fit_map_surrogate(scaling):
    bounds = BOX if scaling == "isotropic" else torch.tensor([[0.0] * 3, [1.0] * 3], dtype=D64)
    X = _box_points(8, 21, box=bounds)
    Y = _oblique(X, noise=0.01)
    for it in range(2):
        tf = IsotropicNormalize(3, bounds=bounds) if scaling == "isotropic" else None
        model = fit_map(_stgp(X, Y, tf), num_restarts=1, seed=it, optimizer_options=FAST)
        sampler = SobolQMCNormalSampler(torch.Size([32]), seed=it)
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler)
        cand, val = optimize_acqf(acq, bounds=bounds, q=2, **ACQ_OPTS)
        _check_candidates(cand, bounds, 2)
        assert math.isfinite(float(val))
        X, Y = torch.cat([X, cand]), torch.cat([Y, _oblique(cand, noise=0.01, seed=it)])
    assert X.shape == (12, 3)


def _offset_y(X):
    # far from standardised (mean ~10, std ~1.4): a posterior on the wrong (standardised) scale would be off by ~10
    return 10.0 + 2.0 * _oblique(X, noise=0.01)


@pytest.fixture(scope="module")
def nuts_model():
    with torch.random.fork_rng():
        X = _box_points(12, 22)
        model = SO3FullyBayesianGP(
            X, _offset_y(X), input_transform=IsotropicNormalize(3, bounds=BOX), outcome_transform=Standardize(m=1)
        )
        fit_nuts(model, warmup_steps=16, num_samples=8, thinning=1, seed=0, progress=False)
    return model, X


def test_fully_bayesian_posterior_has_mcmc_batch(nuts_model):
    model, X = nuts_model
    S = model.num_mcmc_samples
    assert S == 8 and model._is_fully_bayesian
    post = model.posterior(_box_points(4, 23))
    assert isinstance(post, GaussianMixturePosterior)
    assert post.mean.shape == (S, 4, 1) and post.mean.shape[MCMC_DIM] == S
    batch = model.posterior(_box_points(10, 24).reshape(5, 2, 3))
    assert batch.mean.shape == (5, S, 2, 1) and batch.mixture_mean.shape == (5, 2, 1)
    # mixture moments are the moments of the equal-weight mixture over the MCMC dimension
    torch.testing.assert_close(batch.mixture_mean, batch.mean.mean(MCMC_DIM))
    mix_var = batch.variance.mean(MCMC_DIM) + batch.mean.pow(2).mean(MCMC_DIM) - batch.mixture_mean.pow(2)
    torch.testing.assert_close(batch.mixture_variance, mix_var)
    assert bool((batch.mixture_variance > 0).all())
    # the posterior is on the original outcome scale (Standardize untransformed): on average over the training
    # points it predicts the data's level (~10); on the standardised scale it would predict ~0
    Y = _offset_y(X)
    with torch.no_grad():
        near = model.posterior(X).mixture_mean
    assert abs(float(near.mean() - Y.mean())) < 0.5 * float(Y.std())


@pytest.mark.parametrize("acq_name", ["qLogNEI", "qLogEI", "qUCB"])
def test_fully_bayesian_acquisition_q2(nuts_model, acq_name):
    model, X = nuts_model
    Y = _offset_y(X)
    sampler = SobolQMCNormalSampler(torch.Size([32]), seed=0)
    acq = {
        "qLogNEI": lambda: qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler),
        "qLogEI": lambda: qLogExpectedImprovement(model, best_f=Y.max(), sampler=sampler),
        "qUCB": lambda: qUpperConfidenceBound(model, beta=2.0, sampler=sampler),
    }[acq_name]()
    vals = acq(_box_points(6, 25).reshape(3, 2, 3))
    assert vals.shape == (3,) and bool(torch.isfinite(vals).all())  # averaged over the MCMC batch
    cand, val = optimize_acqf(acq, bounds=BOX, q=2, **ACQ_OPTS)
    _check_candidates(cand, BOX, 2)
    assert math.isfinite(float(val))


def test_bo_loop_with_nuts_surrogate():
    bounds = BOX
    X = _box_points(8, 26)
    Y = _oblique(X, noise=0.01)
    for it in range(2):
        # the data-based variant here (the fixture above uses the bounds-based one)
        model = SO3FullyBayesianGP(X, Y, input_transform=IsotropicNormalize(3), outcome_transform=Standardize(m=1))
        fit_nuts(model, warmup_steps=16, num_samples=8, thinning=1, seed=it, progress=False)
        sampler = SobolQMCNormalSampler(torch.Size([32]), seed=it)
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler)
        cand, _ = optimize_acqf(acq, bounds=bounds, q=2, **ACQ_OPTS)
        _check_candidates(cand, bounds, 2)
        X, Y = torch.cat([X, cand]), torch.cat([Y, _oblique(cand, noise=0.01, seed=it)])
    assert X.shape == (12, 3)
