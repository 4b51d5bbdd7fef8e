"""An asyncio event loop on virtual time: sleeps advance a counter instead of waiting.

Timing logic is tested with it without ever sleeping: when nothing is ready, the loop
jumps straight to the next timer.
"""

from __future__ import annotations

import asyncio


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._virtual = 0.0
        real_select = self._selector.select

        def select(timeout=None):
            events = real_select(0)
            if events or timeout is None:
                return events or real_select(timeout)
            self._virtual += max(0.0, timeout)
            return events

        self._selector.select = select

    def time(self) -> float:
        return self._virtual


def run_virtual(coro_fn):
    """Run ``coro_fn(loop)`` on a fresh virtual-time loop and return its result."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


async def inline(fn, *args):
    """Stand-in for asyncio.to_thread that keeps everything on virtual time."""
    return fn(*args)
