"""Requests in flight under a bound that moves, for the pipeline's event loop.

The bound itself comes from each lane's controller (``core/rate/concurrency.py``: Little's
law, learned concurrency ceilings, the byte budget, the user's cap); this module sums the
lanes' bounds under the user's cap and waits for room under the sum.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

IN_FLIGHT_BEFORE_LANES = 16  # the bound before any lane has said more (its first requests set it)
IN_FLIGHT_WITHOUT_LEARNING = 64  # the bound for controllers that learn no latency (fixed limits without a rate)
LIMIT_RECHECK_S = 0.05  # a sender waiting for a slot re-reads the bound this often (it moves as the lane learns)


def in_flight_bound(controllers: Iterable[Any], mean_prompt_bytes: float, cap: int | None) -> int:
    """The bound on requests in flight now: the sum of each lane's (``in_flight_limit``),
    within the user's ``cap``.

    >>> class Lane:
    ...     def in_flight_limit(self, prompt_bytes):
    ...         return 40
    >>> in_flight_bound([Lane(), Lane()], 100.0, None), in_flight_bound([Lane()], 100.0, 8), in_flight_bound([], 0, None)
    (80, 8, 16)
    """
    controllers = list(controllers)
    learned = [c.in_flight_limit(mean_prompt_bytes) for c in controllers if hasattr(c, "in_flight_limit")]
    bound = sum(learned) if learned else (IN_FLIGHT_WITHOUT_LEARNING if controllers else IN_FLIGHT_BEFORE_LANES)
    return max(1, min(bound, cap) if cap else bound)


class InFlightSlots:
    """Requests in flight, under a bound that moves: Little's law on the allowed rate and the
    observed latency, learned concurrency ceilings, the byte budget, the user's cap.

    >>> slots = InFlightSlots(lambda: 1)
    >>> asyncio.run(slots.acquire()); slots.used
    1
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.used >= self._limit():
            self._freed.clear()
            try:  # asyncio.timeout: Python 3.11's wait_for can swallow the run's own cancellation
                async with asyncio.timeout(LIMIT_RECHECK_S):
                    await self._freed.wait()
            except TimeoutError:
                pass
        self.used += 1

    def release(self) -> None:
        self.used -= 1
        self._freed.set()
