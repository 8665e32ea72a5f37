"""Training data for the scalable models: tensors, NumPy arrays / memmaps or a CSV file, read by row gathers.

Nothing here copies a whole data set more than once: a memmap stays on disk and minibatches are gathered from
it row by row (sorted indices, so the reads are monotone); a CSV is parsed once, in chunks, into one
preallocated ``float32`` array (a first pass counts the rows, a second fills the array).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DataSource", "Standardization", "read_csv"]

#: Rows per chunk when data are streamed (statistics, closed-form passes, CSV parsing).
CHUNK_ROWS = 65536


def read_csv(
    path: str | os.PathLike, columns: Sequence[str], *, chunk_rows: int = CHUNK_ROWS, delimiter: str = ","
) -> np.ndarray:
    r"""Read named numeric columns of a CSV file into one ``float32`` array, in chunks.

    A first pass counts the data rows, a second parses ``chunk_rows`` lines at a time (``np.loadtxt`` on the
    chunk) into a preallocated ``n x len(columns)`` array: peak memory is the result plus one chunk.

    Args:
        path: CSV file with a header row.
        columns: names of the columns to read, in order.
        chunk_rows: lines parsed per chunk.
        delimiter: field separator.

    Returns:
        ``n x len(columns)`` ``float32`` array.

    Raises:
        ValueError: missing file, missing column, no data rows or a non-numeric entry.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
        >>> _ = p.write_text("x,y,z,v\n0,1,2,3\n4,5,6,7\n")
        >>> read_csv(p, ["z", "v"])
        array([[2., 3.],
               [6., 7.]], dtype=float32)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"CSV file not found: {path!r}")
    with open(path, newline="") as fh:
        header = next(csv.reader([fh.readline()], delimiter=delimiter), [])
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: column(s) {missing} not in the header {header}")
        n = sum(1 for line in fh if line.strip())
    if n == 0:
        raise ValueError(f"{path}: no data rows")
    usecols = [header.index(c) for c in columns]
    out = np.empty((n, len(columns)), dtype=np.float32)
    with open(path, newline="") as fh:
        fh.readline()
        lines = (line for line in fh if line.strip())
        row = 0
        while row < n:
            chunk = list(itertools.islice(lines, chunk_rows))
            if not chunk:
                break
            try:
                values = np.loadtxt(chunk, delimiter=delimiter, usecols=usecols, dtype=np.float64, ndmin=2)
            except ValueError as e:
                raise ValueError(f"{path}: non-numeric entry in rows {row + 1}..{row + len(chunk)}: {e}") from e
            out[row : row + len(values)] = values
            row += len(values)
    return out


def _check_array(name: str, a: object) -> Tensor | np.ndarray:
    if torch.is_tensor(a):
        if not a.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {a.dtype}")
        return a.detach()
    if isinstance(a, np.ndarray):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
        return a
    raise TypeError(
        f"{name} must be a torch.Tensor, a NumPy array/memmap or (train_X only) a CSV path, got {type(a).__name__}"
    )


@dataclass
class Standardization:
    """Affine maps of the data: ``x_s = (x - x_center) / x_scale`` (one factor, all axes), ``y_s = (y - mu) / sd``.

    Attributes:
        x_center: ``(3,)`` midpoint of the inputs' bounding box (float64).
        x_scale: largest side of the bounding box.
        y_mean: mean of the targets.
        y_std: standard deviation of the targets (1 if they are constant).

    Example:
        >>> s = Standardization(torch.zeros(3, dtype=torch.float64), 2.0, 1.0, 4.0)
        >>> s.x(torch.tensor([[2.0, 0.0, -2.0]]))
        tensor([[ 1.,  0., -1.]])
        >>> s.y_back(torch.tensor([0.5]))
        tensor([3.])
    """

    x_center: Tensor
    x_scale: float
    y_mean: float
    y_std: float

    def x(self, X: Tensor) -> Tensor:
        """Scale ``... x 3`` inputs (keeps their dtype)."""
        return (X - self.x_center.to(X)) / self.x_scale

    def y(self, Y: Tensor) -> Tensor:
        """Standardise targets."""
        return (Y - self.y_mean) / self.y_std

    def y_back(self, Y: Tensor) -> Tensor:
        """Map standardised values back to the data's units."""
        return Y * self.y_std + self.y_mean


class DataSource:
    """``N x 3`` inputs and ``N`` targets read by row gathers, in a working dtype and on a device.

    Args:
        X: ``N x 3`` tensor or NumPy array/memmap.
        Y: ``N``, ``N x 1`` tensor or array.
        dtype: working dtype of the gathered tensors.
        device: device of the gathered tensors.

    Example:
        >>> src = DataSource(np.arange(12.0).reshape(4, 3), np.arange(4.0), torch.float32, torch.device("cpu"))
        >>> x, y = src.rows(np.array([3, 1]))
        >>> x.tolist(), y.tolist()
        ([[9.0, 10.0, 11.0], [3.0, 4.0, 5.0]], [3.0, 1.0])
    """

    def __init__(self, X: Tensor | np.ndarray, Y: Tensor | np.ndarray, dtype: torch.dtype, device: torch.device):
        X = _check_array("train_X", X)
        Y = _check_array("train_Y", Y)
        if X.ndim != 2 or X.shape[1] != 3:
            raise ValueError(f"train_X must have shape (N, 3), got {tuple(X.shape)}")
        if Y.ndim == 2 and Y.shape[1] == 1:
            Y = Y[:, 0]
        if Y.ndim != 1:
            raise ValueError(f"train_Y must have shape (N,) or (N, 1), got {tuple(Y.shape)}")
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"train_X and train_Y have different numbers of rows: {X.shape[0]} and {Y.shape[0]}")
        if X.shape[0] < 2:
            raise ValueError(f"need at least 2 training points, got {X.shape[0]}")
        self.X, self.Y = X, Y
        self.n = int(X.shape[0])
        self.dtype, self.device = dtype, device

    def _take(self, a: Tensor | np.ndarray, idx: np.ndarray) -> Tensor:
        if torch.is_tensor(a):
            out = a[torch.as_tensor(idx, device=a.device)]
        else:
            out = torch.from_numpy(np.ascontiguousarray(a[idx]))
        return out.to(device=self.device, dtype=self.dtype)

    def rows(self, idx: np.ndarray) -> tuple[Tensor, Tensor]:
        """Rows ``idx`` (any order) as ``(len(idx) x 3, len(idx))`` tensors in the working dtype."""
        return self._take(self.X, idx), self._take(self.Y, idx)

    def slice(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Contiguous rows ``start:stop``."""
        return self.rows(np.arange(start, stop))

    def chunks(
        self, start: int = 0, stop: int | None = None, size: int = CHUNK_ROWS
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Contiguous chunks of rows ``start:stop``."""
        stop = self.n if stop is None else stop
        for a in range(start, stop, size):
            yield self.slice(a, min(a + size, stop))

    def shard(self, rank: int, world_size: int) -> tuple[int, int]:
        """Contiguous row range ``[start, stop)`` owned by ``rank`` of ``world_size`` (for statistics passes)."""
        per = math.ceil(self.n / world_size)
        return min(rank * per, self.n), min((rank + 1) * per, self.n)

    def local_statistics(self, start: int, stop: int) -> Tensor:
        """``(10,)`` float64 vector: per-axis min (3), per-axis max (3), count, sum y, sum y^2, #non-finite rows."""
        lo = torch.full((3,), math.inf, dtype=torch.float64)
        hi = torch.full((3,), -math.inf, dtype=torch.float64)
        cnt = s1 = s2 = bad = 0.0
        for x, y in self.chunks(start, stop):
            x, y = x.to(device="cpu", dtype=torch.float64), y.to(device="cpu", dtype=torch.float64)
            finite = torch.isfinite(x).all(-1) & torch.isfinite(y)
            bad += float((~finite).sum())
            if len(x):
                lo = torch.minimum(lo, x.min(0).values)
                hi = torch.maximum(hi, x.max(0).values)
            cnt += len(y)
            s1 += float(y.sum())
            s2 += float((y * y).sum())
        return torch.cat([lo, hi, torch.tensor([cnt, s1, s2, bad], dtype=torch.float64)])


def standardization_from_statistics(stats: Tensor) -> Standardization:
    """Build the maps from (reduced) :meth:`DataSource.local_statistics`; raises on non-finite data."""
    lo, hi, (cnt, s1, s2, bad) = stats[:3], stats[3:6], stats[6:].tolist()
    if bad > 0:
        raise ValueError(f"training data contain NaN or inf in {int(bad)} row(s); inputs and targets must be finite")
    scale = float((hi - lo).max())
    if not scale > 0:
        raise ValueError("all training inputs coincide; cannot scale coordinates")
    mean = s1 / cnt
    var = max(s2 / cnt - mean * mean, 0.0) * cnt / max(cnt - 1.0, 1.0)
    std = math.sqrt(var) if var > 1e-30 else 1.0
    return Standardization(x_center=0.5 * (lo + hi), x_scale=scale, y_mean=mean, y_std=std)


def as_arrays(
    train_X: object, train_Y: object, coords: Sequence[str] | None
) -> tuple[Tensor | np.ndarray, Tensor | np.ndarray]:
    """Resolve a CSV path (``train_Y`` = target column name) into arrays; pass tensors/arrays through."""
    if isinstance(train_X, str | os.PathLike):
        if not isinstance(train_Y, str):
            raise TypeError(
                f"with a CSV path as train_X, train_Y must be the target column name, got {type(train_Y).__name__}"
            )
        coords = tuple(coords) if coords is not None else ("x", "y", "z")
        if len(coords) != 3:
            raise ValueError(f"coords must name 3 columns, got {coords}")
        data = read_csv(train_X, [*coords, train_Y])
        return data[:, :3], data[:, 3]
    if coords is not None:
        raise TypeError("coords is only used with a CSV path as train_X")
    return train_X, train_Y


def working_dtype(X: object, dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` if given, else the inputs' floating dtype (float32/float64), else float32."""
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        return dtype
    if torch.is_tensor(X) and X.dtype in (torch.float32, torch.float64):
        return X.dtype
    if isinstance(X, np.ndarray) and X.dtype == np.float64:
        return torch.float64
    return torch.float32
