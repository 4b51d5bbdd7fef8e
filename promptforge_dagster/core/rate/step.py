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
3 RPM takes 160 s). A step that began with pauses longer than a step lasts (a cut's settle
times, when refusals take long to come back) must then send as long as their excess, heard
of (:data:`BANKED`): a bucket banked its refill meanwhile.

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
BANKED = 1.0  # a step that paused longer than a step lasts sends, heard of, this many times the excess before it is
# proven: a bucket under the rate banked its refill over the pause and spent it on the step's first sends (with
# refusals 200 ms away, a 600 RPM lane cut to 1,380 RPM paused 1.2 s, was "proven" there, climbed, was refused and
# went back for 2 minutes: 13% refused). A pause as long as a step (a cut's and its look's settle times when
# refusals come back within 125 ms) is left to the step's own span: a window banks nothing (a 1-s window, 0.86 -> 0.81)
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
        self.idle_s = 0.0  # how long it paused to hear of a cut's sends (a bucket banked its refill meanwhile)
        self.resume_at = now  # ... and when the latest pause ended

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

    def paused(self, now: float, until: float) -> None:
        """The lane sends nothing from ``now`` to ``until`` to hear of what it sent (a cut's
        settle time, a look's): a bucket under the rate banks its refill meanwhile, and spends
        it on the step's first sends."""
        since = max(now, self.resume_at)  # (a pause within one already counted adds only what it adds)
        if until > since:
            self.idle_s += until - since
            self.resume_at = until

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
                and now - full_at >= self.settle and now - self.settle - self.resume_at >= self._banked_s())

    def _banked_s(self) -> float:
        """How long the step must have sent, heard of, since its latest pause (:data:`BANKED`)."""
        return max(0.0, self.idle_s - self.discovery.step_min_s) * BANKED
