"""A wait that doubles per try up to a cap, whatever the number of tries.

``base * 2 ** n`` is too large for a float once ``n`` passes 1,023: an outage of a thousand
overloads in a row, hours of a dry spell, or ``--max-attempts 2000`` ended the job with an
``OverflowError``. The doublings stop counting long after any cap is reached.

>>> doubled(0.5, 3, cap=30.0)
4.0
>>> doubled(0.5, 5000, cap=30.0)
30.0
"""

from __future__ import annotations

MAX_DOUBLINGS = 64  # past any cap a wait here has (a millisecond doubled 64 times is 585 million years)


def doubled(base: float, times: int, *, cap: float) -> float:
    """``base`` doubled ``times`` times, no more than ``cap``."""
    return min(cap, base * 2.0 ** min(times, MAX_DOUBLINGS))
