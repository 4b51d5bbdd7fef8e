"""The burst learner: how much a rested account admits beyond its refill.

A token bucket holds a burst: after a pause, an account admits its capacity at once and its
ceiling after. Knowing that capacity matters to the prober: a probe above the ceiling is
admitted until the burst is spent, so a probe only proves a higher ceiling once it has
sent more than any burst could hold.

The burst is read at the first dry moment of a cold start (the account was rested when the
lane began): the most the account admitted over any span ending there, beyond what the
ceiling refilled in that span. It is kept in *seconds of the ceiling*, so it follows the
ceiling when the account's limit changes (a provider's capacity is a multiple of its rate).
Until it is read, :data:`DEFAULT_BURST_S` stands in. A probe refused after admitting more
than the burst allows shows a larger one (:meth:`BurstLearner.observe`). A window counter (a sliding or fixed
minute) shows as a burst of about a minute: it admits a whole minute's quota at once.

>>> b = BurstLearner()
>>> b.units(per_s=10.0)                # not read yet: the default, 2 s of the ceiling
20.0
>>> admitted = lambda t0, t1: 10.0 * (t1 - t0) + (30.0 if t0 < 1.0 else 0.0)
>>> b.learn(admitted, per_s=10.0, dry_at=5.0, since=0.0); round(b.burst_s, 1)
3.0
>>> b.units(per_s=20.0)
60.0
"""

from __future__ import annotations

from typing import Callable

DEFAULT_BURST_S = 2.0  # before one is read: a couple of seconds, as the simulator's and most gateways' buckets
MIN_BURST_S = 0.5  # read smaller (a smooth cold start), still this much: proofs must not rest on noise
MAX_BURST_S = 60.0  # a per-minute window admits at most a minute's quota at once
SCAN_STEP_S = 0.25  # the grain of the spans compared: coarser than the send history's, finer than a probe
SCAN_HORIZON_S = 120.0  # how far back from the dry moment a span may start


class BurstLearner:
    """Read once from a cold start's first dry moment; ``units`` at a given ceiling."""

    def __init__(self) -> None:
        self.burst_s: float | None = None

    def learn(self, admitted: Callable[[float, float], float | None], *, per_s: float, dry_at: float,
              since: float) -> None:
        """``admitted(t0, t1)``: what the account admitted of what was sent in (t0, t1]."""
        if per_s <= 0.0:
            return
        best, t0 = 0.0, dry_at - SCAN_STEP_S
        while t0 >= max(since, dry_at - SCAN_HORIZON_S) - 1e-9:
            best = max(best, (admitted(t0, dry_at) or 0.0) - per_s * (dry_at - t0))
            t0 -= SCAN_STEP_S
        self.burst_s = min(MAX_BURST_S, max(MIN_BURST_S, best / per_s))

    def observe(self, excess: float, *, per_s: float) -> None:
        """An account admitted ``excess`` units beyond ``per_s`` x span before it went dry:
        its burst is at least that.

        >>> b = BurstLearner(); b.observe(50.0, per_s=10.0); b.burst_s
        5.0
        """
        if per_s > 0.0 and excess / per_s > (self.burst_s or 0.0):
            self.burst_s = min(MAX_BURST_S, max(MIN_BURST_S, excess / per_s))

    def units(self, per_s: float) -> float:
        return (DEFAULT_BURST_S if self.burst_s is None else self.burst_s) * per_s
