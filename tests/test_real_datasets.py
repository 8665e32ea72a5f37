"""Loaders of the larger real data sets (issue 16.5): pygeostat's location_plot/reservoir_data, LoopStructural's
claudius.csv and PyVista's channels.vti, read from wheels, bare files or installed packages without importing them.

Two kinds of tests:
- the real files, when available (an installed package or ``$GPYTORCH_SO3_DATA`` pointing at a directory with
  the wheels from ``pip download --no-deps pygeostat==1.2.0 LoopStructural==1.9.0 pyvista==0.49.1``); otherwise
  they skip with the reason. They check counts and the conventions the docstrings state (checked once by hand
  in the wheels: e.g. location_plot's ``Elevation == from + to``);
- tiny files written here in the same formats, so the parsing and the error paths are always tested. The VTI
  decoder is checked on files written by a small writer below (every encoding, compression and header type of the
  VTK XML format) and, when pyevtk is installed, on a file written by pyevtk (an independent writer).
"""

from __future__ import annotations

import base64
import lzma
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from gpytorch_so3 import datasets as D
from gpytorch_so3.datasets import (
    LOCATION_PLOT_COLUMNS,
    REAL_DATA_ENV,
    REAL_DATA_FILES,
    RESERVOIR_DATA_COLUMNS,
    hole_folds,
    load_channels,
    load_claudius,
    load_location_plot,
    load_reservoir_data,
    load_vti,
)


# ------------------------------------------------------------------------------------------ real files (may skip)
def _real(loader, **kwargs):
    try:
        return loader(**kwargs)
    except FileNotFoundError as e:
        pytest.skip(f"real data not available (set {REAL_DATA_ENV} to a directory with the wheels): {e}")


@pytest.fixture(scope="module")
def location_plot():
    return _real(load_location_plot, target="Phi")


def test_location_plot_real(location_plot):
    d = location_plot
    assert len(d) == 22_517 and d.n_holes == 220
    assert d.columns == LOCATION_PLOT_COLUMNS and d.table.shape == (22_517, 12)
    # the convention in the docstring: the file's "Elevation" is from + to, the coordinate is the interval midpoint
    assert torch.equal(d.column("Elevation"), d.column("from") + d.column("to"))
    assert torch.equal(d.coordinates[:, 2], d.column("Elevation") / 2)
    assert torch.equal(d.coordinates[:, :2], d.table[:, 1:3])
    for h in torch.unique(d.hole_ids)[:20]:  # vertical wells: one collar per hole
        xy = d.coordinates[d.hole_ids == h, :2]
        assert torch.equal(xy, xy[:1].expand_as(xy))
    assert 311 < float(d.coordinates[:, 2].min()) and float(d.coordinates[:, 2].max()) < 387
    assert torch.equal(d.targets[:, 0], d.column("Prop1-Phi"))
    folds = hole_folds(d.hole_ids, 5, seed=0)
    for f in range(5):  # whole holes per fold
        assert not set(d.hole_ids[folds == f].tolist()) & set(d.hole_ids[folds != f].tolist())


def test_reservoir_data_real():
    d = _real(load_reservoir_data, target="Kv", dtype=torch.float32)
    assert len(d) == 11_705 and d.n_holes == 230 and d.coordinates.dtype == torch.float32
    assert d.target_name == "Kv" and d.columns == RESERVOIR_DATA_COLUMNS
    d64 = load_reservoir_data()
    collar = d64.column("Elevation") + d64.column("From")
    for h in torch.unique(d64.hole_ids):  # Elevation decreases down the hole: Elevation + From is the collar
        c = collar[d64.hole_ids == h]
        assert float(c.max() - c.min()) < 1e-9
    assert torch.equal(d64.coordinates, d64.table[:, [1, 2, 5]])


def test_claudius_real():
    d = _real(load_claudius)
    assert len(d) == 21_023 and d.targets.isfinite().all()
    vals, counts = torch.unique(d.targets, return_counts=True)
    assert vals.tolist() == [0.0, 60.0, 250.0, 330.0] and counts.sum() == 21_023
    mean_z = [float(d.coordinates[d.targets[:, 0] == v, 2].mean()) for v in vals]
    assert mean_z == sorted(mean_z, reverse=True)  # val grows downwards
    full = load_claudius(dropna=False)
    normals = full.table[full.targets[:, 0].isnan(), 4:]
    assert normals.shape == (25, 3)
    assert torch.allclose(normals.norm(dim=-1), torch.ones(25, dtype=torch.float64), atol=1e-3)
    assert d.n_holes == 18_355  # distinct map positions (traces)


def test_channels_real():
    cells = _real(load_channels, stride=5, dtype=torch.float32)
    assert cells.shape == (250, 250, 100) and len(cells) == 50 * 50 * 20
    assert cells.coordinates.dtype == torch.float32 and cells.target_name == "facies"
    assert torch.equal(cells.coordinates, cells.indices.float() + 0.5)  # origin 0, unit spacing: centres
    assert set(cells.targets.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    full = load_channels()
    assert len(full) == 6_250_000
    assert full.targets.unique().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert torch.equal(full.targets[cells.cell_ids].float(), cells.targets)
    # the channels run along y: a channel cell's neighbour along y has the same facies more often than along x
    f = full.targets.reshape(100, 250, 250)  # (k, j, i)
    ch_x, ch_y = f[:, :, :-1] > 0, f[:, :-1, :] > 0
    same_x = ((f[:, :, 1:] == f[:, :, :-1]) & ch_x).sum() / ch_x.sum()
    same_y = ((f[:, 1:, :] == f[:, :-1, :]) & ch_y).sum() / ch_y.sum()
    assert float(same_y) > float(same_x)
    sub = load_channels(n_points=1000, seed=3)
    assert len(sub) == 1000 and torch.equal(full.targets[sub.cell_ids], sub.targets)


@pytest.mark.parametrize("name", ["location_plot", "claudius", "channels"])
def test_real_file_same_from_wheel_file_dir_and_installed_layout(name, tmp_path, monkeypatch):
    f = REAL_DATA_FILES[name]
    wheel = next((Path(d) / f.wheel for d in os.environ.get(REAL_DATA_ENV, "").split(os.pathsep) if d), None)
    if wheel is None or not wheel.is_file():
        pytest.skip(f"{f.wheel} not found in ${REAL_DATA_ENV}")
    loader = {"location_plot": load_location_plot, "claudius": load_claudius, "channels": load_channels}[name]
    kw = {"stride": 10} if name == "channels" else {}
    ref = loader(source=wheel, **kw)
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(f.member)
    bare = tmp_path / "bare" / f.filename
    bare.parent.mkdir()
    bare.write_bytes(raw)
    site = tmp_path / "site"  # an installed-package layout; find_spec locates it without running __init__
    pkg_file = site.joinpath(*f.member.split("/"))
    pkg_file.parent.mkdir(parents=True)
    pkg_file.write_bytes(raw)
    (site / f.package / "__init__.py").write_text("raise RuntimeError('the loader must not import the package')\n")
    monkeypatch.syspath_prepend(str(site))
    for got in (loader(source=bare, **kw), loader(source=bare.parent, **kw), loader(**kw)):
        assert torch.equal(got.coordinates, ref.coordinates) and torch.equal(got.targets, ref.targets)
    assert D._installed_file(f) == pkg_file


# ------------------------------------------------------------------------------------------ locating files
def _gslib(columns, rows, title="data") -> str:
    return "\n".join([title, str(len(columns)), *columns, *(" ".join(map(str, r)) for r in rows)]) + "\n"


_LP_ROWS = [
    [3, 405, 1715, 765.5, 383, 382.5, 3, 0.27616, 0.25081, 308.23531, 770.19003, 0.71988],
    [3, 405, 1715, 764.5, 382.5, 382, 5, "0.31480000E-01", 0.74187, "0.1E-03", 0.001, 0.76914],
    [7, 415, 1725, 700.5, 350.5, 350, 2, 0.3, 0.1, 1000, 2000, 0.2],
]


@pytest.fixture
def no_installed(monkeypatch):
    """Hide any installed pygeostat/LoopStructural/pyvista, so only source and $GPYTORCH_SO3_DATA count."""
    monkeypatch.setattr(D, "_installed_file", lambda f: None)
    monkeypatch.delenv(REAL_DATA_ENV, raising=False)


def test_location_plot_tiny_file(tmp_path):
    p = tmp_path / "location_plot.dat"
    p.write_text(_gslib(LOCATION_PLOT_COLUMNS, _LP_ROWS))
    d = load_location_plot("kh", source=p, verify=False, dtype=torch.float32)
    assert d.target_name == "Prop4-Kh" and d.coordinates.dtype == torch.float32
    assert d.coordinates.tolist() == [[405, 1715, 382.75], [405, 1715, 382.25], [415, 1725, 350.25]]
    assert d.targets[:, 0].tolist() == pytest.approx([770.19003, 0.001, 2000])
    assert d.hole_ids.tolist() == [3, 3, 7] and d.n_holes == 2
    assert d.column("Prop3-Kv")[1].item() == pytest.approx(1e-4)
    for name, col in [("Phi", "Prop1-Phi"), ("prop5-sw", "Prop5-Sw"), ("ROCKTYPE", "RockType")]:
        assert load_location_plot(name, source=p, verify=False).target_name == col


def test_reservoir_tiny_file_and_directory_source(tmp_path):
    rows = [[3, 405.63, 2135.75, 50.16, 51.16, 376.19, 3, 0.24351, 0.29707, 125.12996, 0.29722]]
    (tmp_path / "reservoir_data.dat").write_text(_gslib(RESERVOIR_DATA_COLUMNS, rows))
    d = load_reservoir_data("lithofacies", source=tmp_path, verify=False)  # a directory holding the file
    assert d.coordinates.tolist() == [[405.63, 2135.75, 376.19]] and d.targets.tolist() == [[3.0]]


def test_wheel_source_reads_member(tmp_path):
    wheel = tmp_path / REAL_DATA_FILES["location_plot"].wheel.replace("pygeostat", "PyGeoStat")  # any case
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(REAL_DATA_FILES["location_plot"].member, _gslib(LOCATION_PLOT_COLUMNS, _LP_ROWS))
    for src in (wheel, tmp_path):
        assert len(load_location_plot(source=src, verify=False)) == 3
    with pytest.raises(OSError, match="SHA-256"):
        load_location_plot(source=wheel)  # verify=True: not pygeostat 1.2.0's file
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x.txt", "x")
    with pytest.raises(ValueError, match=r"does not contain pygeostat/data/example_data/location_plot\.dat"):
        load_location_plot(source=other, verify=False)


def test_env_directory_is_searched(tmp_path, monkeypatch, no_installed):
    (tmp_path / "location_plot.dat").write_text(_gslib(LOCATION_PLOT_COLUMNS, _LP_ROWS))
    monkeypatch.setenv(REAL_DATA_ENV, os.pathsep.join([str(tmp_path / "missing"), str(tmp_path)]))
    assert len(load_location_plot(verify=False)) == 3


@pytest.mark.parametrize(
    ("loader", "command"),
    [
        (load_location_plot, "pip download --no-deps pygeostat==1.2.0"),
        (load_reservoir_data, "pip download --no-deps pygeostat==1.2.0"),
        (load_claudius, "pip download --no-deps LoopStructural==1.9.0"),
        (load_channels, "pip download --no-deps pyvista==0.49.1"),
    ],
)
def test_missing_file_says_how_to_get_it(loader, command, tmp_path, monkeypatch, no_installed):
    monkeypatch.setenv(REAL_DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=command):
        loader()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loader(source=tmp_path / "nope.whl")
    with pytest.raises(FileNotFoundError, match="neither"):
        loader(source=tmp_path)


def test_bad_arguments(tmp_path):
    p = tmp_path / "location_plot.dat"
    p.write_text(_gslib(LOCATION_PLOT_COLUMNS, _LP_ROWS))
    with pytest.raises(ValueError, match="unknown target 'Bitumen'"):
        load_location_plot("Bitumen", source=p, verify=False)
    with pytest.raises(ValueError, match="unknown target 'Kh'"):
        load_reservoir_data("Kh", source=p, verify=False)
    with pytest.raises(ValueError, match="floating torch dtype"):
        load_location_plot(source=p, verify=False, dtype=torch.int64)
    with pytest.raises(TypeError, match="source must be None or a path"):
        load_location_plot(source=3)
    with pytest.raises(TypeError, match="verify must be a bool"):
        load_location_plot(source=p, verify=1)
    with pytest.raises(TypeError, match="dropna must be a bool"):
        load_claudius(source=p, dropna="yes")


# ------------------------------------------------------------------------------------------ malformed GSLIB / CSV
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("data\nx\n", "line 2 must start with the number of columns"),
        ("data\n", "line 2 must start with the number of columns"),
        (_gslib((*LOCATION_PLOT_COLUMNS[:-1], "Sw"), _LP_ROWS), "expected the 12 columns"),
        (_gslib(LOCATION_PLOT_COLUMNS, []), "no data rows"),
        (_gslib(LOCATION_PLOT_COLUMNS, [_LP_ROWS[0][:-1], _LP_ROWS[1]]), "line 15 has 11 values"),
        (_gslib(LOCATION_PLOT_COLUMNS, [_LP_ROWS[0], [*_LP_ROWS[1][:-1], "abc"]]), "non-numeric value on line 16"),
        (_gslib(LOCATION_PLOT_COLUMNS, [[*_LP_ROWS[0][:-1], "nan"]]), "non-finite"),
    ],
)
def test_malformed_gslib(tmp_path, text, match):
    p = tmp_path / "location_plot.dat"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_location_plot(source=p, verify=False)


def test_non_ascii_gslib(tmp_path):
    p = tmp_path / "location_plot.dat"
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="non-ASCII"):
        load_location_plot(source=p, verify=False)


_CL_HEADER = ",X,Y,Z,val,feature_name,nx,ny,nz"


def test_claudius_tiny_file(tmp_path):
    lines = [
        _CL_HEADER,
        "0,10.0,20.0,-5.0,0.0,strati,,,",
        "1,10.0,20.0,-9.0,60.0,strati,,,",
        "2,12.5,20.0,-6.0,0.0,strati,,,",
        "0,12.5,20.0,-7.0,,strati,0.6,0.0,-0.8",
    ]
    p = tmp_path / "claudius.csv"
    p.write_text("\n".join(lines) + "\n")
    d = load_claudius(source=p, verify=False)
    assert d.coordinates.tolist() == [[10, 20, -5], [10, 20, -9], [12.5, 20, -6]]
    assert d.targets[:, 0].tolist() == [0, 60, 0]
    assert d.hole_ids[0] == d.hole_ids[1] != d.hole_ids[2] and d.n_holes == 2
    full = load_claudius(source=p, verify=False, dropna=False)
    assert len(full) == 4 and full.targets[3].isnan().all() and full.table[3, 4:].tolist() == [0.6, 0.0, -0.8]
    assert full.hole_ids[3] == full.hole_ids[2]  # same (X, Y)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["X,Y,Z,val", "1,2,3,4"], "expected the CSV header"),
        ([_CL_HEADER, "0,1,2,3,4,strati,,"], "line 2 has 8 fields"),
        ([_CL_HEADER, "0,1,2,x,4,strati,,,"], "non-numeric value on line 2"),
        ([_CL_HEADER, "0,1,,3,4,strati,,,"], "without finite X, Y, Z"),
        ([_CL_HEADER], "no data rows"),
        ([], "not a CSV file with a header"),
    ],
)
def test_malformed_claudius(tmp_path, lines, match):
    p = tmp_path / "claudius.csv"
    p.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=match):
        load_claudius(source=p, verify=False)


# ------------------------------------------------------------------------------------------ VTI: a small writer
def _encode(values: np.ndarray, *, fmt, encoding, compressor, header, block, split_header=False) -> bytes:
    """One DataArray's bytes as the VTK XML format lays them out (see the reader's docstring)."""
    raw = values.tobytes()
    if compressor is None:
        head = np.array([len(raw)], dtype=header).tobytes()
        if fmt == "ascii":
            raise AssertionError
        if encoding == "raw":
            return head + raw
        if split_header:
            return base64.b64encode(head) + base64.b64encode(raw)
        return base64.b64encode(head + raw)
    pack = zlib.compress if compressor == "vtkZLibDataCompressor" else lzma.compress
    chunks = [raw[i : i + block] for i in range(0, len(raw), block)]
    comp = [pack(c) for c in chunks]
    head = np.array([len(chunks), block, len(raw) % block, *map(len, comp)], dtype=header).tobytes()
    if encoding == "raw":
        return head + b"".join(comp)
    return base64.b64encode(head) + base64.b64encode(b"".join(comp))


def _write_vti(
    path: Path,
    arrays: dict[str, np.ndarray],
    extent=(0, 4, 0, 3, 0, 2),
    *,
    fmt="appended",
    encoding="base64",
    compressor=None,
    header_type="UInt32",
    big_endian=False,
    block=16,
    origin="1 2 3",
    spacing="0.5 1 2",
    direction=None,
    split_header=False,
) -> None:
    bo = ">" if big_endian else "<"
    header = np.dtype(bo + {"UInt32": "u4", "UInt64": "u8"}[header_type])
    types = {"i8": "Int64", "f4": "Float32", "i4": "Int32", "f8": "Float64", "u1": "UInt8"}
    ext = " ".join(map(str, extent))
    blobs, tags, offset = [], [], 0
    for name, a in arrays.items():
        a = a.astype(a.dtype.newbyteorder(bo))
        attrs = f'type="{types[a.dtype.str[1:]]}" Name="{name}"'
        if fmt == "ascii":
            tags.append(f'<DataArray {attrs} format="ascii">{" ".join(map(str, a.tolist()))}</DataArray>')
            continue
        blob = _encode(
            a, fmt=fmt, encoding=encoding, compressor=compressor, header=header, block=block, split_header=split_header
        )
        if fmt == "binary":
            tags.append(f'<DataArray {attrs} format="binary">{blob.decode()}</DataArray>')
        else:
            tags.append(f'<DataArray {attrs} format="appended" offset="{offset}"/>')
            blobs.append(blob)
            offset += len(blob)
    comp = f' compressor="{compressor}"' if compressor else ""
    dire = f' Direction="{direction}"' if direction else ""
    order = "BigEndian" if big_endian else "LittleEndian"
    head = (
        f'<?xml version="1.0"?>\n<VTKFile type="ImageData" version="1.0" byte_order="{order}"'
        f' header_type="{header_type}"{comp}>\n'
        f'<ImageData WholeExtent="{ext}" Origin="{origin}" Spacing="{spacing}"{dire}>\n'
        f'<Piece Extent="{ext}">\n<PointData>\n</PointData>\n<CellData Scalars="{next(iter(arrays))}">\n'
        + "\n".join(tags)
        + "\n</CellData>\n</Piece>\n</ImageData>\n"
    ).encode()
    if blobs:
        head += f'<AppendedData encoding="{encoding}">\n   _'.encode() + b"".join(blobs) + b"\n</AppendedData>\n"
    path.write_bytes(head + b"</VTKFile>\n")


def _arrays(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return {"facies": rng.integers(0, 5, n).astype(np.int64), "poro": rng.random(n).astype(np.float32)}


_VARIANTS = [
    {"fmt": "ascii"},
    {"fmt": "binary", "encoding": "base64"},
    {"fmt": "binary", "encoding": "base64", "split_header": True},
    {"fmt": "binary", "encoding": "base64", "compressor": "vtkZLibDataCompressor"},
    {"fmt": "appended", "encoding": "base64"},
    {"fmt": "appended", "encoding": "base64", "split_header": True, "header_type": "UInt64"},
    {"fmt": "appended", "encoding": "base64", "compressor": "vtkZLibDataCompressor"},  # channels.vti's layout
    {"fmt": "appended", "encoding": "base64", "compressor": "vtkZLibDataCompressor", "header_type": "UInt64"},
    {"fmt": "appended", "encoding": "raw"},
    {"fmt": "appended", "encoding": "raw", "compressor": "vtkZLibDataCompressor", "big_endian": True},
    {"fmt": "appended", "encoding": "raw", "compressor": "vtkLZMADataCompressor", "block": 40},
    {"fmt": "binary", "encoding": "base64", "compressor": "vtkLZMADataCompressor", "header_type": "UInt64"},
]


@pytest.mark.parametrize("variant", _VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_vti_encodings(tmp_path, variant):
    arrays = _arrays()
    p = tmp_path / "t.vti"
    _write_vti(p, arrays, **variant)
    cells = load_vti(p)  # the active scalars: facies
    assert cells.target_name == "facies" and cells.shape == (4, 3, 2)
    assert cells.targets[:, 0].tolist() == arrays["facies"].tolist()
    poro = load_vti(p, array="poro", dtype=torch.float32)
    assert torch.equal(poro.targets[:, 0], torch.from_numpy(arrays["poro"]))


def test_vti_geometry_direction_stride_and_subset(tmp_path):
    arrays = _arrays()
    p = tmp_path / "t.vti"
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    _write_vti(p, arrays, extent=(2, 6, 0, 3, 1, 3), direction=" ".join(map(str, R.ravel())))
    cells = load_vti(p)
    ijk = np.array([(i, j, k) for k in range(2) for j in range(3) for i in range(4)], dtype=float)  # x fastest
    expected = np.array([1, 2, 3]) + ((ijk + [2, 0, 1] + 0.5) * [0.5, 1, 2]) @ R.T
    np.testing.assert_allclose(cells.coordinates.numpy(), expected, rtol=0, atol=1e-12)
    assert cells.indices.tolist() == ijk.astype(int).tolist()
    assert cells.direction == tuple(map(tuple, R.tolist()))
    s = load_vti(p, stride=(2, 3, 1))
    assert s.indices.tolist() == [[0, 0, 0], [2, 0, 0], [0, 0, 1], [2, 0, 1]]
    assert torch.equal(s.targets, cells.targets[s.cell_ids]) and torch.equal(
        s.coordinates, cells.coordinates[s.cell_ids]
    )
    sub = load_vti(p, n_points=5, seed=1)
    assert len(sub) == 5 and bool((sub.cell_ids.diff() > 0).all())
    assert torch.equal(sub.cell_ids, load_vti(p, n_points=5, seed=1).cell_ids)
    assert torch.equal(sub.targets, cells.targets[sub.cell_ids])


def test_vti_flat_image_has_centres_in_its_plane(tmp_path):
    p = tmp_path / "flat.vti"
    _write_vti(p, {"a": np.arange(6, dtype=np.int64)}, extent=(0, 3, 0, 2, 0, 0), origin="0 0 5", spacing="1 1 1")
    cells = load_vti(p)
    assert cells.shape == (3, 2, 1) and cells.coordinates[:, 2].tolist() == [5.0] * 6


def test_vti_against_pyevtk(tmp_path):
    hl = pytest.importorskip("pyevtk.hl")
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.integers(0, 5, (4, 3, 2)).astype(np.float64))
    out = hl.imageToVTK(str(tmp_path / "evtk"), origin=(1.0, 2.0, 3.0), spacing=(0.5, 1.0, 2.0), cellData={"f": a})
    cells = load_vti(out)
    i, j, k = cells.indices.unbind(-1)
    assert cells.targets[:, 0].tolist() == a[i.numpy(), j.numpy(), k.numpy()].tolist()
    np.testing.assert_allclose(cells.coordinates.numpy(), [1, 2, 3] + (cells.indices.numpy() + 0.5) * [0.5, 1, 2])


# Files written by VTK 9.7.2's vtkXMLImageDataWriter (zlib-compressed, base64 here): a 4 x 3 x 2 image, extent
# 1 5 0 3 2 4, origin (1, 2, 3), spacing (0.5, 1, 2), Direction 90 degrees about z; cell arrays facies = (7 c) % 5
# (Int64, active) and poro = c / 8 (Float32) for cell c. Cell centres from VTK (GetCell(c).GetBounds() midpoints):
# cell 0 (0.5, 2.75, 8.0), 1 (0.5, 3.25, 8.0), 2 (0.5, 3.75, 8.0), 23 (-1.5, 4.25, 10.0).
_VTK_WRITTEN = {
    "appended-b64-zlib-UInt32": (
        "eNqlU9ty2jAQfecrNHovxlxymcFkFDCtCZeAIW14YWR7MQq25MgiXL4+ss2lMyV9aKXRjLQ6u3vOrtR82MUR+gCZMsEtbJYr+KFV"
        "ar5Mn7osAqT2CVjYiWkIHaooviArZRMjb69gIWQA0sJ9plQENg8Y5RitgGrrovCfOVzVqhj5Ik4kpKnQ8A+1nveZl0Vtn824VUKo"
        "eU6Hfq6EDrlTwJXmhhqogmqoiuoYjSQLWUZYH2sYuQn1GQ8zWg2kbRh1mARfFVTRN1N7ZquYZp5HZ3pm4AO6muDfRhE3iywYV5mG"
        "s8X409SGKMp1uj6NqEwtvNQyIMUnhMZk90RKuj/1gqsbTW9IYzjD0VLImGoFNEmABxBgNKE8hEFWocpVLcU93Vn4ulaxXKagvvA2"
        "/sKvGwmaN7tgmAgp/o9ftXx328Bf8bu55m5cin4q8bHhRt7x/JUZ52eWH8mRWt4P4L4I8vfk0RR0vXP3BRkTPdp6dbIN+Z6fLQu6"
        "jbdXh5AeexuS99lcTMcHshev3kgQW4ZkoDEX38cw203Ck2892B7sSdjRiIEtZ2bPTd7ddeI8/bJZrGHj9cR21k7bdh1he0HsrYJK"
        "zxzugvWqvpHe4X5zy+v3z7ZJ7jb9l+pc1X4Y9qMcbUfTrWXlUn8Xp3+3cfzerdIn2nIVDw=="
    ),
    "appended-raw-None-UInt64": (
        "eNrNlEtOwzAQhs1jgbpiyXLkFRua9AUsmlLEQ6p4iueymGRaLKV25FpAdxyBI3AEjtAjcASOwBGYOGkEorCADY4+WbZnxv+MR2le"
        "nO3tyhjBjhIMeGcg+rgtrOBwi2YotQp4pexzuB5Z7GoToQn4vrQ2xh0VSaE43KCg3W7mf95RdrXOWyWAZhELLm802d9bVJbCQQN8"
        "qEEV6hyOjOzL9A5a1jicJiKUqh9wv9wA2uOwLQ2G1unwYaVCninZV3H30E3HEkOEqRf8bmRx08haKpvmUOx4X7e2MI5dnqehiIUZ"
        "BrxHaeCQTyzIJj3fNEaMJoV2dYJDMcDCHHraDARlIJIEVYQRhxOh+niQVsifmkt2Lu4DPj1X3esN0X7j/UGeV+j7QfNurIWtVSeq"
        "E2303zRXy+trDf6d5qo/xf9HzU1v8hR5Y3iuM1w3ekU7uuVmLte9G6pQR67vjLjLXq07Zp/HbD7P5/NMPs/9c7urz2Ytxh6IMcE2"
        "GAOiTVwRD8Qj8UQ8E2PihXgl3gjWZmyBWCSWCCCWCZ9Yb7saf6xqq9T08p9Lq/QO1xzhgQ=="
    ),
    "binary-None-UInt32": (
        "eNq1U9tOwkAQfecrJvtqpOWmPLSQQsEQFEG8xCeywFA2ll2ybAT+3p0WimI1vrhNkzk7lz1zMuM1d6sY3lFvhJI+KxVd1mwUvOfH"
        "flfECGa/Rp/1VjzCkBvOTpFuscRgujc4UXqO2me3wpgYO3IuuGSwRG5vJ2n+U0+aSpk1CgBeVgtelsrG7wxKYx+GGrhQgTJUGdxr"
        "EQliY2GFwXjNZ0JG9GYN7B2DUGicmZQHXJZsJv3pV0rfGQqcIeSVJzcFKCENETlg5/yijXGcEB3PeMz1xmcLywM3hwI2gryB1nx/"
        "1EmaK0t/wFeYBcNC6RW3FKZCcr1n8MBlhHfUnnsEfOezalYWYBucnSizOkGe+S2BTi+zWkGeeZeX1D6ZozwzzEv6H36+f9TZyYT+"
        "UfpurDjN2EH8tdLqz9KXi/Xr2if5X7/yvCBVhrbFbVgl7FDDQ9vSKKwHwQ1h67f4jXA/wVvCW8IDwmESXyecdtgjRTukUGuZCEi4"
        "TzhM/NXRL+17znE0k0l3klFPzWy77A47hyVuFD4A5yQTtg=="
    ),
    "binary-lzma-UInt64": (
        "eNqNU9tu4jAQfecrLL9WS0JIgJUIlXNjw50U6JaXygQT3IY4dVwu/fp1gAR1tbvdWJFmjmfOzBx52vfHXQz2hGeUJSasVVV436m0"
        "F7O+R2MCxCklJvR3OCIOFhh+jgSrkyDPjK8JN+GAChETN1lTnECwJViiz5f8uZ+Ihg5ByHYpJ1nGZPhevA6WQ5Sz2iUMOxUA2mU5"
        "8LhlkvIoSCJkRWAAFdSBBiTVmNOI5m1Itw7BQ4pDmkQmVKsGkBgEDuUkFOdWVfCtJjPz/3JqlzoTSkIC/kSfX+cBjCYib+TqK78D"
        "Nonjc6MPIY4xz0y4kX2Q7EogI/JbxDk+FVJelBjhHSmDwYbxHZYtrGiC+QmCACcRGebjqYWDjybUS1oA0BSVX1QYwxu2uJmmMls3"
        "Hj0mTS/1ha6hFloekLtFwdM5QFi+PbtDaH9AwU/Ji5Nm0617LLBcY/Si8+9RcqWy3hZO2EPIFTJf+vZgFurp5AWN6MG/Fo5xMbtS"
        "Dv9XObyYYVHXCkFSxtl/y6FVW03jK0m6N2z1L0ky1HqyXcuLbEV3p66OrA1ygnU+srPZ9Ono2B302WLqGNl8+aO3Dd9rfS1Ou16P"
        "a4f52Hgff2TDXk9vzlfjyTqKOGq5SjZZkK6aFww+6tSPkDXrWo3aJDq+uv2lM3W/lKytFE/s/GKV85O9mOWWyHVVrvvaqfwCTPcd"
        "NQ=="
    ),
}


@pytest.mark.parametrize("key", sorted(_VTK_WRITTEN))
def test_vti_files_written_by_vtk(tmp_path, key):
    p = tmp_path / "vtk.vti"
    p.write_bytes(zlib.decompress(base64.b64decode(_VTK_WRITTEN[key])))
    c = np.arange(24)
    cells = load_vti(p)
    assert cells.target_name == "facies" and cells.targets[:, 0].tolist() == ((7 * c) % 5).tolist()
    assert load_vti(p, array="poro").targets[:, 0].tolist() == (c / 8).tolist()
    assert cells.shape == (4, 3, 2) and cells.direction == ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    expected = {0: [0.5, 2.75, 8.0], 1: [0.5, 3.25, 8.0], 2: [0.5, 3.75, 8.0], 23: [-1.5, 4.25, 10.0]}
    for i, xyz in expected.items():
        assert cells.coordinates[i].tolist() == pytest.approx(xyz, abs=1e-12)


def _vti_text(body: str, **root) -> str:
    attrs = {"type": "ImageData", "version": "1.0", "byte_order": "LittleEndian", **root}
    return "<VTKFile " + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + ">" + body + "</VTKFile>"


_PIECE = '<ImageData WholeExtent="0 2 0 1 0 1"><Piece Extent="0 2 0 1 0 1"><CellData>{}</CellData></Piece></ImageData>'
_ASCII = '<DataArray type="Int32" Name="a" format="ascii">1 2</DataArray>'


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("not xml", {}, "not a VTK XML file"),
        (_vti_text("", type="PolyData"), {}, "not VTK XML ImageData"),
        (_vti_text(_PIECE.format(_ASCII), compressor="vtkLZ4DataCompressor"), {}, "unsupported compressor"),
        (_vti_text(_PIECE.format(_ASCII), header_type="Int8"), {}, "unsupported byte_order"),
        (_vti_text(_PIECE.format(_ASCII)), {"array": "b"}, r"no cell array 'b'; cell arrays: \['a'\]"),
        (_vti_text(_PIECE.format("")), {}, "no cell array None"),
        (_vti_text(_PIECE.format(_ASCII.replace("1 2", "1 2 3"))), {}, "3 values for 2 cells"),
        (_vti_text(_PIECE.format(_ASCII.replace("1 2", "1 x"))), {}, "non-numeric ascii data"),
        (_vti_text(_PIECE.format(_ASCII.replace("Int32", "String"))), {}, "unsupported type 'String'"),
        (_vti_text(_PIECE.format(_ASCII.replace('Name="a"', 'Name="a" NumberOfComponents="3"'))), {}, "3 components"),
        (_vti_text(_PIECE.format(_ASCII.replace("ascii", "appended"))), {}, "has no <AppendedData>"),
        (_vti_text(_PIECE.format(_ASCII.replace("ascii", "hdf5"))), {}, "unsupported format 'hdf5'"),
        (_vti_text(_PIECE.format(_ASCII).replace('<Piece Extent="0 2', '<Piece Extent="0 1')), {}, "equal to"),
        (_vti_text(_PIECE.format(_ASCII).replace("</Piece>", "</Piece><Piece/>")), {}, "got 2 pieces"),
        (_vti_text(_PIECE.format(_ASCII)), {"stride": 0}, "stride must be"),
        (_vti_text(_PIECE.format(_ASCII)), {"stride": (1, 2)}, "stride must be"),
        (_vti_text(_PIECE.format(_ASCII)), {"n_points": 3}, "exceeds the 2 cells"),
        (_vti_text(_PIECE.format(_ASCII)), {"dtype": torch.int32}, "floating torch dtype"),
    ],
)
def test_vti_bad_input(tmp_path, text, kwargs, match):
    p = tmp_path / "bad.vti"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_vti(p, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match", [({"stride": 1.5}, "stride"), ({"stride": (1, 2.0, 1)}, "stride"), ({"n_points": 1.0}, "n_points")]
)
def test_vti_non_integer_counts(tmp_path, kwargs, match):
    p = tmp_path / "t.vti"
    p.write_text(_vti_text(_PIECE.format(_ASCII)))
    with pytest.raises(TypeError, match=match):
        load_vti(p, **kwargs)
    assert load_vti(p, stride=(np.int64(1), 1, 1), n_points=np.int64(1)).coordinates.shape == (1, 3)


def test_vti_corrupt_binary(tmp_path):
    arrays = {"a": np.arange(24, dtype=np.int64)}
    p = tmp_path / "t.vti"
    _write_vti(p, arrays, compressor="vtkZLibDataCompressor", encoding="raw")
    raw = p.read_bytes()
    cut = raw.index(b"_", raw.index(b"<AppendedData")) + 1 + 4 * 3 + 4 * 12 + 3  # inside the first compressed block
    p.write_bytes(raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1 :])
    with pytest.raises(ValueError, match=r"corrupt compressed data|inflates to"):
        load_vti(p)
    _write_vti(p, arrays, encoding="raw")
    raw = p.read_bytes()
    p.write_bytes(raw[: raw.index(b"_", raw.index(b"<AppendedData")) + 1 + 4 + 100])  # truncated after 100 of 192 bytes
    with pytest.raises(ValueError, match="shorter than its header says"):
        load_vti(p)
    _write_vti(p, arrays, fmt="binary")
    p.write_text(p.read_text().replace('format="binary">', 'format="binary">*'))
    with pytest.raises(ValueError, match="invalid base64"):
        load_vti(p)
    with pytest.raises(FileNotFoundError):
        load_vti(tmp_path / "missing.vti")


def test_channels_tiny_file_through_load_channels(tmp_path):
    f = {"facies": np.array([0, 1, 2, 3, 4, 0, 1, 2], dtype=np.int64), "other": np.zeros(8, dtype=np.int64)}
    p = tmp_path / "channels.vti"
    _write_vti(p, dict(reversed(list(f.items()))), extent=(0, 2, 0, 2, 0, 2), compressor="vtkZLibDataCompressor")
    cells = load_channels(source=p, verify=False)  # reads "facies", not the active scalars "other"
    assert cells.target_name == "facies" and cells.targets[:, 0].tolist() == f["facies"].tolist()
    with pytest.raises(OSError, match=r"not the pyvista 0\.49\.1 file"):
        load_channels(source=p)
