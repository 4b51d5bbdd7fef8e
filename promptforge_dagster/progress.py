"""Progress for people: a live bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from promptforge_dagster.core.pipeline import JobStats
from promptforge_dagster.core.rate_lanes import RateLanes


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s`` or ``?``.

    >>> format_eta(3725), format_eta(185), format_eta(42), format_eta(None)
    ('1h02m', '3m05s', '42s', '?')
    """
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_line(stats: JobStats, now: float, width: int = 24) -> str:
    """One line of progress: done/total, RPM, 429s, ETA, skipped."""
    total = stats.total
    finished = stats.done + stats.skipped
    rpm = stats.rpm(now)
    elapsed = now - stats.started_at
    done_rate = stats.done / elapsed if elapsed > 0 else 0.0
    remaining = (total - finished) if total is not None else None
    eta = remaining / done_rate if remaining is not None and done_rate > 0 else None
    if total:
        filled = int(width * finished / total)
        bar = "#" * filled + "." * (width - filled)
        head = f"[{bar}] {finished}/{total} {100 * finished // total}%"
    else:
        head = f"{finished} done" if total is None else "0/0"
    cost = f" | ${stats.cost_usd:.4f}" if getattr(stats, "cost_usd", 0.0) else ""
    return (
        f"{head} | {rpm:.0f} rpm | 429s {stats.rate_limited} | failed {stats.failed} | "
        f"in flight {stats.in_flight} | skipped {stats.skipped} | ETA {format_eta(eta)}{cost}"
    )


class ProgressReporter:
    """Prints progress of a running job until cancelled."""

    def __init__(self, stats: JobStats, lanes: RateLanes, stream: TextIO, *, enabled: bool = True,
                 log_every_s: float = 5.0, clock=time.monotonic, sleep=asyncio.sleep) -> None:
        self.stats = stats
        self.lanes = lanes
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.log_every_s = log_every_s
        self._clock = clock
        self._sleep = sleep

    async def run(self) -> None:
        if not self.enabled:
            return
        interval = 0.25 if self.tty else self.log_every_s
        while True:
            await self._sleep(interval)
            self._print()

    def _print(self) -> None:
        line = progress_line(self.stats, self._clock())
        snaps = [c.snapshot() for _lane, c in self.lanes.items()]
        allowed = [s.get("allowed_rpm") for s in snaps if s.get("allowed_rpm")]
        client_bound = [s.get("client_bound_rpm") for s in snaps if s.get("client_bound_rpm")]
        if client_bound:  # the provider would allow more: say so, and do not blame it
            line += f" | client-bound at {sum(client_bound):.0f} rpm"
        elif allowed:
            line += f" | allowed {sum(allowed):.0f} rpm"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(f"progress: {line}\n")
        self.stream.flush()

    def final(self) -> None:
        if not self.enabled or self.stats.total is None:
            return
        self._print()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
