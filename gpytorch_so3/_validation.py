"""Argument checks shared by the whole package (no package imports: every layer may use them)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["check_int"]


def check_int(
    name: str,
    value: object,
    minimum: int,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
    where: str = "",
) -> int | None:
    """``value`` as a Python ``int`` in ``[minimum, maximum]``; ``TypeError``/``ValueError`` naming it otherwise.

    Any integral number is accepted (``numpy.int64`` too) and returned as ``int``; ``bool`` is rejected (it is an
    ``int`` to Python, but never a count). A value of the wrong type raises ``TypeError``, one out of range
    ``ValueError``; both messages read ``"{where}{name} must be an int >= {minimum}, got ..."`` (or ``in [minimum,
    maximum]``), so a caller's error names its own argument (``where`` prefixes the function, e.g. ``"fit_nuts: "``).

    Example:
        >>> check_int("num_samples", 8, 1)
        8
        >>> check_int("window", 0, 1, where="PrequentialSelector: ")
        Traceback (most recent call last):
            ...
        ValueError: PrequentialSelector: window must be an int >= 1, got 0
        >>> check_int("seed", 2.5, 0)
        Traceback (most recent call last):
            ...
        TypeError: seed must be an int >= 0, got float 2.5
    """
    if value is None and allow_none:
        return None
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}{name} must be an int {bound}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{where}{name} must be an int {bound}, got {value!r}")
    return int(value)


def check_dim(dim: object, *, where: str = "", note: str = "") -> int:
    """A number of rotated dimensions: :func:`check_int` for the type, ``"{where}dim must be >= 2{note}, got ..."``.

    The ``ValueError`` wording below 2 is the one the SO(d) modules have always used (``note`` adds their hint).

    Example:
        >>> check_dim(3)
        3
        >>> check_dim(1, note=" (SO(1) is trivial)")
        Traceback (most recent call last):
            ...
        ValueError: dim must be >= 2 (SO(1) is trivial), got 1
    """
    try:
        return check_int("dim", dim, 2, where=where)
    except ValueError:
        raise ValueError(f"{where}dim must be >= 2{note}, got {dim}") from None


def check_float_dtype(dtype: object, *, where: str = "") -> None:
    """``TypeError`` unless ``dtype`` is a floating ``torch.dtype`` (``None`` passes: the caller's default).

    Example:
        >>> check_float_dtype(torch.float32)
        >>> check_float_dtype(torch.int64, where="random_rotation: ")
        Traceback (most recent call last):
            ...
        TypeError: random_rotation: dtype must be a floating torch.dtype, got torch.int64
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{where}dtype must be a floating torch.dtype, got {dtype}")


def raise_if_not_rotations(
    name: str, R: torch.Tensor, finite: torch.Tensor, orth: torch.Tensor, det: torch.Tensor, tol: float
) -> None:
    """The error of ``so3.check_rotation`` (and of ``sod.log_map`` in any ``d``), naming the first bad matrix.

    ``finite``, ``orth`` (max ``|R^T R - I|``) and ``det`` are per matrix (``R``'s batch shape).
    """
    bad = ~finite | ~(orth <= tol) | ~((det - 1.0).abs() <= tol)
    if not bool(bad.any()):
        return
    idx = tuple(int(i) for i in bad.nonzero()[0]) if bad.dim() else ()
    where = f" at batch index {idx}" if idx else ""
    batch = f" (shape {tuple(R.shape)})" if R.dim() > 2 else ""
    if not bool(finite[idx]):
        problem = "it has non-finite entries"
    else:
        d, o = float(det[idx]), float(orth[idx])
        kind = " (a reflection)" if d < 0 else (" (singular)" if abs(d) <= tol else "")
        problem = f"det = {d:.6g}{kind}, max |R^T R - I| = {o:.3g}"
    raise ValueError(
        f"{name} is not a rotation matrix{where}{batch}: {problem}; expected R^T R = I and det R = +1 within "
        f"{tol:.3g} ({R.dtype}). Pass check=False to skip this test."
    )
