"""Plain-text tables of the command line: principal axes (one orientation convention) and held-out skill."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.geo import HORIZONTAL_TOL, azimuth_dip

__all__ = ["UNBOUNDED_FACTOR", "axes_report", "lower_end", "skill_report", "table", "unbounded_notes"]

#: A length-scale longer than this many times the data's extent along its axis is reported as effectively
#: unbounded: at lag = extent the Matern-2.5 correlation is then above 0.99, the data cannot tell it from infinity.
UNBOUNDED_FACTOR = 10.0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned plain-text table.

    Example:
        >>> print(table(["a", "bb"], [["1", "2"]]))
        a  bb
        -  --
        1   2
    """
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def lower_end(u: Tensor) -> Tensor:
    """The end of an axis that points down (``u_z <= 0``), the end that azimuth and dip describe.

    Horizontal axes (``|u_z| < 1e-9 |u|``) take the end with azimuth in ``[0, 180)``, as
    :func:`gpytorch_so3.geo.azimuth_dip` does.

    Args:
        u: ``(3,)`` direction.

    Returns:
        ``u`` or ``-u``.

    Example:
        >>> lower_end(torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)).tolist()
        [-0.6, -0.0, -0.8]
        >>> lower_end(torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64)).tolist()  # horizontal: azimuth 90, East
        [1.0, -0.0, -0.0]
    """
    n = float(u.norm())
    if abs(float(u[2])) >= HORIZONTAL_TOL * n:
        return -u if float(u[2]) > 0 else u
    az = math.degrees(math.atan2(float(u[0]), float(u[1]))) % 360.0
    return u if az < 180.0 else -u


def _axis_cells(u: Tensor) -> list[str]:
    u = lower_end(u)
    az, dip = azimuth_dip(u)
    x, y, z = (round(float(v), 3) + 0.0 for v in u)  # "+ 0.0": no "-0.000"
    return [f"({x:+.3f}, {y:+.3f}, {z:+.3f})", f"{float(az):.1f}", f"{float(dip):.1f}"]


def axes_report(
    fitted: Sequence, scale: float, truth: tuple[Tensor, Tensor] | None, units: str, names: Sequence[str] = ()
) -> str:
    """Principal axes of each fitted model (and the truth): length-scale, direction, azimuth and dip.

    The direction printed is the lower end of the axis (``z <= 0``), the same end whose azimuth (clockwise from
    North = +y) and dip (below horizontal) are printed, so the three describe one arrow.

    Args:
        fitted: objects with ``name``, ``lengthscale (3,)`` and ``axes (3, 3)`` (columns), scaled units.
        scale: data units per scaled unit.
        truth: ``(lengthscale (3,), axes (3, 3))`` or ``None``.
        units: unit label for the header.
        names: the coordinate names (for the header), default x, y, z.

    Returns:
        the table.
    """
    cx, cy, cz = names or ("x", "y", "z")
    header = ["model", "axis", f"length-scale{units}", f"direction ({cx}, {cy}, {cz}), lower end", "azimuth", "dip"]
    if truth is not None:
        header.append("angle err (deg)")
    rows = []
    if truth is not None:
        t_ls, t_ax = truth
        for i in range(3):
            rows.append(["truth", str(i + 1), f"{float(t_ls[i]) * scale:.4g}", *_axis_cells(t_ax[:, i]), ""])
    for fm in fitted:
        for i in range(3):
            u = fm.axes[:, i]
            row = [fm.name, str(i + 1), f"{float(fm.lengthscale[i]) * scale:.4g}", *_axis_cells(u)]
            if truth is not None:
                row.append(f"{float(so3.angle_between_axes(u, truth[1][:, i])):.2f}")
            rows.append(row)
    return table(header, rows)


def unbounded_notes(fitted: Sequence, X: Tensor, scale: float, units: str) -> list[str]:
    """One line per principal axis whose length-scale exceeds :data:`UNBOUNDED_FACTOR` times the data's extent.

    Args:
        fitted: objects with ``name``, ``lengthscale (3,)``, ``axes (3, 3)`` (scaled units).
        X: ``n x 3`` scaled inputs the model was fitted to.
        scale: data units per scaled unit.
        units: unit label (e.g. ``" data units"``).

    Returns:
        the notes (possibly empty).
    """
    notes = []
    Xc = X.detach().to("cpu", torch.float64)
    for fm in fitted:
        proj = Xc @ fm.axes.to(Xc)  # n x 3 coordinates along the principal axes
        extent = (proj.max(0).values - proj.min(0).values).tolist()
        for i, (ls, ext) in enumerate(zip(fm.lengthscale.tolist(), extent, strict=True)):
            if ls > UNBOUNDED_FACTOR * ext:
                notes.append(
                    f"note: {fm.name} axis {i + 1}: length-scale {ls * scale:.4g}{units} is "
                    f"{ls / max(ext, 1e-300):.3g}x the data's extent along it ({ext * scale:.4g}{units}): "
                    "effectively unbounded along this axis (the data cannot tell it from infinity)"
                )
    return notes


def skill_report(fitted: Sequence, metrics: Sequence[dict]) -> str:
    """Held-out RMSE, NLPD, R^2, 90% coverage and fit time of each model, then which model wins, in words."""
    rows = [
        [
            fm.name,
            f"{m['rmse']:.4g}",
            f"{m['nlpd']:.4g}",
            f"{m['r2']:.3f}",
            f"{m['coverage90']:.2f}",
            f"{fm.fit_seconds:.1f}",
        ]
        for fm, m in zip(fitted, metrics, strict=True)
    ]
    text = table(["model", "held-out RMSE", "NLPD", "R^2", "90% coverage", "fit time (s)"], rows)
    return text + "\n" + winner_sentence(fitted, metrics)


def winner_sentence(fitted: Sequence, metrics: Sequence[dict]) -> str:
    """Which model has the lowest held-out NLPD, in words (lower is better)."""
    ranked = sorted(zip(fitted, metrics, strict=True), key=lambda p: p[1]["nlpd"])
    if not ranked or not all(math.isfinite(m["nlpd"]) for _, m in ranked):
        return ""
    best, bm = ranked[0]
    text = (
        f"Best model: {best.name}, with the lowest held-out NLPD ({bm['nlpd']:.4g}); lower NLPD is better "
        "(it scores the whole predictive distribution, mean and uncertainty; lower RMSE is better too)"
    )
    if len(ranked) > 1:
        text += ". Then " + ", ".join(f"{fm.name} ({m['nlpd']:.4g})" for fm, m in ranked[1:]) + "."
    by = {fm.kind: m for fm, m in zip(fitted, metrics, strict=True)}
    if "so3" in by and "ard" in by and by["ard"]["rmse"] > 0:
        text += f"\nRMSE ratio SO(3) / ARD: {by['so3']['rmse'] / by['ard']['rmse']:.3f} (below 1: SO(3) is better)"
    return text
