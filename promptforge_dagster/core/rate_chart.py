"""The rate plot as text: a few lines of block characters that any viewer shows.

Dagster's UI (react-markdown 9 inside) empties ``data:`` image URLs, so a PNG cannot be
shown inline in a materialization; a code block of text can, and so can a terminal, a
log and ``summary.json``. Achieved and allowed share one scale, so the gap between the
two rows is the allowance the job did not use; 429s have their own scale.

>>> from promptforge_dagster.core.rate_history import RatePoint
>>> pts = [RatePoint(t, min(600, 100 * t), min(590, 95 * t), 3 if t == 7 else 0, 600 if t > 7 else None, None)
...        for t in range(1, 13)]
>>> print(rate_chart(pts, width=12))
achieved RPM ▂▃▄▆▇███████ peak 590
allowed RPM  ▂▃▄▆▇███████ peak 600
429s               █      total 3
0-12 s, 1 s per column; learned ceiling 600 RPM
"""

from __future__ import annotations

import math
from typing import Sequence

WIDTH = 48  # columns: a markdown value under Dagster's 1,000-character inline limit
BLOCKS = " ▁▂▃▄▅▆▇█"  # eighths; a blank is exactly zero


def _row(values: Sequence[float], top: float) -> str:
    """Each value as a block of height value/top, in eighths; any value above zero shows.

    >>> _row([0, 1, 4, 8], 8)
    ' ▁▄█'
    """
    if top <= 0:
        return " " * len(values)
    return "".join(BLOCKS[min(8, max(1, math.ceil(v / top * 8)))] if v > 0 else " " for v in values)


def _columns(points: Sequence, width: int) -> list[list]:
    """The job's time from its start to the last sample split into ``width`` equal spans
    (fewer if there are fewer points); a sample covers the interval that ends at its ``t``."""
    n = min(width, len(points))
    span = points[-1].t / n if points[-1].t > 0 else 1.0
    columns: list[list] = [[] for _ in range(n)]
    for p in points:
        columns[min(n - 1, max(0, math.ceil(p.t / span) - 1))].append(p)
    return columns


def rate_chart(points: Sequence, width: int = WIDTH) -> str:
    """Achieved and allowed RPM and 429s over the job's time (``RatePoint`` samples)."""
    if not points:
        return "no rate samples yet"
    columns = _columns(points, width)
    # a sample covers the time since the one before it: a column's rate is weighted by that
    # time, so a sample taken a moment after another (a forced one) cannot spike its column
    covered = {id(p): p.t - (points[i - 1].t if i else 0.0) for i, p in enumerate(points)}

    def mean(ps, rate) -> float:
        span = sum(covered[id(p)] for p in ps)
        return sum(rate(p) * covered[id(p)] for p in ps) / span if span > 0 else 0.0

    achieved = [mean(c, lambda p: p.achieved_rpm) for c in columns]
    allowed = [mean(c, lambda p: p.allowed_rpm) for c in columns]
    refused = [sum(p.refused for p in c) for c in columns]
    top = max(max(achieved), max(allowed))
    end = points[-1].t
    per_column = end / len(columns)
    ceilings = [p.ceiling_rpm for p in points if p.ceiling_rpm]
    lines = [
        f"achieved RPM {_row(achieved, top)} peak {max(achieved):,.0f}",
        f"allowed RPM  {_row(allowed, top)} peak {max(allowed):,.0f}",
        f"429s         {_row(refused, max(refused))} total {sum(refused):,}",
        f"0-{end:.0f} s, {per_column:.3g} s per column"
        + (f"; learned ceiling {ceilings[-1]:,.0f} RPM" if ceilings else ""),
    ]
    return "\n".join(lines)
