"""Tests of gpytorch_so3.plot: every figure renders on Agg, draws the expected artists at the expected places.

References are independent of the plotting code: the stereonet projection is checked on known vectors, against
``geo.azimuth_dip`` and against the equal-area property (Haar-uniform directions fill the disc uniformly);
ellipsoid segments and meshes against the metric ``x^T M x = 1``; slices against ``model.posterior``.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg", force=True)
import gpytorch  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from botorch.models import SingleTaskGP  # noqa: E402
from botorch.models.model import Model  # noqa: E402
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior  # noqa: E402
from gpytorch.distributions import MultivariateNormal  # noqa: E402
from gpytorch.kernels import ScaleKernel  # noqa: E402

from gpytorch_so3 import FullSPDKernel, SO3AnisotropicKernel, so3  # noqa: E402
from gpytorch_so3 import functional as F  # noqa: E402
from gpytorch_so3 import plot as P  # noqa: E402
from gpytorch_so3.datasets import make_rotated_field  # noqa: E402
from gpytorch_so3.geo import azimuth_dip  # noqa: E402
from gpytorch_so3.summary import summarize_samples  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _kernel(ls=(0.2, 0.5, 1.0), w=(0.4, -0.3, 0.7), dtype=torch.float64):
    k = SO3AnisotropicKernel(nu=2.5).to(dtype)
    k.lengthscale = torch.tensor(ls, dtype=dtype)
    k.rotation = torch.tensor(w, dtype=dtype)
    return k


def _summary(C=2, D=30, seed=0, noise=True):
    g = torch.Generator().manual_seed(seed)
    draws = {
        "lengthscale": torch.tensor([0.2, 0.5, 1.0]) * torch.exp(0.1 * torch.randn(C, D, 3, generator=g)),
        "rotation": 0.1 * torch.randn(C, D, 3, generator=g) + torch.tensor([0.3, 0.2, 0.1]),
        "outputscale": 1.0 + 0.1 * torch.rand(C, D, generator=g),
        "mean": 0.1 * torch.randn(C, D, generator=g),
    }
    if noise:
        draws["noise"] = 0.01 * (1.0 + torch.rand(C, D, generator=g))
    return summarize_samples(draws)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # makes `import matplotlib.pyplot` fail
    with pytest.raises(ImportError, match=r"pip install 'gpytorch-so3\[plot\]'"):
        P.plot_predictions([0.0, 1.0], [0.0, 1.0])


# --------------------------------------------------------------------------------------------- projection
@pytest.mark.parametrize(
    ("u", "xy"),
    [
        ((0.0, 0.0, -1.0), (0.0, 0.0)),  # vertical down: centre
        ((0.0, 0.0, 2.0), (0.0, 0.0)),  # vertical up (same axis), any length: centre
        ((1.0, 0.0, 0.0), (1.0, 0.0)),  # horizontal East: on the primitive, right
        ((0.0, 1.0, 0.0), (0.0, 1.0)),  # horizontal North: top
        ((0.0, -3.0, 0.0), (0.0, -1.0)),  # horizontal South: kept at its own azimuth (bottom)
        ((-1.0, 0.0, 0.0), (-1.0, 0.0)),  # horizontal West: left
        ((1.0, 1.0, 0.0), (math.sqrt(0.5), math.sqrt(0.5))),  # azimuth 45 on the primitive
        # plunge 45 towards azimuth 90 (East): r = sqrt(2) sin(22.5 deg)
        ((1.0, 0.0, -1.0), (math.sqrt(2) * math.sin(math.radians(22.5)), 0.0)),
        # upward vector flips to the lower hemisphere: plunge 45 towards West
        ((1.0, 0.0, 1.0), (-math.sqrt(2) * math.sin(math.radians(22.5)), 0.0)),
        # plunge 30 towards azimuth 210: r = sqrt(2) sin(30 deg) = 1/sqrt(2)
        (
            (
                math.cos(math.radians(30)) * math.sin(math.radians(210)),
                math.cos(math.radians(30)) * math.cos(math.radians(210)),
                -0.5,
            ),
            (math.sqrt(0.5) * math.sin(math.radians(210)), math.sqrt(0.5) * math.cos(math.radians(210))),
        ),
    ],
)
def test_equal_area_projection_known_vectors(u, xy):
    got = P.equal_area_projection(torch.tensor(u, dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(xy, dtype=torch.float64), atol=1e-12, rtol=0)


def test_equal_area_projection_matches_azimuth_and_plunge(dtype):
    u = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    xy = P.equal_area_projection(u)
    assert xy.dtype == dtype and xy.shape == (500, 2)
    az, dip = azimuth_dip(u)  # independent implementation (geo module)
    r = xy.norm(dim=-1)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(r, math.sqrt(2) * torch.sin(torch.deg2rad(90.0 - dip) / 2), atol=tol, rtol=0)
    az_plot = torch.rad2deg(torch.atan2(xy[:, 0], xy[:, 1])) % 360.0
    diff = (az_plot - az + 180.0) % 360.0 - 180.0
    assert float(diff.abs().max()) < (1e-3 if dtype == torch.float32 else 1e-8)
    # antipodal vectors are the same axis
    torch.testing.assert_close(P.equal_area_projection(-u), xy, atol=tol, rtol=0)


def test_equal_area_projection_is_equal_area():
    # Haar-uniform axes (seed 0, n = 20000) must fill the disc uniformly: P(r <= rho) = rho^2. The binomial sd
    # of each fraction is <= sqrt(0.25 / 20000) = 0.0035, so 0.015 is > 4 sd; an equal-angle (Wulff) net,
    # r = tan(theta / 2), would give P(r <= 0.5) = 0.2 instead of 0.25 and fail.
    R = so3.random_rotation(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = P.equal_area_projection(R[:, :, 0]).norm(dim=-1)
    assert float(r.max()) <= 1.0 + 1e-12
    for rho in (0.3, 0.5, 0.8):
        assert abs(float((r <= rho).double().mean()) - rho**2) < 0.015


def test_equal_area_projection_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        P.equal_area_projection(torch.ones(4, 2))
    with pytest.raises(ValueError, match="zero vector"):
        P.equal_area_projection(torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        P.equal_area_projection(torch.tensor([float("nan"), 0.0, 1.0]))
    # numpy / lists work
    assert P.equal_area_projection([[0.0, 0.0, 1.0]]).shape == (1, 2)


# --------------------------------------------------------------------------------------------- ellipsoid
def _check_segments(ax, lines, ls, R):
    M = F.metric(ls, R).numpy()
    for i, line in enumerate(lines):
        pts = np.asarray(line.get_data_3d())  # 3 x 2: -d, +d
        d = (R[:, i] * ls[i]).numpy()
        np.testing.assert_allclose(pts[:, 1], d, atol=1e-12)
        np.testing.assert_allclose(pts[:, 0], -d, atol=1e-12)
        np.testing.assert_allclose(pts[:, 1] @ M @ pts[:, 1], 1.0, rtol=1e-10)


def test_plot_ellipsoid_artists_and_geometry():
    k = _kernel()
    fig, ax = P.plot_ellipsoid(k)
    assert ax.name == "3d" and fig is ax.figure
    assert len(ax.collections) == 1 and len(ax.lines) == 3
    ls, R = so3.canonicalize(k.lengthscale.detach().squeeze(-2), k.rotation_matrix.detach())
    _check_segments(ax, ax.lines, ls, R)
    fig.canvas.draw()


def test_plot_ellipsoid_with_truth_on_given_axes():
    field = make_rotated_field(n_train=5, n_test=0, seed=3)
    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    fig2, ax2 = P.plot_ellipsoid(ScaleKernel(_kernel()), ax=ax, truth=field, legend=False)
    assert ax2 is ax and fig2 is fig
    assert len(ax.collections) == 2 and len(ax.lines) == 6 and ax.get_legend() is None
    ls, R = field.canonical()
    _check_segments(ax, ax.lines[3:], ls, R)
    fig.canvas.draw()


def test_ellipsoid_mesh_lies_on_the_metric_surface():
    ls = torch.tensor([0.3, 0.1, 2.0], dtype=torch.float64)
    R = so3.exp_map(torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64))
    c = np.array([1.0, -2.0, 0.5])
    mesh = P._ellipsoid_mesh(ls, R, c, 10).reshape(3, -1) - c[:, None]
    q = np.einsum("in,ij,jn->n", mesh, F.metric(ls, R).numpy(), mesh)
    np.testing.assert_allclose(q, 1.0, rtol=1e-10)


@pytest.mark.parametrize("kind", ["pair", "spd", "model", "field", "ard"])
def test_plot_ellipsoid_accepts_several_inputs(kind):
    ls, w = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64), torch.tensor([0.4, -0.3, 0.7], dtype=torch.float64)
    R = so3.exp_map(w)
    if kind == "pair":
        obj = (ls, R)
    elif kind == "spd":
        obj = FullSPDKernel().double()
        obj.cholesky_diag = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    elif kind == "model":
        X = torch.rand(6, 3, dtype=torch.float64)
        obj = SingleTaskGP(X, X.sum(-1, keepdim=True), covar_module=ScaleKernel(_kernel()))
    elif kind == "ard":
        obj = ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=3)).double()
        obj.base_kernel.lengthscale = torch.tensor([0.5, 1.0, 0.2], dtype=torch.float64)
    else:
        obj = make_rotated_field(n_train=5, n_test=0, lengthscale=ls, rotation=w, seed=0)
    _, ax = P.plot_ellipsoid(obj)
    assert len(ax.lines) == 3
    if kind == "ard":  # axis-aligned: the short axis is z, then x, then y
        _check_segments(
            ax,
            ax.lines,
            torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64),
            torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64),
        )
    elif kind != "spd":  # same anisotropy as _kernel(): same canonical segments
        _check_segments(ax, ax.lines, *so3.canonicalize(ls, R))


def test_plot_ellipsoid_errors():
    _fig, ax2d = plt.subplots()
    with pytest.raises(ValueError, match="3-D axes"):
        P.plot_ellipsoid(_kernel(), ax=ax2d)
    batched = SO3AnisotropicKernel(batch_shape=torch.Size([2]))
    with pytest.raises(ValueError, match="batch of 2"):
        P.plot_ellipsoid(batched)
    with pytest.raises(TypeError, match="metric"):
        P.plot_ellipsoid("not a kernel")
    with pytest.raises(ValueError, match="positive"):
        P.plot_ellipsoid((torch.tensor([0.1, -1.0, 1.0]), torch.eye(3)))
    with pytest.raises(ValueError, match="resolution"):
        P.plot_ellipsoid(_kernel(), resolution=2)
    with pytest.raises(TypeError, match="resolution"):
        P.plot_ellipsoid(_kernel(), resolution=10.0)


# --------------------------------------------------------------------------------------------- stereonet
def test_plot_stereonet_artists_and_positions():
    s = _summary()
    fig, ax = P.plot_stereonet(s)
    assert len(ax.patches) == 1 and len(ax.lines) == 1 and len(ax.collections) == 3
    for i in range(3):
        expected = P.equal_area_projection(s.axes[:, :, i]).double().numpy()
        np.testing.assert_allclose(ax.collections[i].get_offsets(), expected, atol=1e-6)
    fig.canvas.draw()


def test_plot_stereonet_truth_which_and_given_axes():
    field = make_rotated_field(n_train=5, n_test=0, seed=2)
    A = so3.random_rotation(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fig, ax = plt.subplots()
    out_fig, out_ax = P.plot_stereonet(A, ax=ax, truth=field, which=(0, 2), legend=False)
    assert out_ax is ax and out_fig is fig
    assert len(ax.collections) == 4  # two sample clouds, two truth stars
    T = field.canonical()[1]
    np.testing.assert_allclose(ax.collections[2].get_offsets()[0], P.equal_area_projection(T[:, 0]).numpy(), atol=1e-12)
    np.testing.assert_allclose(ax.collections[3].get_offsets()[0], P.equal_area_projection(T[:, 2]).numpy(), atol=1e-12)
    # a single 3 x 3 frame, truth given as the matrix of axes
    _, ax1 = P.plot_stereonet(torch.eye(3), truth=torch.eye(3))
    assert len(ax1.collections) == 6
    np.testing.assert_allclose(ax1.collections[2].get_offsets(), [[0.0, 0.0]], atol=1e-12)  # z axis at the centre


def test_plot_stereonet_errors():
    with pytest.raises(ValueError, match=r"\(S, 3, 3\)"):
        P.plot_stereonet(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="which"):
        P.plot_stereonet(torch.eye(3), which=(0, 3))
    with pytest.raises(ValueError, match="3 x 3"):
        P.plot_stereonet(torch.eye(3), truth=torch.ones(3))


# --------------------------------------------------------------------------------------------- length-scales
def test_plot_lengthscale_posterior_artists():
    s = _summary()
    fig, ax = P.plot_lengthscale_posterior(s, truth=[1.0, 0.2, 0.5])
    assert len(ax.patches) == 3 and len(ax.lines) == 6
    assert ax.get_xscale() == "log"
    truth_x = sorted(float(line.get_xdata()[0]) for line in ax.lines[3:])
    assert truth_x == pytest.approx([0.2, 0.5, 1.0])
    fig.canvas.draw()


def test_plot_lengthscale_posterior_kde_integrates_to_one_in_log_space():
    # The y axis is a density per unit ln(l); the KDE is drawn over the data range +- 5% of it, so it integrates to
    # nearly 1 (a KDE with Scott's bandwidth on 2000 log-normal draws leaks ~1% beyond that range).
    g = torch.Generator().manual_seed(0)
    samples = torch.exp(0.2 * torch.randn(2000, 3, generator=g, dtype=torch.float64)) * torch.tensor([0.1, 1.0, 5.0])
    _, ax = P.plot_lengthscale_posterior(samples)
    for line in ax.lines:
        x, y = line.get_xdata(), line.get_ydata()
        area = np.trapezoid(y, np.log(x))
        assert 0.97 < area <= 1.0 + 1e-9


def test_plot_lengthscale_posterior_options_and_errors():
    _fig, ax = plt.subplots()
    samples = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) + 0.1
    _, ax2 = P.plot_lengthscale_posterior(samples, ax=ax, kde=False, truth=(_kernel()))
    assert ax2 is ax and len(ax.lines) == 3 and len(ax.patches) == 3
    with pytest.raises(ValueError, match=r"\(S, 3\)"):
        P.plot_lengthscale_posterior(torch.rand(10, 2))
    with pytest.raises(ValueError, match="positive"):
        P.plot_lengthscale_posterior(-samples)
    with pytest.raises(ValueError, match="3 positive"):
        P.plot_lengthscale_posterior(samples, truth=[1.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="bins"):
        P.plot_lengthscale_posterior(samples, bins=0)
    with pytest.raises(TypeError, match="bins"):
        P.plot_lengthscale_posterior(samples, bins=10.0)


# --------------------------------------------------------------------------------------------- traces
def test_plot_traces_trace():
    pytest.importorskip("arviz")
    s = _summary(C=3, D=25)
    fig, axes = P.plot_traces(s)
    assert axes.shape == (5, 2)  # 3 length-scales, outputscale, noise
    # the trace lines are the canonical draws of each chain (ArviZ may draw more artists than the chains)
    chain1 = s.lengthscale[25:50, 0].numpy()
    assert any(np.allclose(line.get_ydata(), chain1, rtol=1e-6) for line in axes[0, 1].lines)
    fig.canvas.draw()


def test_plot_traces_rank():
    pytest.importorskip("arviz")
    s = _summary(C=2, D=40, noise=False)
    fig, axes = P.plot_traces(s, kind="rank", var_names=["lengthscale", "mean"])
    assert axes.size >= 4
    fig.canvas.draw()


def test_plot_traces_given_axes_and_errors():
    pytest.importorskip("arviz")
    s = _summary(noise=False)
    fig, axes = plt.subplots(4, 2)
    fig2, out = P.plot_traces(s, axes=axes)
    assert fig2 is fig and out[0, 0] is axes[0, 0]
    with pytest.raises(ValueError, match="shape"):
        P.plot_traces(s, axes=axes[:2])
    with pytest.raises(ValueError, match="kind"):
        P.plot_traces(s, kind="forest")
    with pytest.raises(ValueError, match="noise"):
        P.plot_traces(s, var_names=["noise"])
    with pytest.raises(TypeError, match="PosteriorSummary"):
        P.plot_traces(torch.rand(10, 3))


def test_plot_traces_deprecated_options_and_missing_arviz(monkeypatch):
    pytest.importorskip("arviz")
    s = _summary(C=2, D=20)
    with warnings.catch_warnings(record=True) as caught:  # record (pytest.warns would re-emit ArviZ's own warnings)
        warnings.simplefilter("always")
        P.plot_traces(s, use_arviz=False)
    assert any(issubclass(w.category, DeprecationWarning) and "use_arviz" in str(w.message) for w in caught)
    monkeypatch.setitem(sys.modules, "arviz", None)  # simulate an environment without ArviZ
    with pytest.raises(ImportError, match=r"needs arviz: pip install 'gpytorch-so3\[plot\]'"):
        P.plot_traces(s)


# --------------------------------------------------------------------------------------------- predictions
def test_plot_predictions_artists_and_text():
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    pred = torch.tensor([0.5, 1.0, 2.0, 2.0])
    std = torch.tensor([0.1, 0.1, 0.1, 1.0])
    fig, ax = P.plot_predictions(y, pred, std)
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # errorbar markers + diagonal, the bars
    text = ax.texts[0].get_text()
    # independent numbers: RMSE = sqrt((0.25 + 1) / 4), R^2 = 1 - 1.25 / 5, covered: points 2, 3, 4 -> 75%
    assert f"RMSE {math.sqrt(1.25 / 4):.3g}" in text
    assert f"{1 - 1.25 / 5:.3f}" in text
    assert "coverage 75%" in text
    fig.canvas.draw()
    _, ax2 = P.plot_predictions(y.numpy(), pred.unsqueeze(-1))
    assert len(ax2.lines) == 1 and len(ax2.collections) == 1 and "coverage" not in ax2.texts[0].get_text()


def test_plot_predictions_errors():
    with pytest.raises(ValueError, match="same number"):
        P.plot_predictions(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="non-negative"):
        P.plot_predictions(torch.zeros(3), torch.zeros(3), -torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        P.plot_predictions(torch.zeros(3), torch.tensor([0.0, float("nan"), 1.0]))


# --------------------------------------------------------------------------------------------- field slice
def _tiny_model():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(15, 3, generator=g, dtype=torch.float64)
    Y = torch.sin(5 * X[:, :1]) + X[:, 1:2]
    model = SingleTaskGP(X, Y, covar_module=ScaleKernel(_kernel()))
    model.eval()
    return model


def test_plot_field_slice_matches_posterior():
    model = _tiny_model()
    truth = lambda X: X[:, 0] - X[:, 1]
    fig, axes = P.plot_field_slice(
        model,
        z=0.3,
        bounds=((0.0, 2.0), (-1.0, 1.0)),
        resolution=5,
        truth_fn=truth,
        points=model.train_inputs[0],
        points_tol=0.2,
    )
    assert axes.shape == (3,) and [len(a.images) for a in axes] == [1, 1, 1]
    assert len(axes[0].collections) == 1  # the data points near the slice
    near = (model.train_inputs[0][:, 2] - 0.3).abs() <= 0.2
    assert axes[0].collections[0].get_offsets().shape[0] == int(near.sum())
    # image row j, column i is the point (x_i, y_j, z)
    xs, ys = torch.linspace(0.0, 2.0, 5, dtype=torch.float64), torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)
    pts = torch.tensor([[xs[1], ys[3], 0.3], [xs[4], ys[0], 0.3]], dtype=torch.float64)
    with torch.no_grad():
        post = model.posterior(pts)
    mean_img, sd_img, truth_img = (np.asarray(a.images[0].get_array()) for a in axes)
    np.testing.assert_allclose([mean_img[3, 1], mean_img[0, 4]], post.mean.squeeze(-1).numpy(), rtol=1e-8)
    np.testing.assert_allclose([sd_img[3, 1], sd_img[0, 4]], post.variance.sqrt().squeeze(-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose([truth_img[3, 1], truth_img[0, 4]], truth(pts).numpy(), rtol=1e-12)
    assert axes[0].images[0].get_extent() == [0.0, 2.0, -1.0, 1.0]
    fig.canvas.draw()


def test_plot_field_slice_transform_exactgp_and_mixture():
    model = _tiny_model()
    # a transform is applied before the model: shifting the grid by +1 in x equals a slice over shifted bounds
    shift = lambda X: X + torch.tensor([1.0, 0.0, 0.0], dtype=X.dtype)
    _, a1 = P.plot_field_slice(model, z=0.5, bounds=((-1.0, 0.0), (0.0, 1.0)), resolution=4, transform=shift)
    _, a2 = P.plot_field_slice(model, z=0.5, bounds=((0.0, 1.0), (0.0, 1.0)), resolution=4)
    np.testing.assert_allclose(a1[0].images[0].get_array(), a2[0].images[0].get_array(), rtol=1e-10)

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self, X, y):
            super().__init__(X, y, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = ScaleKernel(_kernel())

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    X = model.train_inputs[0]
    gp = ExactGP(X, model.train_targets).double()
    fig, axes = plt.subplots(1, 2)
    fig2, out = P.plot_field_slice(gp, resolution=4, axes=axes)
    assert fig2 is fig and out[0] is axes[0] and np.isfinite(np.asarray(out[0].images[0].get_array())).all()


class _Mixture(Model):
    """A fully Bayesian stand-in (BoTorch Model): 3 MCMC samples, mean x0 * (1, 2, 3), variance (1, 4, 9)."""

    _is_fully_bayesian = True
    num_outputs = 1

    def posterior(self, X, observation_noise=False, **kwargs):
        scale = torch.tensor([1.0, 2.0, 3.0], dtype=X.dtype).reshape(3, 1)
        mean = X[..., 0].unsqueeze(-2) * scale  # 3 x n
        var = (scale**2).expand_as(mean)
        return GaussianMixturePosterior(MultivariateNormal(mean, torch.diag_embed(var)))


def test_plot_field_slice_fully_bayesian_mixture_moments():
    """Mixture moments of the MCMC batch, checked against BoTorch's own mixture_mean / mixture_variance."""
    model = _Mixture()
    _, ax = P.plot_field_slice(model, resolution=3, chunk=4)  # 9 grid points in chunks of 4
    X = torch.tensor([[0.0, 0.0, 0.5], [0.5, 0.0, 0.5], [1.0, 0.0, 0.5]], dtype=torch.float64)
    post = model.posterior(X)
    np.testing.assert_allclose(ax[0].images[0].get_array()[0], post.mixture_mean.reshape(-1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        ax[1].images[0].get_array()[0], post.mixture_variance.sqrt().reshape(-1).numpy(), rtol=1e-12
    )


def test_plot_field_slice_errors():
    model = _tiny_model()
    with pytest.raises(ValueError, match="bounds"):
        P.plot_field_slice(model, bounds=((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="resolution"):
        P.plot_field_slice(model, resolution=1)
    with pytest.raises(TypeError, match="resolution"):
        P.plot_field_slice(model, resolution=2.5)
    with pytest.raises(TypeError, match="chunk"):
        P.plot_field_slice(model, chunk=True)
    _fig, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="3 axes"):
        P.plot_field_slice(model, axes=axes, truth_fn=lambda X: X[:, 0])
    X = torch.rand(6, 3, dtype=torch.float64)
    two = SingleTaskGP(X, torch.rand(6, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="single-output"):
        P.plot_field_slice(two, resolution=3)
