"""Geoscience conventions and the GSTools/PyKrige converters, checked against the libraries themselves.

References are independent of our conversion code: GSTools' own ``cov_spatial`` / ``matrix_rotate`` /
kriging, PyKrige's own anisotropy adjustment, variogram functions and ordinary kriging, scipy's Euler angles,
gpytorch's own RBF/Matern kernels and explicit formulas. The library tests skip without the ``geo`` extra.
"""

import math

import numpy as np
import pytest
import torch
from gpytorch.kernels import LinearKernel, MaternKernel, RBFKernel, ScaleKernel
from scipy.spatial.transform import Rotation

from gpytorch_so3 import FullSPDKernel, SO3AnisotropicKernel, so3
from gpytorch_so3.functional import base_correlation
from gpytorch_so3.geo import (
    AnisotropicCovariance,
    azimuth_dip,
    direction_from_azimuth_dip,
    from_gstools,
    from_pykrige,
    gstools_angles,
    gstools_len_scale_factor,
    practical_range_factor,
    principal_directions,
    rotation_from_gstools_angles,
    to_gstools,
    to_pykrige,
)

NUS = [None, 0.5, 1.5, 2.5]


def _random_cov(rng, nu, outputscale=1.7, noise=0.1):
    ls = torch.tensor(rng.uniform(0.5, 5.0, 3), dtype=torch.float64)
    w = torch.tensor(rng.normal(size=3), dtype=torch.float64)
    return AnisotropicCovariance(ls, w, nu=nu, outputscale=outputscale, noise=noise)


def _kernel_cov(cov: AnisotropicCovariance, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Covariance from our actual gpytorch kernel (not from the converter's own helper)."""
    k = ScaleKernel(SO3AnisotropicKernel(nu=cov.nu)).double()
    k.base_kernel.lengthscale = cov.lengthscale.reshape(1, 3)
    k.base_kernel.rotation = cov.rotation
    k.outputscale = torch.tensor(cov.outputscale, dtype=torch.float64)
    with torch.no_grad():
        return k(torch.as_tensor(x1), torch.as_tensor(x2), diag=True).numpy()


# ------------------------------------------------------------------------------------------ azimuth / dip
@pytest.mark.parametrize(
    ("u", "az", "dip"),
    [
        ((0.0, 1.0, 0.0), 0.0, 0.0),  # north
        ((1.0, 0.0, 0.0), 90.0, 0.0),  # east
        ((0.0, 0.0, -1.0), 0.0, 90.0),  # straight down
        ((0.0, 0.0, 1.0), 0.0, 90.0),  # an axis: up is the same line
        ((0.0, -1.0, 0.0), 0.0, 0.0),  # horizontal: the azimuth in [0, 180) is reported
        ((-1.0, 0.0, 0.0), 90.0, 0.0),
        ((1.0, 1.0, 0.0), 45.0, 0.0),
        ((-1.0, 1.0, 0.0), 135.0, 0.0),
        ((1.0, 0.0, -1.0), 90.0, 45.0),  # plunging east
        ((-1.0, 0.0, 1.0), 90.0, 45.0),  # same axis written upward
        ((0.0, -1.0, -1.0), 180.0, 45.0),  # plunging south
        ((-1.0, 0.0, -math.sqrt(3.0)), 270.0, 60.0),  # plunging west, steep
    ],
)
def test_azimuth_dip_known_cases(u, az, dip):
    a, d = azimuth_dip(torch.tensor(u, dtype=torch.float64))
    assert float(a) == pytest.approx(az, abs=1e-9)
    assert float(d) == pytest.approx(dip, abs=1e-9)


def test_azimuth_dip_shapes_dtype_scale_and_sign(dtype, generator):
    u = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64).to(dtype)
    az, dip = azimuth_dip(u)
    assert az.shape == dip.shape == (4, 5) and az.dtype == dtype
    az2, dip2 = azimuth_dip(-3.0 * u)
    tol = dict(atol=1e-3, rtol=0) if dtype == torch.float32 else dict(atol=1e-9, rtol=0)
    torch.testing.assert_close(az2, az, **tol)
    torch.testing.assert_close(dip2, dip, **tol)
    assert bool(((az >= 0) & (az < 360) & (dip >= 0) & (dip <= 90)).all())


def test_direction_round_trip(generator):
    u = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    v = direction_from_azimuth_dip(*azimuth_dip(u))
    # The same axis: u == +-v.
    torch.testing.assert_close((u * v).sum(-1).abs(), torch.ones(200, dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((v[:, 2] <= 1e-12).all())  # pointing downward
    az = torch.tensor([10.0, 200.0, 359.0], dtype=torch.float64)
    dip = torch.tensor([5.0, 45.0, 80.0], dtype=torch.float64)
    az2, dip2 = azimuth_dip(direction_from_azimuth_dip(az, dip))
    torch.testing.assert_close(az2, az)
    torch.testing.assert_close(dip2, dip)


def test_azimuth_dip_bad_input():
    with pytest.raises(ValueError, match="shape"):
        azimuth_dip(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="zero vector"):
        azimuth_dip(torch.zeros(3))


def test_principal_directions_known_rotation():
    # Layers dipping 20 degrees towards azimuth 120: the minor (normal) axis plunges 70 degrees towards 300.
    major = direction_from_azimuth_dip(120.0, 20.0)  # dip direction of the layers
    semi = direction_from_azimuth_dip(30.0, 0.0)  # strike
    minor = torch.linalg.cross(major, semi, dim=-1)
    R = torch.stack((semi, minor, major), -1)  # columns in an arbitrary order, det +1
    assert float(torch.linalg.det(R)) == pytest.approx(1.0)
    pd = principal_directions(torch.tensor([300.0, 8.0, 900.0], dtype=torch.float64), so3.log_map(R), nu=2.5)
    torch.testing.assert_close(pd.lengthscale, torch.tensor([900.0, 300.0, 8.0], dtype=torch.float64))
    torch.testing.assert_close(pd.azimuth, torch.tensor([120.0, 30.0, 300.0], dtype=torch.float64))
    torch.testing.assert_close(pd.dip, torch.tensor([20.0, 0.0, 70.0], dtype=torch.float64))
    torch.testing.assert_close(pd.ratios, torch.tensor([1 / 3, 8 / 900], dtype=torch.float64))
    assert "minor" in str(pd) and "300.0" in str(pd)


@pytest.mark.parametrize("nu", NUS)
def test_practical_range_factor(nu):
    f = practical_range_factor(nu)
    assert float(base_correlation(torch.tensor(f * f, dtype=torch.float64), nu)) == pytest.approx(0.05, abs=1e-9)
    if nu is None:
        assert f == pytest.approx(math.sqrt(2 * math.log(20)))
    if nu == 0.5:
        assert f == pytest.approx(math.log(20))


# ------------------------------------------------------------------------------------------ angle conventions
def test_gstools_angles_are_extrinsic_zyx(np_rng):
    for _ in range(20):
        a = np_rng.uniform(-math.pi, math.pi, 3)
        R = rotation_from_gstools_angles(a).numpy()
        np.testing.assert_allclose(R, Rotation.from_euler("zyx", a).as_matrix(), atol=1e-14)
        # Round trip through the angles (matrix equality: angles are not unique at gimbal lock).
        np.testing.assert_allclose(
            rotation_from_gstools_angles(gstools_angles(torch.as_tensor(R))).numpy(), R, atol=1e-12
        )
    gimbal = rotation_from_gstools_angles([0.3, math.pi / 2, 0.0])
    torch.testing.assert_close(rotation_from_gstools_angles(gstools_angles(gimbal)), gimbal)
    with pytest.raises(ValueError, match="at most 3"):
        rotation_from_gstools_angles([0.1, 0.2, 0.3, 0.4])


def test_gstools_angle_convention_matches_gstools_code(np_rng):
    geometric = pytest.importorskip("gstools.tools.geometric")
    for _ in range(20):
        a = np_rng.uniform(-math.pi, math.pi, 3)
        R = rotation_from_gstools_angles(a).numpy()
        np.testing.assert_allclose(geometric.matrix_rotate(3, a), R, atol=1e-14)
        np.testing.assert_allclose(geometric.rotated_main_axes(3, a), R.T, atol=1e-14)  # rows = main axes


# ------------------------------------------------------------------------------------------ GSTools
@pytest.mark.parametrize("nu", NUS)
def test_to_gstools_same_covariance(nu, np_rng):
    pytest.importorskip("gstools")
    for _ in range(3):
        cov = _random_cov(np_rng, nu)
        model = cov.to_gstools()
        assert type(model).__name__ == {None: "Gaussian", 0.5: "Exponential"}.get(nu, "Matern")
        assert all(0 < a <= 1 for a in model.anis)  # main axis is the longest
        assert float(model.var) == pytest.approx(1.7) and float(model.nugget) == pytest.approx(0.1)
        x1, x2 = np_rng.normal(size=(50, 3)) * 3, np_rng.normal(size=(50, 3)) * 3
        np.testing.assert_allclose(model.cov_spatial((x1 - x2).T), _kernel_cov(cov, x1, x2), rtol=1e-10, atol=1e-14)


def test_gstools_len_scale_factors_against_gpytorch_kernels():
    gs = pytest.importorskip("gstools")
    r = torch.linspace(0.0, 6.0, 25, dtype=torch.float64)
    x1, x2 = torch.zeros(25, 1, dtype=torch.float64), r.unsqueeze(-1)
    L = 1.7
    rbf = RBFKernel().double()
    rbf.lengthscale = torch.tensor(L * math.sqrt(2 / math.pi), dtype=torch.float64)  # the FIELD-NOTES factor
    with torch.no_grad():
        np.testing.assert_allclose(
            gs.Gaussian(dim=1, len_scale=L).correlation(r.numpy()), rbf(x1, x2, diag=True).numpy(), rtol=1e-12
        )
        for nu, model in [
            (0.5, gs.Exponential(dim=1, len_scale=L)),
            (0.5, gs.Matern(dim=1, nu=0.5, len_scale=L)),
            (1.5, gs.Matern(dim=1, nu=1.5, len_scale=L)),
            (2.5, gs.Matern(dim=1, nu=2.5, len_scale=L)),
        ]:
            k = MaternKernel(nu=nu).double()
            f = 1.0 if type(model).__name__ == "Exponential" else math.sqrt(2.0)
            k.lengthscale = torch.tensor(L * f, dtype=torch.float64)
            np.testing.assert_allclose(
                model.correlation(r.numpy()), k(x1, x2, diag=True).numpy(), rtol=1e-9, atol=1e-14
            )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Gaussian", {}),
        ("Gaussian", {"rescale": 1.0}),
        ("Exponential", {}),
        ("Exponential", {"rescale": 2.0}),
        ("Matern", {"nu": 0.5}),
        ("Matern", {"nu": 1.5}),
        ("Matern", {"nu": 2.5, "rescale": 0.7}),
    ],
)
def test_from_gstools_same_covariance_and_round_trip(name, kwargs, np_rng):
    gs = pytest.importorskip("gstools")
    # anis > 1 on purpose: GSTools allows a main axis that is not the longest.
    model = getattr(gs, name)(
        dim=3, var=2.5, len_scale=3.0, anis=[1.6, 0.2], angles=np_rng.uniform(-3, 3, 3), nugget=0.3, **kwargs
    )
    cov = from_gstools(model)
    assert cov.outputscale == pytest.approx(2.5) and cov.noise == pytest.approx(0.3)
    x1, x2 = np_rng.normal(size=(50, 3)) * 4, np_rng.normal(size=(50, 3)) * 4
    ref = model.cov_spatial((x1 - x2).T)
    np.testing.assert_allclose(_kernel_cov(cov, x1, x2), ref, rtol=1e-9, atol=1e-14)
    with torch.no_grad():
        np.testing.assert_allclose(
            cov.kernel()(torch.as_tensor(x1), torch.as_tensor(x2), diag=True).numpy(), ref, rtol=1e-9, atol=1e-14
        )
    back = to_gstools(cov)
    np.testing.assert_allclose(back.cov_spatial((x1 - x2).T), ref, rtol=1e-9, atol=1e-14)
    assert back.anis[0] <= 1 and back.anis[1] <= 1


def test_len_scale_factor_families():
    # Closed forms (module docstring); the library checks are in the tests above and below.
    assert gstools_len_scale_factor("Gaussian") == pytest.approx(math.sqrt(math.pi / 2))
    assert gstools_len_scale_factor("Exponential") == 1.0
    assert gstools_len_scale_factor("Matern", 2.0) == pytest.approx(math.sqrt(2.0))
    with pytest.raises(ValueError, match="Spherical"):
        gstools_len_scale_factor("Spherical")


def test_from_gstools_rejects_unsupported_models():
    gs = pytest.importorskip("gstools")
    with pytest.raises(ValueError, match="Spherical"):
        from_gstools(gs.Spherical(dim=3))
    with pytest.raises(ValueError, match=r"nu=1\.0"):
        from_gstools(gs.Matern(dim=3, nu=1.0))
    with pytest.raises(ValueError, match="dim=2"):
        from_gstools(gs.Gaussian(dim=2))
    with pytest.raises(TypeError, match="gstools CovModel"):
        from_gstools(object())


@pytest.mark.parametrize("nu", [None, 2.5])
def test_exported_model_krige_equals_gp_posterior(nu):
    """GSTools simple kriging with the exported model reproduces a BoTorch GP (Standardize, scaled inputs)."""
    gs = pytest.importorskip("gstools")
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize

    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 3, generator=g, dtype=torch.float64)
    Y = torch.sin(5 * X[:, :1]) + 3 * X[:, 1:2] ** 2 + 2
    model = SingleTaskGP(
        X, Y, covar_module=ScaleKernel(SO3AnisotropicKernel(nu=nu)).double(), outcome_transform=Standardize(m=1)
    )
    k = model.covar_module.base_kernel
    k.lengthscale = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)
    k.rotation = torch.tensor([0.4, -0.3, 1.0], dtype=torch.float64)
    model.covar_module.outputscale = 1.3
    model.likelihood.noise = 0.05
    model.mean_module.constant = 0.2
    model.eval()
    scale = 100.0  # the model's inputs are metres / 100
    Xs = torch.rand(10, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        post = model.posterior(Xs, observation_noise=True)
        mean, variance = post.mean.squeeze(-1).numpy(), post.variance.squeeze(-1).numpy()
    cov = AnisotropicCovariance.from_model(model, coordinate_scale=scale)
    krige = gs.krige.Simple(
        to_gstools(model, coordinate_scale=scale),
        cond_pos=(X * scale).T.numpy(),
        cond_val=Y.squeeze(-1).numpy(),
        mean=cov.mean,
    )
    field, var = krige((Xs * scale).T.numpy(), return_var=True)
    np.testing.assert_allclose(field, mean, rtol=1e-9, atol=1e-10)
    # GSTools' kriging variance includes the nugget: the predictive variance of a new observation.
    np.testing.assert_allclose(var, variance, rtol=1e-8, atol=1e-10)


def test_from_model_kernels(generator):
    """Every supported kernel type exports to the same covariance as the kernel itself."""
    x1 = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    x2 = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    spd = FullSPDKernel(nu=1.5).double()
    spd.cholesky_diag = torch.tensor([1.5, 0.7, 2.0], dtype=torch.float64)
    spd.initialize(cholesky_offdiag=torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64))
    ard = MaternKernel(nu=0.5, ard_num_dims=3).double()
    ard.lengthscale = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    iso = RBFKernel().double()
    iso.lengthscale = torch.tensor(0.8, dtype=torch.float64)
    so3k = ScaleKernel(SO3AnisotropicKernel()).double()
    so3k.base_kernel.lengthscale = torch.tensor([[0.4, 1.1, 2.2]], dtype=torch.float64)
    so3k.base_kernel.rotation = torch.tensor([0.2, 0.9, -0.4], dtype=torch.float64)
    so3k.outputscale = torch.tensor(3.0, dtype=torch.float64)
    for k in (spd, ard, iso, so3k, ScaleKernel(spd)):
        cov = AnisotropicCovariance.from_model(k, coordinate_scale=10.0)
        with torch.no_grad():
            ref = k(x1, x2, diag=True).to_dense() if hasattr(k(x1, x2, diag=True), "to_dense") else k(x1, x2, diag=True)
        torch.testing.assert_close(cov.covariance(10 * x1, 10 * x2, diag=True), ref, rtol=1e-10, atol=1e-12)


def test_from_model_rejections():
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize

    with pytest.raises(TypeError, match="LinearKernel"):
        AnisotropicCovariance.from_model(LinearKernel())
    with pytest.raises(ValueError, match="batched"):
        AnisotropicCovariance.from_model(SO3AnisotropicKernel(batch_shape=torch.Size([2])))
    X = torch.rand(10, 3, dtype=torch.float64)
    gp = SingleTaskGP(
        X, X[:, :1], covar_module=ScaleKernel(SO3AnisotropicKernel()).double(), input_transform=Normalize(d=3)
    )
    with pytest.raises(ValueError, match="input_transform"):
        AnisotropicCovariance.from_model(gp)
    with pytest.raises(ValueError, match="coordinate_scale"):
        AnisotropicCovariance.from_model(SO3AnisotropicKernel(), coordinate_scale=-1.0)
    with pytest.raises(ValueError, match="positive"):
        AnisotropicCovariance(torch.tensor([1.0, -1.0, 2.0]), torch.zeros(3))
    with pytest.raises(ValueError, match="rotation matrix"):
        AnisotropicCovariance(torch.ones(3), torch.eye(3) * 2)
    with pytest.raises(ValueError, match="nu"):
        AnisotropicCovariance(torch.ones(3), torch.zeros(3), nu=1.0)
    with pytest.raises(ValueError, match="3 entries"):
        AnisotropicCovariance(torch.ones(2), torch.zeros(3))


# ------------------------------------------------------------------------------------------ PyKrige
@pytest.mark.parametrize("nu", NUS)
def test_to_pykrige_matches_pykrige(nu, np_rng):
    """PyKrige's own isometrised coordinates, variogram and ordinary kriging agree with our kernel."""
    ok3d = pytest.importorskip("pykrige.ok3d")
    cov = _random_cov(np_rng, nu)
    kw = to_pykrige(cov)
    X = np_rng.uniform(-5, 5, (40, 3))
    v = np_rng.normal(size=40)
    ok = ok3d.OrdinaryKriging3D(X[:, 0], X[:, 1], X[:, 2], v, **kw)
    # (1) PyKrige's isometrised coordinates: distances in main-axis units = l_main * whitened distance.
    adj = np.stack([ok.X_ADJUSTED, ok.Y_ADJUSTED, ok.Z_ADJUSTED], 1)
    d_adj = np.linalg.norm(adj[:, None] - adj[None], axis=-1)
    k = ScaleKernel(SO3AnisotropicKernel(nu=nu)).double()
    k.base_kernel.lengthscale = cov.lengthscale.reshape(1, 3)
    k.base_kernel.rotation = cov.rotation
    k.outputscale = torch.tensor(cov.outputscale, dtype=torch.float64)
    z = (torch.as_tensor(X) @ k.base_kernel.whitening_matrix).detach().numpy()
    d_ours = np.linalg.norm(z[:, None] - z[None], axis=-1) * float(cov.lengthscale.max())
    np.testing.assert_allclose(d_adj, d_ours, rtol=1e-10, atol=1e-10)
    # (2) PyKrige's variogram = sill - covariance (off the diagonal).
    Xt = torch.as_tensor(X)
    with torch.no_grad():
        C = k(Xt).to_dense().numpy()
    iu = np.triu_indices(40, 1)
    gamma = ok.variogram_function(ok.variogram_model_parameters, d_adj[iu])
    np.testing.assert_allclose(gamma, cov.outputscale + cov.noise - C[iu], rtol=1e-10, atol=1e-12)
    # (3) Ordinary kriging predictions = GP with unknown constant mean (covariance C + nugget I, Lagrange row).
    Xs = np_rng.uniform(-5, 5, (7, 3))
    pred, _ = ok.execute("points", Xs[:, 0], Xs[:, 1], Xs[:, 2])
    with torch.no_grad():
        cs = k(Xt, torch.as_tensor(Xs)).to_dense().numpy()
    A = np.zeros((41, 41))
    A[:40, :40] = C + cov.noise * np.eye(40)
    A[40, :40] = A[:40, 40] = 1.0
    lam = np.linalg.solve(A, np.vstack([cs, np.ones((1, 7))]))
    np.testing.assert_allclose(pred, lam[:40].T @ v, rtol=1e-9, atol=1e-10)
    # (4) Round trip from the fitted PyKrige object and from the keywords.
    for src in (ok, kw):
        back = from_pykrige(src)
        torch.testing.assert_close(back.metric, cov.metric, rtol=1e-10, atol=1e-12)
        assert back.nu == cov.nu and back.outputscale == pytest.approx(1.7) and back.noise == pytest.approx(0.1)


def test_pykrige_angles_equal_gstools_pykrige_properties(np_rng):
    """GSTools' own PyKrige bridge (``pykrige_kwargs``) gives the same angles and scalings as ours."""
    pytest.importorskip("gstools")
    cov = _random_cov(np_rng, None)
    theirs = cov.to_gstools().pykrige_kwargs
    ours = to_pykrige(cov)
    for key in (
        "anisotropy_scaling_y",
        "anisotropy_scaling_z",
        "anisotropy_angle_x",
        "anisotropy_angle_y",
        "anisotropy_angle_z",
    ):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-12), key


def test_from_pykrige_parameter_forms():
    base = {"anisotropy_scaling_y": 2.0, "anisotropy_scaling_z": 10.0, "anisotropy_angle_z": 30.0}
    a = from_pykrige({**base, "variogram_model": "exponential", "variogram_parameters": [2.0, 30.0, 0.5]})
    b = from_pykrige(
        {**base, "variogram_model": "exponential", "variogram_parameters": {"sill": 2.5, "range": 30.0, "nugget": 0.5}}
    )
    for c in (a, b):
        assert c.nu == 0.5 and c.outputscale == pytest.approx(2.0) and c.noise == pytest.approx(0.5)
        ls, _ = c.major_first()
        torch.testing.assert_close(ls, torch.tensor([10.0, 5.0, 1.0], dtype=torch.float64))  # range / 3 = 10
        pd = c.principal_directions()
        assert float(pd.azimuth[0]) == pytest.approx(60.0)  # 30 deg counter-clockwise from East
    with pytest.raises(ValueError, match="spherical"):
        from_pykrige({"variogram_model": "spherical", "variogram_parameters": [1.0, 2.0, 0.0]})
    with pytest.raises(ValueError, match="custom"):
        from_pykrige(
            {"variogram_model": "custom", "variogram_function": lambda m, d: d, "variogram_parameters": [1.0, 2.0, 0.0]}
        )
