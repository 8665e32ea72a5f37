r"""The oil-sands drill-hole example: 5,808 real 3 m composites from 280 vertical drill holes (offline).

The data file ``gpytorch_so3/data/oilsands.dat`` is vendored, unchanged, from ``pygeostat==1.2.0`` (MIT licence,
Center for Computational Geostatistics, University of Alberta; path ``pygeostat/data/example_data/oilsands.dat``
in the wheel); ``gpytorch_so3/data/NOTICE`` gives its provenance and the licence text. Its SHA-256 is checked
on every load.

GSLIB/GeoEAS format: a title line, the number of columns (8), one name per line, then whitespace-separated rows
``Drillhole Number, East, North, Elevation, Bitumen, Fines, Chlorides, Facies Code``. Coordinates are metres
(a local grid: East 567..3876, North 5011..10991, Elevation 146.5..275.5); Bitumen and Fines are mass
percentages, Chlorides ppm; ``-9`` marks a missing value (it occurs only in Chlorides and Facies Code).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gpytorch_so3._validation import check_int

__all__ = [
    "OILSANDS_COLUMNS",
    "OILSANDS_SHA256",
    "OILSANDS_TARGETS",
    "DrillHoleData",
    "hole_folds",
    "load_oilsands",
]

#: SHA-256 of ``oilsands.dat`` as shipped in the ``pygeostat==1.2.0`` wheel (also listed in its RECORD).
OILSANDS_SHA256 = "b5268a8ac24a30313f420e1b78a8800a45699bb38c696c917b60f19d5cbca1ef"

#: Column names of the file, in order.
OILSANDS_COLUMNS = (
    "Drillhole Number",
    "East",
    "North",
    "Elevation",
    "Bitumen",
    "Fines",
    "Chlorides",
    "Facies Code",
)

#: Accepted ``target`` names (case-insensitive) and the column each selects.
OILSANDS_TARGETS = {
    "bitumen": "Bitumen",
    "fines": "Fines",
    "chlorides": "Chlorides",
    "facies": "Facies Code",
    "facies code": "Facies Code",
}

#: The missing-value code of the file.
MISSING_CODE = -9.0

_N_HEADER_LINES = 2 + len(OILSANDS_COLUMNS)


@dataclass(frozen=True, eq=False)
class DrillHoleData:
    """Drill-hole samples: coordinates, one target, hole ids and the full table.

    Attributes:
        coordinates: ``n x 3`` (East, North, Elevation) in metres.
        targets: ``n x 1`` values of :attr:`target_name` (NaN where missing, if not dropped).
        hole_ids: ``n`` int64 drill-hole numbers (the grouping for held-out-by-hole validation).
        target_name: the column the targets come from.
        columns: names of the columns of :attr:`table`.
        table: ``n x 8`` all columns of the same rows, missing codes (``-9``) replaced by NaN.
        title: the title line of the file.

    Example:
        >>> data = load_oilsands(target="Bitumen")
        >>> len(data), data.n_holes, data.columns[4:6]
        (5808, 280, ('Bitumen', 'Fines'))
        >>> data.column("Fines")[:3]
        tensor([28.7840, 22.8970, 15.1440], dtype=torch.float64)
        >>> torch.equal(data.column("Bitumen").unsqueeze(-1), data.targets)
        True
    """

    coordinates: Tensor
    targets: Tensor
    hole_ids: Tensor
    target_name: str
    columns: tuple[str, ...]
    table: Tensor
    title: str

    def __len__(self) -> int:
        return int(self.coordinates.shape[0])

    @property
    def n_holes(self) -> int:
        """Number of distinct drill holes."""
        return int(torch.unique(self.hole_ids).numel())

    def column(self, name: str) -> Tensor:
        """One column of :attr:`table` by name, ``n``."""
        try:
            return self.table[:, self.columns.index(name)]
        except ValueError:
            raise ValueError(f"unknown column {name!r}; columns are {', '.join(self.columns)}") from None


def _default_path() -> Path:
    return Path(str(resources.files("gpytorch_so3") / "data" / "oilsands.dat"))


def _read_verified(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(
            f"oil-sands data file not found at {path}; reinstall gpytorch-so3 (it ships gpytorch_so3/data/oilsands.dat)"
        )
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != OILSANDS_SHA256:
        raise OSError(
            f"{path} is corrupt or not the pygeostat 1.2.0 oilsands.dat: SHA-256 {digest}, expected "
            f"{OILSANDS_SHA256}. Reinstall gpytorch-so3, or pass path= to a pristine copy "
            "(pip download --no-deps pygeostat==1.2.0; pygeostat/data/example_data/oilsands.dat in the wheel)"
        )
    return raw


def _parse(raw: bytes, path: Path) -> tuple[str, np.ndarray]:
    lines = raw.decode("ascii").splitlines()
    title = lines[0].strip()
    ncol = int(lines[1].split()[0])
    names = tuple(line.strip() for line in lines[2 : 2 + ncol])
    if names != OILSANDS_COLUMNS:  # pragma: no cover - impossible once the checksum matched
        raise OSError(f"{path}: unexpected columns {names}")
    data = np.array([row.split() for row in lines[_N_HEADER_LINES:] if row.strip()], dtype=np.float64)
    return title, data


def load_oilsands(
    *,
    target: str = "Bitumen",
    dropna: bool = True,
    dtype: torch.dtype = torch.float64,
    path: str | Path | None = None,
) -> DrillHoleData:
    """Load pygeostat's oil-sands drill-hole data (vendored; works offline; checksum verified).

    5,808 samples (3 m composites) from 280 vertical drill holes over about 3.3 km (East) x 6.0 km (North)
    x 129 m (Elevation). The field is strongly anisotropic: horizontal correlation ranges of hundreds of
    metres, vertical ones of about ten metres (flat-lying layers).

    Args:
        target: ``"Bitumen"`` (default), ``"Fines"``, ``"Chlorides"`` or ``"Facies"`` / ``"Facies Code"``
            (case-insensitive).
        dropna: drop the rows whose target is missing (``-9`` in the file; only Chlorides: 2,248 rows and
            Facies: 1,132 rows). With ``False`` they are kept with NaN targets.
        dtype: floating dtype of the returned tensors (``hole_ids`` are int64).
        path: read this copy of ``oilsands.dat`` instead of the packaged one (its checksum must match too).

    Returns:
        a :class:`DrillHoleData`.

    Raises:
        ValueError: unknown target or non-floating dtype.
        FileNotFoundError: the data file is missing.
        OSError: the file does not match the pygeostat 1.2.0 checksum (corrupt or different file).

    Example:
        >>> data = load_oilsands(target="Fines")
        >>> len(data), data.n_holes, tuple(data.coordinates.shape), data.target_name
        (5808, 280, (5808, 3), 'Fines')
    """
    if not isinstance(target, str) or target.strip().lower() not in OILSANDS_TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of Bitumen, Fines, Chlorides, Facies")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    column = OILSANDS_TARGETS[target.strip().lower()]
    p = _default_path() if path is None else Path(path)
    title, data = _parse(_read_verified(p), p)
    table = data.copy()
    table[table == MISSING_CODE] = np.nan
    y = table[:, OILSANDS_COLUMNS.index(column)]
    if dropna:
        keep = ~np.isnan(y)
        table, data = table[keep], data[keep]
    t = torch.as_tensor(table, dtype=dtype)
    return DrillHoleData(
        coordinates=t[:, 1:4].clone(),
        targets=t[:, OILSANDS_COLUMNS.index(column)].unsqueeze(-1).clone(),
        hole_ids=torch.as_tensor(data[:, 0], dtype=torch.int64),
        target_name=column,
        columns=OILSANDS_COLUMNS,
        table=t,
        title=title,
    )


def hole_folds(hole_ids: Tensor, n_folds: int = 5, *, seed: int = 0) -> Tensor:
    """Assign whole drill holes to ``n_folds`` folds (grouped K-fold): every hole lies in exactly one fold.

    Holes are shuffled with ``seed`` and dealt round-robin, so fold sizes differ by at most one hole.

    Args:
        hole_ids: ``n`` hole id of each sample.
        n_folds: number of folds (``2 <= n_folds <= number of holes``).
        seed: shuffling seed.

    Returns:
        ``n`` int64 fold index of each sample, in ``[0, n_folds)``.

    Example:
        >>> folds = hole_folds(torch.tensor([1, 1, 2, 2, 3, 3]), n_folds=3)
        >>> sorted(folds.tolist())
        [0, 0, 1, 1, 2, 2]
    """
    if hole_ids.dim() != 1:
        raise ValueError(f"hole_ids must be 1-D, got shape {tuple(hole_ids.shape)}")
    holes, inverse = torch.unique(hole_ids, return_inverse=True)
    n_folds = check_int("n_folds", n_folds, 2, holes.numel())  # at most one fold per hole
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(holes.numel(), generator=g)
    fold_of_hole = torch.empty(holes.numel(), dtype=torch.int64)
    fold_of_hole[perm] = torch.arange(holes.numel()) % n_folds
    return fold_of_hole[inverse.cpu()].to(hole_ids.device)
