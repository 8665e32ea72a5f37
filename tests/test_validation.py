"""The shared argument check (``gpytorch_so3._validation.check_int``) and the public entry points that use it.

Every integer option of the package goes through one helper, so the same bad value gets the same kind of error
everywhere: ``TypeError`` for a value that is not an integer (``bool`` included), ``ValueError`` for one out of
range, both naming the argument (and the function, where the caller says so).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from gpytorch.kernels import ScaleKernel

from gpytorch_so3 import SO3AnisotropicKernel, bo, botorch_utils, datasets, fit_map, large, pathwise, priors, so3, sod
from gpytorch_so3._validation import check_int
from gpytorch_so3.cli import _demo as _demo_module
from gpytorch_so3.cli._models import fit_model
from gpytorch_so3.fully_bayesian import RotatedPyroModel, SO3FullyBayesianGP, sample_sites
from gpytorch_so3.kernels import RotatedAnisotropicKernel
from gpytorch_so3.kernels.keops import KeOpsRotatedAnisotropicKernel
from gpytorch_so3.nuts import fit_nuts, initial_lengthscale_factors


def test_accepts_integers_of_any_integral_type():
    assert check_int("n", 3, 1) == 3
    out = check_int("n", np.int64(7), 1)
    assert out == 7 and type(out) is int  # numpy integers are returned as Python ints
    assert check_int("n", 5, 0, 5) == 5  # the maximum is inclusive
    assert check_int("n", None, 1, allow_none=True) is None


@pytest.mark.parametrize("value", [2.5, 3.0, "3", True, False, None, torch.tensor(3)])
def test_non_integers_raise_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^f: n must be an int >= 1, got "):
        check_int("n", value, 1, where="f: ")


@pytest.mark.parametrize("value, bound", [(0, ">= 1"), (-4, ">= 1")])
def test_out_of_range_raises_value_error(value, bound):
    with pytest.raises(ValueError, match=rf"^n must be an int {bound}, got {value}$"):
        check_int("n", value, 1)
    with pytest.raises(ValueError, match=r"^n must be an int in \[1, 3\], got 4$"):
        check_int("n", 4, 1, 3)


def test_entry_points_share_the_check():
    """One bad count per module that used to carry its own copy of the check: same error classes everywhere."""
    from gpytorch_so3.bo import PrequentialSelector
    from gpytorch_so3.datasets import make_rotated_field
    from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
    from gpytorch_so3.nuts import fit_nuts
    from gpytorch_so3.pathwise import simulate
    from gpytorch_so3.priors import so3_covar_module
    from gpytorch_so3.scalable.nngp import ordered_neighbours

    X = torch.rand(4, 3, dtype=torch.float64)
    cases = [
        (lambda v: make_rotated_field(n_train=v), "n_train"),
        (lambda v: simulate(so3_covar_module(None), X, v), "simulate: num_samples"),
        (lambda v: PrequentialSelector(window=v), "PrequentialSelector: window"),
        (lambda v: fit_nuts(SO3FullyBayesianGP(X, X[:, :1]), thinning=v), "fit_nuts: thinning"),
        (lambda v: ordered_neighbours(X, v), "m"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError, match=name):
            call(1.5)
        with pytest.raises(ValueError, match=name):
            call(-1)


# ------------------------------------------------------------------------------------------ every entry point
def _X(n: int = 10, d: int = 3) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _Y(X: torch.Tensor) -> torch.Tensor:
    return torch.sin(3.0 * X.sum(-1, keepdim=True))


def _so3_gp(n: int = 10) -> SingleTaskGP:
    X = _X(n)
    return SingleTaskGP(X, _Y(X), covar_module=ScaleKernel(SO3AnisotropicKernel(nu=2.5)))


def _fit_map(**kwargs):
    kwargs = {"num_restarts": 1, "seed": 0, "optimizer_options": {"maxiter": 2}, "halving": ((8, 2, 0.5),), **kwargs}
    return fit_map(_so3_gp(), **kwargs)


def _plot(name: str, *args, **kwargs):
    """A plot function's result, its figure closed."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from gpytorch_so3 import plot

    fig, ax = getattr(plot, name)(*args, **kwargs)
    plt.close(fig)
    return fig, ax


def _vti(**kwargs):
    text = (
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian"><ImageData WholeExtent="0 2 0 1 0 1" '
        'Origin="0 0 0" Spacing="1 1 1"><Piece Extent="0 2 0 1 0 1"><CellData Scalars="a">'
        '<DataArray type="Int32" Name="a" format="ascii">3 4</DataArray></CellData></Piece></ImageData></VTKFile>'
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.vti"
        path.write_text(text)
        return datasets.load_vti(path, **kwargs)


def _cg_settings(**kwargs):
    with large.cg_settings(**kwargs):
        pass


def _scalable(fit: str, **kwargs):
    from gpytorch_so3 import scalable

    X = _X(40)
    common = {"batch_size": np.int64(20), "epochs": np.int64(0), "init_size": np.int64(10)}
    common.update(init_restarts=np.int64(1), seed=np.int64(0), progress=False)
    return getattr(scalable, fit)(X, _Y(X).squeeze(-1), **{**common, **kwargs})


def _demo(**kwargs):
    return _demo_module.run_oilsands_demo(
        quiet=True, num_restarts=1, kinds=("ard",), max_train=40, max_iter=2, **kwargs
    )


def _nuts(**kwargs):
    X = _X()
    kwargs = {"num_samples": 4, "warmup_steps": 2, "thinning": 1, "seed": 0, "num_chains": np.int64(1), **kwargs}
    return fit_nuts(SO3FullyBayesianGP(X, _Y(X)), disable_progbar=True, **kwargs)


def _bo(name: str, **kwargs):
    X = _X(8, 2)
    return getattr(bo, name)(X, _Y(X), **kwargs)


def _case(case_id: str, call, name: str, good: int, out_of_range: int, stored=None):
    """``call(value)`` of one integer argument; ``name``: a regex naming it in both errors; ``stored``: what the
    result keeps of it (checked to be a Python int), or ``None``."""
    return pytest.param(call, name, good, out_of_range, stored, id=case_id)


_FOLDS = torch.tensor([0, 1, 2, 0, 1])
_BOX = torch.tensor([[0.0, 0.0], [1.0, 1.0]])

#: Every public entry point whose integer arguments go through check_int (other integer arguments of a call are
#: numpy integers too where that is cheap).
ENTRY_POINTS = [
    # fit
    _case("fit_map-num_restarts", lambda v: _fit_map(num_restarts=v), "fit_map: num_restarts", 1, 0),
    _case("fit_map-max_points", lambda v: _fit_map(halving=((v, np.int64(2), 0.5),)), "halving", 8, 0),
    _case("fit_map-max_iterations", lambda v: _fit_map(halving=((8, v, 0.5),)), "halving", 2, 0),
    # data sets
    _case("oilsands_map", lambda v: datasets.oilsands_map(min_samples=v), "min_samples", 3, 0),
    _case("hole_folds", lambda v: datasets.hole_folds(torch.tensor([1, 1, 2, 2, 3]), v), "n_folds", 2, 4),
    _case("load_vti-stride", lambda v: _vti(stride=v), "stride", 1, 0),
    _case("load_vti-stride-entry", lambda v: _vti(stride=(1, v, 1)), "stride", 1, 0),
    _case("load_vti-n_points", lambda v: _vti(n_points=v), "n_points", 1, 0),
    # plots
    _case(
        "plot_ellipsoid", lambda v: _plot("plot_ellipsoid", SO3AnisotropicKernel(), resolution=v), "resolution", 4, 3
    ),
    _case(
        "plot_lengthscale_posterior",
        lambda v: _plot("plot_lengthscale_posterior", torch.rand(20, 3) + 0.1, bins=v, kde=False),
        "bins",
        5,
        0,
    ),
    _case(
        "plot_field_slice-resolution",
        lambda v: _plot("plot_field_slice", _so3_gp(), resolution=v, chunk=np.int64(4)),
        "resolution",
        2,
        1,
    ),
    _case(
        "plot_field_slice-chunk",
        lambda v: _plot("plot_field_slice", _so3_gp(), resolution=np.int64(2), chunk=v),
        "chunk",
        4,
        0,
    ),
    # pathwise sampling
    _case(
        "gen_anisotropic_features",
        lambda v: pathwise.gen_anisotropic_features(SO3AnisotropicKernel(), num_inputs=3, num_outputs=v),
        "num_outputs",
        4,
        0,
        stored=lambda fmap: fmap.num_outputs,
    ),
    _case(
        "simulate",
        lambda v: pathwise.simulate(SO3AnisotropicKernel(), _X(4), np.int64(1), num_features=v, chunk_size=np.int64(2)),
        "simulate: num_features",
        4,
        0,
    ),
    _case("regular_grid", lambda v: pathwise.regular_grid(_BOX, (v, 2)), "regular_grid: shape", 2, 0),
    # SO(3) / SO(d)
    _case("so3.random_rotation", lambda v: so3.random_rotation(v), "random_rotation: shape", 2, -1),
    _case("sod.random_rotation", lambda v: sod.random_rotation(v, 2), "dim", 4, 1),
    _case("sod.random_rotation-shape", lambda v: sod.random_rotation(4, v), "random_rotation: shape", 2, -1),
    _case("sod.num_coordinates", lambda v: sod.num_coordinates(v), "dim", 4, 1),
    _case("sod.coordinate_pairs", lambda v: sod.coordinate_pairs(v), "dim", 4, 1),
    _case("sod.exp_map", lambda v: sod.exp_map(torch.zeros(1), v), "dim", 2, 1),
    _case("sod.hat", lambda v: sod.hat(torch.zeros(1), v), "dim", 2, 1),
    _case("sod.signed_permutations", lambda v: sod.signed_permutations(v), "dim", 2, 1),
    # priors, kernels, models
    _case("GaussianLieAlgebraPrior", lambda v: priors.GaussianLieAlgebraPrior(v), "dim", 4, 1, lambda p: p._dim),
    _case("ShrinkageRotationPrior", lambda v: priors.ShrinkageRotationPrior(v), "dim", 4, 1, lambda p: p._dim),
    _case("default_sod_rotation_prior", priors.default_sod_rotation_prior, "dim", 4, 1, lambda p: p._dim),
    _case(
        "RotatedAnisotropicKernel",
        lambda v: RotatedAnisotropicKernel(v),
        "RotatedAnisotropicKernel: dim",
        2,
        1,
        stored=lambda k: k.dim,
    ),
    _case(
        "KeOpsRotatedAnisotropicKernel",
        lambda v: KeOpsRotatedAnisotropicKernel(v, use_keops=False),
        "dim",
        2,
        1,
        stored=lambda k: k.dim,
    ),
    _case("RotatedPyroModel", lambda v: RotatedPyroModel(v), "RotatedPyroModel: dim", 2, 1, lambda m: m.dim),
    _case("sample_sites", lambda v: sample_sites(v), "dim", 2, 1, lambda s: s["lengthscale"][0]),
    # BoTorch helpers and surrogates
    _case("rotated_covar_module", lambda v: bo.rotated_covar_module(v), "dim", 2, 1, lambda k: k.base_kernel.dim),
    _case("ard_covar_module", lambda v: bo.ard_covar_module(v), "dim", 1, 0),
    _case(
        "so3_product_covar_module",
        lambda v: botorch_utils.so3_product_covar_module(v),
        "so3_product_covar_module: dim",
        4,
        2,
    ),
    _case(
        "IsotropicNormalize",
        lambda v: botorch_utils.IsotropicNormalize(v),
        "IsotropicNormalize: d",
        3,
        0,
        stored=lambda t: t._d,
    ),
    _case(
        "fit_rotated_or_ard",
        lambda v: _bo("fit_rotated_or_ard", num_restarts=v, seed=np.int64(0)),
        "fit_rotated_or_ard: num_restarts",
        1,
        0,
    ),
    _case(
        "rotated_surrogate",
        lambda v: _bo("rotated_surrogate", select="rotated", num_restarts=np.int64(1), seed=v),
        "rotated_surrogate: seed",
        0,
        -1,
    ),
    _case(
        "PrequentialSelector",
        lambda v: bo.PrequentialSelector(num_restarts=v),
        "PrequentialSelector: num_restarts",
        1,
        0,
        stored=lambda s: s.num_restarts,
    ),
    # large data, command line helpers
    _case("cg_settings", lambda v: _cg_settings(max_cholesky_size=v), "max_cholesky_size", 0, -1),
    _case("cg_settings-2", lambda v: _cg_settings(num_trace_samples=v), "num_trace_samples", 1, 0),
    _case(
        "predict_in_chunks",
        lambda v: large.predict_in_chunks(_so3_gp().eval(), _X(5), chunk_size=v),
        "chunk_size",
        2,
        0,
    ),
    _case("split_fold-fold", lambda v: _demo_module.split_fold(_FOLDS, v, max_train=np.int64(2)), "fold", 0, -1),
    _case("split_fold-max_train", lambda v: _demo_module.split_fold(_FOLDS, 0, max_train=v), "max_train", 2, 0),
    _case("run_oilsands_demo", lambda v: _demo(max_fit=v), "max_fit", 10, 9),
    _case("fit_model", lambda v: fit_model("ard", _X(), _Y(_X()), max_iter=v), "fit_model: max_iter", 2, 0),
    # fully Bayesian, scalable
    _case("initial_lengthscale_factors", initial_lengthscale_factors, "initial_lengthscale_factors: dim", 4, 1),
    _case("fit_nuts", lambda v: _nuts(max_tree_depth=v), "fit_nuts: max_tree_depth", 2, 0),
    _case("fit_svgp", lambda v: _scalable("fit_svgp", num_inducing=v), "num_inducing", 4, 0),
    _case("fit_nngp", lambda v: _scalable("fit_nngp", num_neighbours=v), "num_neighbours", 4, 0, lambda gp: gp.m),
]


@pytest.mark.parametrize("call, name, good, out_of_range, stored", ENTRY_POINTS)
def test_entry_point_integer_arguments(call, name, good, out_of_range, stored):
    """numpy integers are accepted (and kept as Python ints), floats raise TypeError, values out of range ValueError."""
    out = call(np.int64(good))
    if stored is not None:
        value = stored(out)
        assert value == good and type(value) is int
    with pytest.raises(TypeError, match=name):
        call(float(good))
    with pytest.raises(ValueError, match=name):
        call(out_of_range)


def test_vecchia_log_likelihood_batch_size():
    gp = _scalable("fit_nngp", num_neighbours=np.int64(4))
    assert torch.isfinite(gp.vecchia_log_likelihood(np.int64(16)))
    with pytest.raises(TypeError, match="vecchia_log_likelihood: batch_size"):
        gp.vecchia_log_likelihood(16.0)
    with pytest.raises(ValueError, match="vecchia_log_likelihood: batch_size"):
        gp.vecchia_log_likelihood(0)
