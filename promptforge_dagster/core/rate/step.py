"""One step of a search: a rate held until it is proven.

A step is *proven* when it sent enough at its rate with nothing refused (a refusal starts a
new step; one that sent nothing, paused throughout, proves nothing), the pacer, not the
client, held sends back (else the rate was never tried), and its sends are old enough for a
refusal of them to be back: twice the slowest refusal heard (the *settle* time),
:data:`SETTLE_START_S` before any. It must also have sent :data:`USED` of its rate: a
client that cannot keep up (an event loop short of CPU) meets the pacer in bursts, yet never
sent at the rate it would double (searching) or climb past (climbing back). Searching before
any refusal, a step is full after ``step_max_s`` whatever it sent: a slow lane's next send
may be a second away, and the sends it made are as old. So too, after ``full_after_s``, a
lane climbing back from far under its ceiling (the axis says when: a step of 8 requests at
3 RPM takes 160 s).

>>> from promptforge_dagster.core.rate.config import Discovery
>>> s = Step(Discovery(step_requests=2), now=0.0)
>>> s.sent(0.0, searching=False); s.sent(0.1, searching=False); s.blocked = True
>>> s.proven(0.36, searching=False, per_s=8.0), s.proven(0.5, searching=False, per_s=8.0)  # full, settled, 0.5 s
(False, True)
>>> s.heard(sent_at=1.0, now=1.2); round(s.settle, 2)   # a refusal took 0.2 s: wait twice that
0.4
"""

from __future__ import annotations

import math

from promptforge_dagster.core.rate.config import Discovery

SETTLE_START_S = 0.25  # how long a refusal may take to come back, before one has been seen
SETTLE_FACTOR = 2.0  # a step is proven once its sends are older than twice the slowest refusal
USED = 0.5  # a step sent at least this share of its rate: one that sent less never tried it (over HTTP a client
# doing 250/s kept doubling past 120,000 RPM: its bursts met the pacer; one doing ~150/s climbed back in BACKOFF
# to 92,533 RPM with nothing measured, an allowance a client that speeds up would then flood at)


class Step:
    def __init__(self, discovery: Discovery, now: float) -> None:
        self.discovery = discovery
        self.settle = SETTLE_START_S  # how old a send must be for its refusal to be back
        self.restart(now)

    def restart(self, now: float) -> None:
        """A new rate (or a refusal, a pause): the proof starts again."""
        self.start = now
        self.sends = 0
        self.first_at: float | None = None  # its first send (a pause, a retry's wait, may come before it)
        self.units = 0.0  # what the sends were worth on this axis (requests, or tokens)
        self.full_at = math.inf  # when it sent enough to prove its rate
        self.blocked = False  # the pacer held a request back during it: the rate, not demand, limits

    def sent(self, now: float, *, searching: bool, units: float = 1.0, full_after_s: float | None = None) -> None:
        """One request went at this step's rate (``searching``: timed, full after ``full_after_s``,
        by default ``step_max_s``, whatever it sent)."""
        self.sends += 1
        self.units += units
        if self.first_at is None:
            self.first_at = now
        d = self.discovery
        quick = searching and now - self.start >= self._timed(full_after_s)
        if self.full_at == math.inf and (self.sends >= d.step_requests or quick):
            self.full_at = now

    def _timed(self, full_after_s: float | None) -> float:
        """How long a timed step lasts before it is full whatever it sent."""
        return full_after_s or self.discovery.step_max_s

    def heard(self, sent_at: float, now: float) -> None:
        """A refusal of a request sent at ``sent_at`` came back at ``now``."""
        self.settle = max(self.settle, SETTLE_FACTOR * (now - sent_at))

    def proven(self, now: float, *, searching: bool, per_s: float, full_after_s: float | None = None) -> bool:
        """``per_s``: the step's rate, which it must have used (:data:`USED`)."""
        full_at = self.full_at
        if searching:
            full_at = min(full_at, self.start + self._timed(full_after_s))
        if self.first_at is None or self.units < USED * per_s * max(now - self.first_at, self.discovery.step_min_s):
            return False  # (used since its first send: a step that began with a pause sent nothing in it)
        return (self.blocked and self.sends > 0 and now - self.start >= self.discovery.step_min_s
                and now - full_at >= self.settle)
