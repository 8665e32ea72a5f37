"""CSV input and output of the command line: strict reading, safe (atomic, non-destructive) writing.

Everything here raises :class:`CLIError` with a one-line message for the user; nothing prints.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

__all__ = [
    "CLIError",
    "OutputTarget",
    "Table",
    "check_output",
    "read_table",
    "write_csv_atomic",
    "write_npz_atomic",
    "write_points",
]

#: How many offending line numbers a message lists before "and N more".
_MAX_LINES_LISTED = 5


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit code 2."""


@dataclass(frozen=True)
class Table:
    """Numeric columns read from a CSV file.

    Attributes:
        path: the file.
        columns: the selected column names, in order.
        values: ``n x len(columns)`` float64 values.
        lines: ``n`` line numbers (1 = header) of the rows (int64 array), for messages.
    """

    path: str
    columns: tuple[str, ...]
    values: torch.Tensor
    lines: np.ndarray


def _lines_text(lines: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in lines[:_MAX_LINES_LISTED])
    more = len(lines) - _MAX_LINES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _short(value: str, width: int = 20) -> str:
    return repr(value if len(value) <= width else value[: width - 3] + "...")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: Rows parsed between two growths of the value buffer (and the initial capacity).
_CHUNK_ROWS = 65536


def _check_path(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} file not found: {path}")
    if p.is_dir():
        raise CLIError(f"{what} file {path} is a directory, not a CSV file")
    return p


def _text_lines(fh, path: str) -> Iterator[str]:
    """Decode a binary file line by line as UTF-8 (a leading byte-order mark removed), strictly, in one pass.

    Memory is one line at a time; errors name the byte and its offset in the file, as a whole-file decode would.
    """
    offset = 0
    first = True
    for raw in fh:
        if first:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise CLIError(f"{path} is UTF-16 text; save it as UTF-8 (or ASCII) CSV")
            if raw.startswith(b"\xef\xbb\xbf"):
                raw, offset = raw[3:], 3
            first = False
        if b"\x00" in raw:
            raise CLIError(f"{path} contains NUL bytes; is it a binary file?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CLIError(
                f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {offset + e.start}); save it as "
                "UTF-8 CSV"
            ) from None
        offset += len(raw)
        yield text


def read_table(path: str, columns: Sequence[str], what: str, *, delimiter: str = ",") -> Table:
    r"""Read the named numeric columns of a CSV file with a header row, strictly, in one streaming pass.

    Header names are stripped of surrounding spaces (``x, y, z`` works) and a UTF-8 byte-order mark is removed.
    Rejected, each with a one-line :class:`CLIError`: a missing, unreadable or non-UTF-8 file, a directory, an
    empty file or one without data rows, duplicate column names, missing columns, rows whose number of fields
    differs from the header's (naming the line), non-numeric values (naming line and column) and NaN or infinite
    values (naming the column and lines). Blank lines are skipped.

    Memory: the file is decoded and parsed line by line into a float64 buffer of ``n x len(columns)`` values
    (grown by doubling) and an int64 buffer of line numbers; no copy of the text and no per-row Python lists are
    kept (a 200,000-row file takes about 8 MB).

    Args:
        path: the CSV file.
        columns: names of the columns to read, in order.
        what: what the file is, for messages (``"data"``, ``"prediction grid"``).
        delimiter: field delimiter.

    Returns:
        a :class:`Table`.

    Raises:
        CLIError: see above.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "a.csv")
        ...     _ = open(p, "w").write("\ufeffx, y ,v\n1,2,3\n4,5,6\n")
        ...     t = read_table(p, ["v", "x"], "data")
        >>> t.values.tolist(), t.lines.tolist()
        ([[3.0, 1.0], [6.0, 4.0]], [2, 3])
    """
    _check_path(path, what)
    try:
        with open(path, "rb") as fh:
            return _read_stream(fh, path, list(columns), delimiter)
    except OSError as e:
        raise CLIError(f"cannot read {what} file {path}: {e.strerror or e}") from None


def _read_stream(fh, path: str, columns: list[str], delimiter: str) -> Table:
    reader = csv.reader(_text_lines(fh, path), delimiter=delimiter)
    k = len(columns)
    values = np.empty((_CHUNK_ROWS, k), dtype=np.float64)
    lines = np.empty(_CHUNK_ROWS, dtype=np.int64)
    n = 0
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):  # leading blank lines
            header = next(reader, None)
        if header is None:
            raise CLIError(f"{path} is empty: expected a header row and data rows")
        names = [h.strip() for h in header]
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name and name in seen:
                raise CLIError(f"{path}: duplicate column name {name!r} (columns {seen[name] + 1} and {i + 1})")
            seen[name] = i
        missing = [c for c in columns if c not in seen]
        if missing:
            hint = ""
            if len(names) == 1 and delimiter == "," and any(d in names[0] for d in ";\t|"):
                hint = " (the header has no commas: is the file delimited by another character? see --delimiter)"
            elif all(_is_number(n) for n in names):
                hint = " (the first line holds numbers: the file needs a header row with column names)"
            found = ", ".join(_short(n) for n in names[:12]) + (" ..." if len(names) > 12 else "")
            raise CLIError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {found}{hint}")
        idx = [seen[c] for c in columns]
        width = len(names)
        for row in reader:
            if len(row) != width:
                if not any(f.strip() for f in row):
                    continue  # blank line
                raise CLIError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has {width}")
            if n == len(values):
                values = np.resize(values, (2 * n, k))
                lines = np.resize(lines, 2 * n)
            for c, (name, j) in enumerate(zip(columns, idx, strict=True)):
                field = row[j]
                try:
                    values[n, c] = float(field)
                except ValueError:
                    if not any(f.strip() for f in row):
                        break  # a blank line of a one-column file
                    raise CLIError(
                        f"{path}, line {reader.line_num}: non-numeric value {_short(field.strip())} in column {name!r}"
                    ) from None
            else:
                lines[n] = reader.line_num
                n += 1
    except csv.Error as e:
        raise CLIError(f"{path}, line {reader.line_num}: malformed CSV ({e})") from None
    if n == 0:
        raise CLIError(f"{path} has a header but no data rows")
    values, lines = values[:n], lines[:n]
    finite = np.isfinite(values)
    if not finite.all():
        r0 = int(np.flatnonzero(~finite.all(1))[0])  # the first offending line, as in reading order
        c = int(np.flatnonzero(~finite[r0])[0])
        where = lines[~finite[:, c]].tolist()
        raise CLIError(f"{path}: NaN or infinite value(s) in column {columns[c]!r} on line(s) {_lines_text(where)}")
    return Table(path, tuple(columns), torch.from_numpy(np.ascontiguousarray(values)), lines)


# ----------------------------------------------------------------------------------------------------- output
@dataclass(frozen=True)
class OutputTarget:
    """A checked output path: where predictions go, and whether an existing file may be replaced."""

    path: Path
    force: bool


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(out: str, inputs: Iterable[str], *, force: bool) -> OutputTarget:
    """Check an output path before any work is done, so that a long fit is not lost to a bad path.

    Refused (one-line :class:`CLIError`): an input file (also through a link; ``--force`` does not override
    this), an existing file without ``force``, anything that is not a regular file (a directory, a device such
    as ``/dev/full``), a missing folder, and a folder where no file can be created (probed by creating and
    removing a temporary file there).

    Args:
        out: the output path.
        inputs: paths of the input files.
        force: allow replacing an existing (non-input) file.

    Returns:
        an :class:`OutputTarget`.

    Raises:
        CLIError: see above.
    """
    p = Path(out)
    for src in inputs:
        if src and (p.exists() or p.is_symlink()) and _same_file(p, Path(src)):
            raise CLIError(f"--out {out} is the input file {src}; refusing to write over an input file")
    if p.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name")
    if p.exists() and not p.is_file():
        raise CLIError(f"--out {out} exists and is not a regular file; refusing to write to it")
    if p.exists() and not force:
        raise CLIError(f"--out {out} already exists; use --force to replace it")
    parent = p.parent
    if not parent.exists():
        raise CLIError(f"--out {out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise CLIError(f"--out {out}: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot create a file in {parent} ({e.strerror or e})") from None
    return OutputTarget(path=p, force=force)


def _file_mode(p: Path) -> int:
    """Mode of the file being replaced, else what ``open()`` would give (``0o666`` less the umask)."""
    try:
        return p.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_points(
    target: OutputTarget, header: Sequence[str], points: np.ndarray, columns: Sequence[np.ndarray]
) -> None:
    """Write ``n x 3`` points and per-point columns as CSV (atomic), converting ``_CHUNK_ROWS`` rows at a time.

    Args:
        target: from :func:`check_output`.
        header: ``3 + len(columns)`` names.
        points: ``n x 3`` array.
        columns: arrays of ``n`` values.
    """

    def rows():
        for a in range(0, len(points), _CHUNK_ROWS):
            block = np.column_stack([points[a : a + _CHUNK_ROWS], *(c[a : a + _CHUNK_ROWS] for c in columns)])
            yield from block.tolist()

    write_csv_atomic(target, header, rows())


def write_npz_atomic(target: OutputTarget, arrays: dict[str, np.ndarray]) -> None:
    """Write NumPy arrays to an ``.npz`` file atomically (same rules as :func:`write_csv_atomic`).

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     t = check_output(os.path.join(d, "a.npz"), [], force=False)
        ...     write_npz_atomic(t, {"x": np.arange(3)})
        ...     np.load(t.path)["x"].tolist()
        [0, 1, 2]
    """
    _write_atomic(target, "wb", lambda fh: np.savez(fh, **arrays))


def write_csv_atomic(target: OutputTarget, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV file atomically: to a temporary file in the same folder, then ``os.replace`` it into place.

    An interrupted or failed write (``KeyboardInterrupt``, a full disk) leaves no partial file: the temporary
    file is removed and an existing file at ``target.path`` is untouched. Without ``target.force`` an output
    file that appeared since :func:`check_output` is not replaced.

    Args:
        target: from :func:`check_output`.
        header: the header row.
        rows: the data rows.

    Raises:
        CLIError: the file cannot be written (e.g. ``ENOSPC``); nothing is left behind.
    """

    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)

    _write_atomic(target, "w", write)


def _write_atomic(target: OutputTarget, mode: str, write: Callable[[IO], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``target.path``, fsync it, then ``os.replace`` it into place.

    On any failure, the interrupt included, the temporary file is removed and an existing file is untouched.
    """
    p = target.path
    if p.exists() and not target.force:
        raise CLIError(f"--out {p} appeared while fitting; not replaced (use --force)")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(p))
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise CLIError(f"could not write {p}: {e.strerror or e}; nothing was written") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
