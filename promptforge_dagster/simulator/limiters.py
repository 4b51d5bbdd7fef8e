"""How a provider counts against a per-minute limit: the three shapes real providers use.

* :class:`BucketLimiter`: a token bucket refilled continuously (Anthropic documents its
  limits this way: "continuously replenished"; OpenAI's behave alike), holding
  ``burst_s`` seconds of rate.
* :class:`SlidingWindowLimiter`: at most ``limit`` units in any ``window_s`` (60 s)
  span (a counter over a sliding window, as API gateways commonly keep).
* :class:`FixedWindowLimiter`: at most ``limit`` units per calendar window, reset at
  each window's start (Gemini's per-minute quotas, gateway counters; Azure OpenAI's RPM
  counted over 1- or 10-s intervals).

Each can also count what it refuses (``charge`` of a refused request): OpenAI documents
that "unsuccessful requests contribute to your per-minute limit", so a client that floods
digs a debt. ``refund`` gives back part of a charge (a provider that charged an estimate
and counts the real use when the answer is done). All take time as an argument.

>>> b = BucketLimiter(per_minute=60, burst_s=1.0, now=0.0)
>>> b.wait(0.0, 1), b.charge(0.0, 1), b.wait(0.0, 1)
(0.0, None, 1.0)
>>> f = FixedWindowLimiter(per_minute=2, window_s=60.0)
>>> f.charge(1.0, 1); f.charge(2.0, 1); f.wait(3.0, 1)
57.0
"""

from __future__ import annotations

import math
from collections import deque


class BucketLimiter:
    """Continuously refilled bucket; its level may go negative when refusals are charged."""

    def __init__(self, per_minute: float, burst_s: float, now: float) -> None:
        self.set_limit(per_minute, burst_s, now, initial=True)

    def set_limit(self, per_minute: float, burst_s: float, now: float, initial: bool = False) -> None:
        if not initial:
            self._refill(now)
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity if initial else min(self.level, self.capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, now: float, cost: float) -> float:
        self._refill(now)
        cost = min(cost, self.capacity)
        return 0.0 if self.level + 1e-9 >= cost else (cost - self.level) / self.rate

    def charge(self, now: float, cost: float) -> None:
        self._refill(now)
        self.level -= min(cost, self.capacity)

    def remaining(self, now: float) -> float:
        self._refill(now)
        return max(0.0, self.level)

    def refund(self, now: float, units: float) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + units)


class SlidingWindowLimiter:
    """At most ``limit`` units within any ``window_s`` seconds."""

    def __init__(self, per_minute: float, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.set_limit(per_minute)
        self._events: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def set_limit(self, per_minute: float, *_args) -> None:
        self.limit = per_minute * self.window_s / 60.0

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            self._used -= self._events.popleft()[1]

    def wait(self, now: float, cost: float) -> float:
        self._expire(now)
        cost = min(cost, self.limit)
        if self._used + cost <= self.limit + 1e-9:
            return 0.0
        excess, freed = self._used + cost - self.limit, 0.0
        for t, c in self._events:
            freed += c
            if freed + 1e-9 >= excess:
                return max(1e-3, t + self.window_s - now)
        return self.window_s

    def charge(self, now: float, cost: float) -> None:
        self._expire(now)
        self._events.append((now, min(cost, self.limit)))
        self._used += min(cost, self.limit)

    def remaining(self, now: float) -> float:
        self._expire(now)
        return max(0.0, self.limit - self._used)

    def refund(self, now: float, units: float) -> None:
        self._expire(now)
        self._events.append((now, -units))
        self._used -= units


class FixedWindowLimiter:
    """At most ``limit`` units per window; the count resets at each window's start. The
    windows begin ``phase_s`` into the account's clock: a real account's windows are not
    aligned with a job's first request.

    >>> f = FixedWindowLimiter(per_minute=60, window_s=10.0, phase_s=4.0)   # windows end at 6, 16, ...
    >>> [f.charge(0.0, 10), f.wait(1.0, 1), f.wait(6.0, 1)]
    [None, 5.0, 0.0]
    """

    def __init__(self, per_minute: float, window_s: float = 60.0, phase_s: float = 0.0) -> None:
        self.window_s = window_s
        self.phase_s = phase_s
        self.set_limit(per_minute)
        self._window = -1
        self._used = 0.0

    def set_limit(self, per_minute: float, *_args) -> None:
        self.limit = per_minute * self.window_s / 60.0

    def _roll(self, now: float) -> None:
        window = math.floor((now + self.phase_s) / self.window_s)
        if window != self._window:
            self._window, self._used = window, 0.0

    def wait(self, now: float, cost: float) -> float:
        self._roll(now)
        if self._used + min(cost, self.limit) <= self.limit + 1e-9:
            return 0.0
        return (self._window + 1) * self.window_s - self.phase_s - now

    def charge(self, now: float, cost: float) -> None:
        self._roll(now)
        self._used += min(cost, self.limit)

    def remaining(self, now: float) -> float:
        self._roll(now)
        return max(0.0, self.limit - self._used)

    def refund(self, now: float, units: float) -> None:
        self._roll(now)
        self._used = max(0.0, self._used - units)


def make_limiter(kind: str, per_minute: float, burst_s: float, now: float, window_s: float = 60.0,
                 phase_s: float = 0.0):
    """A limiter of ``kind`` ("bucket", "sliding" or "fixed") for a per-minute limit; a
    window counter allows ``per_minute x window_s / 60`` per ``window_s`` (Azure OpenAI
    evaluates its RPM over 1- or 10-s intervals: 600 RPM refuses an 11th request in a second)."""
    if kind == "bucket":
        return BucketLimiter(per_minute, burst_s, now)
    if kind == "sliding":
        return SlidingWindowLimiter(per_minute, window_s)
    if kind == "fixed":
        return FixedWindowLimiter(per_minute, window_s, phase_s)
    raise ValueError(f"unknown limiter {kind!r} (bucket, sliding or fixed)")
