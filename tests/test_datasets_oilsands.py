"""The vendored oil-sands drill holes: loader, provenance, checksum, grouped folds.

The reference for the table is an independent parse of the file with ``numpy.loadtxt`` (GSLIB: 2 + 8 header
lines); counts and extents are those documented for pygeostat's ``oilsands.dat``.
"""

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from gpytorch_so3.datasets import OILSANDS_COLUMNS, OILSANDS_SHA256, DrillHoleData, hole_folds, load_oilsands

DATA_DIR = Path(str(resources.files("gpytorch_so3") / "data"))
DATA = DATA_DIR / "oilsands.dat"


@pytest.fixture(scope="module")
def raw_table():
    return np.loadtxt(DATA, skiprows=2 + 8)


def test_vendored_file_checksum_and_notice():
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == OILSANDS_SHA256
    notice = (DATA_DIR / "NOTICE").read_text()
    for needle in (
        "pygeostat",
        "1.2.0",
        OILSANDS_SHA256,
        "pygeostat/data/example_data/oilsands.dat",
        "Permission is hereby granted, free of charge",
        "Center for Computational Geostatistics",
    ):
        assert needle in notice


def test_counts_columns_and_table(raw_table):
    data = load_oilsands()
    assert isinstance(data, DrillHoleData)
    assert len(data) == 5808 and data.n_holes == 280
    assert (
        data.columns
        == OILSANDS_COLUMNS
        == ("Drillhole Number", "East", "North", "Elevation", "Bitumen", "Fines", "Chlorides", "Facies Code")
    )
    assert data.title == "Oil Sands Data"
    assert data.coordinates.shape == (5808, 3) and data.targets.shape == (5808, 1) and data.hole_ids.shape == (5808,)
    assert data.coordinates.dtype == torch.float64 and data.hole_ids.dtype == torch.int64
    expected = raw_table.copy()
    expected[expected == -9] = np.nan
    np.testing.assert_array_equal(data.table.numpy(), expected)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(data.coordinates.numpy(), raw_table[:, 1:4])
    np.testing.assert_array_equal(data.targets.squeeze(-1).numpy(), raw_table[:, 4])  # Bitumen by default
    np.testing.assert_array_equal(data.hole_ids.numpy(), raw_table[:, 0].astype(np.int64))


def test_missing_codes_only_in_chlorides_and_facies(raw_table):
    data = load_oilsands(target="Chlorides", dropna=False)
    nan_per_column = torch.isnan(data.table).sum(0).tolist()
    assert nan_per_column == [0, 0, 0, 0, 0, 0, 2248, 1132]
    assert int((raw_table == -9).sum()) == 2248 + 1132  # every NaN was a -9 code, and every -9 became NaN
    assert not bool((data.table == -9).any())
    assert int(torch.isnan(data.targets).sum()) == 2248
    dropped = load_oilsands(target="Chlorides")
    assert len(dropped) == 5808 - 2248 and not bool(torch.isnan(dropped.targets).any())
    assert dropped.table.shape == (5808 - 2248, 8) and len(dropped.hole_ids) == len(dropped)
    facies = load_oilsands(target="Facies")
    assert facies.target_name == "Facies Code" and len(facies) == 5808 - 1132
    # Bitumen and Fines have no missing values: dropna changes nothing.
    assert len(load_oilsands(target="Fines", dropna=True)) == 5808


def test_extents_and_vertical_holes():
    data = load_oilsands()
    ext = (data.coordinates.max(0).values - data.coordinates.min(0).values).tolist()
    assert 3200 < ext[0] < 3400 and 5900 < ext[1] < 6100 and 125 < ext[2] < 135  # ~3.3 x 6.0 km x 129 m
    assert 0 <= float(data.targets.min()) and float(data.targets.max()) < 20  # bitumen mass %
    # Vertical holes: one (East, North) per hole.
    for h in torch.unique(data.hole_ids)[:50]:
        xy = data.coordinates[data.hole_ids == h, :2]
        assert bool((xy == xy[0]).all())


@pytest.mark.parametrize(
    ("target", "column"), [("Bitumen", 4), ("fines", 5), ("FINES", 5), ("Chlorides", 6), ("facies code", 7)]
)
def test_target_choice(target, column):
    data = load_oilsands(target=target, dropna=False)
    assert data.target_name == OILSANDS_COLUMNS[column]
    torch.testing.assert_close(data.targets.squeeze(-1), data.table[:, column], equal_nan=True)
    torch.testing.assert_close(data.column(OILSANDS_COLUMNS[column]), data.table[:, column], equal_nan=True)


def test_float32():
    data = load_oilsands(target="Fines", dtype=torch.float32)
    assert data.coordinates.dtype == data.targets.dtype == data.table.dtype == torch.float32
    assert data.hole_ids.dtype == torch.int64


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown target"):
        load_oilsands(target="Gold")
    with pytest.raises(ValueError, match="unknown target"):
        load_oilsands(target="East")  # a coordinate is not a target
    with pytest.raises(ValueError, match="dtype"):
        load_oilsands(dtype=torch.int64)
    with pytest.raises(ValueError, match="unknown column"):
        load_oilsands().column("Silver")


def test_checksum_verified_on_load(tmp_path):
    good = tmp_path / "good.dat"
    good.write_bytes(DATA.read_bytes())
    assert len(load_oilsands(path=good)) == 5808
    raw = bytearray(DATA.read_bytes())
    i = raw.index(b"7.378")  # first Bitumen value
    raw[i : i + 5] = b"7.379"  # one digit changed: still parses, but is not the published data
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(raw))
    with pytest.raises(OSError, match="corrupt"):
        load_oilsands(path=bad)
    with pytest.raises(FileNotFoundError):
        load_oilsands(path=tmp_path / "missing.dat")


def test_hole_folds():
    data = load_oilsands()
    folds = hole_folds(data.hole_ids, 5, seed=0)
    assert folds.shape == data.hole_ids.shape and set(folds.unique().tolist()) == set(range(5))
    holes_per_fold = []
    for f in range(5):
        in_fold = set(data.hole_ids[folds == f].tolist())
        out_fold = set(data.hole_ids[folds != f].tolist())
        assert not in_fold & out_fold  # whole holes only
        holes_per_fold.append(len(in_fold))
    assert sum(holes_per_fold) == 280 and max(holes_per_fold) - min(holes_per_fold) <= 1
    assert torch.equal(folds, hole_folds(data.hole_ids, 5, seed=0))  # deterministic
    assert not torch.equal(folds, hole_folds(data.hole_ids, 5, seed=1))
    with pytest.raises(ValueError, match="n_folds"):
        hole_folds(data.hole_ids, 1)
    with pytest.raises(ValueError, match="n_folds"):
        hole_folds(torch.tensor([1, 1, 2]), 3)
    with pytest.raises(TypeError, match="n_folds"):
        hole_folds(data.hole_ids, 2.0)
    with pytest.raises(ValueError, match="1-D"):
        hole_folds(data.hole_ids.reshape(2, -1), 5)
