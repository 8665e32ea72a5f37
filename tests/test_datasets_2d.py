"""2-D views of the oil-sands drill holes (issue 17, item 7): oilsands_map and oilsands_section.

Checked against independent NumPy recomputations from load_oilsands.
"""

import math

import numpy as np
import pytest
import torch

from gpytorch_so3.datasets import Oilsands2D, load_oilsands, oilsands_map, oilsands_section


@pytest.fixture(scope="module")
def raw():
    d = load_oilsands()
    return d.coordinates.numpy(), d.targets[:, 0].numpy(), d.hole_ids.numpy()


def test_map_means_match_numpy_groupby(raw):
    c, y, h = raw
    m = oilsands_map(min_samples=1)
    assert isinstance(m, Oilsands2D) and len(m) == 280 and m.axis_names == ("East", "North")
    assert m.coordinates.dtype == torch.float64 and m.targets.shape == (280, 1)
    for i in (0, 17, 279):
        hole = int(m.hole_ids[i])
        sel = h == hole
        np.testing.assert_allclose(m.targets[i, 0].item(), y[sel].mean(), rtol=1e-12)
        np.testing.assert_allclose(m.coordinates[i].numpy(), c[sel, :2].mean(0), rtol=1e-12)
        assert int(m.counts[i]) == int(sel.sum())


def test_map_elevation_slab_and_min_samples(raw):
    c, y, h = raw
    lo, hi = 200.0, 230.0
    m = oilsands_map(elevation_range=(lo, hi), min_samples=3, dtype=torch.float32)
    assert m.targets.dtype == torch.float32
    inslab = (c[:, 2] >= lo) & (c[:, 2] <= hi)
    holes, counts = np.unique(h[inslab], return_counts=True)
    expected = holes[counts >= 3]
    np.testing.assert_array_equal(m.hole_ids.numpy(), expected)
    i = 5
    sel = (h == int(m.hole_ids[i])) & inslab
    np.testing.assert_allclose(m.targets[i, 0].item(), y[sel].mean(), rtol=1e-6)
    assert bool((m.counts >= 3).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_samples": 0}, "min_samples"),
        ({"elevation_range": (230.0, 200.0)}, "elevation_range"),
        ({"elevation_range": (0.0, 1.0)}, "no hole"),
        ({"target": "Gold"}, "unknown target"),
    ],
)
def test_map_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        oilsands_map(**kwargs)


@pytest.mark.parametrize("min_samples", [1.5, True, "3"])
def test_map_non_integer_min_samples(min_samples):
    with pytest.raises(TypeError, match="min_samples must be an int"):
        oilsands_map(min_samples=min_samples)


def test_section_geometry(raw):
    c, y, h = raw
    s = oilsands_section(azimuth=0.0, half_width=200.0)  # a North-South line through the collars' centroid
    assert s.direction == pytest.approx((0.0, 1.0), abs=1e-12)
    assert s.axis_names == ("Distance", "Elevation")
    holes = np.unique(h)
    collars = np.array([c[h == k, :2].mean(0) for k in holes])
    centre = collars.mean(0)
    inside = np.abs(c[:, 0] - centre[0]) <= 200.0
    assert len(s) == int(inside.sum())
    np.testing.assert_allclose(s.coordinates[:, 0].numpy(), c[inside, 1] - centre[1], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(s.coordinates[:, 1].numpy(), c[inside, 2])
    np.testing.assert_allclose(s.targets[:, 0].numpy(), y[inside])


def test_section_default_direction_is_principal_axis(raw):
    c, _, h = raw
    s = oilsands_section()
    holes = np.unique(h)
    collars = np.array([c[h == k, :2].mean(0) for k in holes])
    _, vecs = np.linalg.eigh(np.cov((collars - collars.mean(0)).T))
    u = vecs[:, -1] * np.sign(vecs[1, -1])
    np.testing.assert_allclose(s.direction, u, atol=1e-10)
    assert math.hypot(*s.direction) == pytest.approx(1.0)
    assert bool(s.counts.eq(1).all()) and s.hole_ids.unique().numel() > 10


def test_section_bad_input():
    with pytest.raises(ValueError, match="half_width"):
        oilsands_section(half_width=-1.0)
    with pytest.raises(ValueError, match="no drill hole"):
        oilsands_section(half_width=1e-6)
