"""A token bucket on an explicit clock: the building block of pacing and of the simulator.

>>> b = TokenBucket(rate_per_s=2.0, capacity=2.0, now=0.0)
>>> b.take(0.0), b.take(0.0), b.take(0.0)
(0.0, 0.0, 0.5)
>>> b.take(0.5)
0.0
"""

from __future__ import annotations


class TokenBucket:
    """Refills at ``rate_per_s`` up to ``capacity``; ``take`` spends or says how long to wait.

    A cost above the capacity is clamped to it, so one oversized request waits for a
    full bucket instead of never going.
    """

    def __init__(self, rate_per_s: float, capacity: float, now: float, *, full: bool = True) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate_per_s and capacity must be positive")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.tokens = capacity if full else 0.0
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
            self.updated = now

    def level(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self.tokens

    def wait_time(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (0.0 when they are now); spends nothing."""
        self._refill(now)
        cost = min(cost, self.capacity)
        return 0.0 if self.tokens + 1e-9 >= cost else (cost - self.tokens) / self.rate_per_s

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` and return 0.0, or spend nothing and return the wait in seconds."""
        wait = self.wait_time(now, cost)
        if wait == 0.0:
            self.tokens -= min(cost, self.capacity)
        return wait

    def set_rate(self, now: float, rate_per_s: float, capacity: float | None = None) -> None:
        """Change the refill rate (and capacity) from ``now`` on."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._refill(now)
        self.rate_per_s = rate_per_s
        if capacity is not None:
            self.capacity = capacity
            self.tokens = min(self.tokens, capacity)
