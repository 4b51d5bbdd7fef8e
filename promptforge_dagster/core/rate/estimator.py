"""The ceiling, measured between two moments the account was dry.

A refusal says the account had nothing left when that request was sent. Between two such
moments a token-bucket account admitted exactly what it refilled: ``ceiling x span``,
whatever its burst size and whatever the client sent. So the ceiling is what was sent
between two dry moments, less what was refused there, over the span. When refusals are
charged too (OpenAI: unsuccessful requests count), refused requests used the limit as
well; the estimate counts them by ``counted_refusals_weight``. The engine counts them as
free (0): the estimate is then what the account *admitted*, a lower bound either way, and
the pacer repays each refused request's slot (a charged one is paid for, a free one costs
one slot). The engine keeps refusals to a few per cent, so the readings differ by about
that much. Window counters (a
sliding or fixed minute) obey the same sum over spans of a minute or more; shorter spans
read them less exactly.

The sum holds only while the lane kept the account dry: a pause in sending, or a stretch in
which the lane sent under its rate (its pacer, told by :meth:`CeilingEstimator.held`, held
nothing back: the in-flight bound or the client was the limit), lets a bucket refill past its
capacity, and the span reads low. Such a span measures nothing.

Sends are kept as a cumulative count in small time buckets, so memory is bounded by the
horizon, not by the rate. Refusals arrive with their send time: the estimate is in send
time, never in answer time, so slow answers do not delay it.

>>> e = CeilingEstimator(min_sends=3, min_span_s=1.0)
>>> for t in range(11):
...     e.sent(float(t), 1.0)
>>> e.refused(0.0, 1.0) is None      # the first dry moment starts a span
True
>>> round(e.refused(10.0, 1.0).per_s, 2)  # 10 sends (one refused, half-counted) over 10 s
0.95
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

BUCKET_S = 0.05  # resolution of the send history: finer than any refusal's round trip
HORIZON_S = 600.0  # the longest span measured: ten minutes of history, a few thousand buckets
MAX_REFUSED_SHARE = 0.25  # a span mostly refused was a flood or a dry window, not a refill: no measurement
MAX_GAP_S = 0.5  # a pause in sending this long lets a bucket refill past its capacity: no measurement
# (so too a stretch this long in which the pacer held nothing back, once it says when it did: the lane sent under
# its rate, held by its in-flight bound or its client, and a bucket refilled past capacity meanwhile)
GAP_GRAIN_S = 0.1  # ... a lane's own settle pause is allowed, and this much more (its next send's interval)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A measured ceiling: ``per_s`` units per second over ``span_s`` seconds of ``sends``.

    >>> Estimate(5.0, 10.0, 50.0, 1.0).per_minute
    300.0
    """

    per_s: float
    span_s: float
    sends: float
    refused: float

    @property
    def per_minute(self) -> float:
        return self.per_s * 60.0


class SendHistory:
    """Cumulative units and requests sent, by send time, at ``BUCKET_S`` resolution over
    ``horizon_s`` seconds.

    >>> h = SendHistory()
    >>> h.add(0.0, 300.0); h.add(1.0, 500.0); h.add(2.0, 100.0)
    >>> h.before(1.5), h.requests_before(1.5)
    (800.0, 2)
    """

    def __init__(self, horizon_s: float = HORIZON_S) -> None:
        self.horizon_s = horizon_s
        self._marks: deque[tuple[float, float, int]] = deque()  # (bucket start, units before it, requests before it)
        self.total = 0.0
        self.requests = 0

    def add(self, at: float, units: float) -> None:
        start = math.floor(at / BUCKET_S) * BUCKET_S
        if not self._marks or self._marks[-1][0] < start:
            self._marks.append((start, self.total, self.requests))
            while self._marks and self._marks[0][0] < start - self.horizon_s:
                self._marks.popleft()
        self.total += units
        self.requests += 1

    def _after(self, at: float) -> int | None:
        """The index of the first bucket starting after ``at``; None when ``at`` is older
        than the history."""
        if not self._marks or at < self._marks[0][0]:
            return None
        lo, hi = 0, len(self._marks)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._marks[mid][0] <= at:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def before(self, at: float) -> float | None:
        """Units sent before ``at`` (to the bucket); None when ``at`` is older than the history."""
        i = self._after(at)
        if i is None:
            return None
        return self._marks[i][1] if i < len(self._marks) else self.total

    def requests_before(self, at: float) -> int | None:
        """Requests sent before ``at`` (to the bucket), whatever their units."""
        i = self._after(at)
        if i is None:
            return None
        return self._marks[i][2] if i < len(self._marks) else self.requests


class CeilingEstimator:
    """Feed it every send and every refusal (by send time); a refusal that closes a long
    enough span since the last dry moment returns an :class:`Estimate`. ``min_sends`` and
    the pause allowed between sends count requests, whatever the units measured (tokens)."""

    def __init__(self, *, min_sends: int = 12, min_span_s: float = 1.0, refusal_weight: float = 0.5,
                 horizon_s: float = HORIZON_S) -> None:
        self.min_sends = min_sends
        self.min_span_s = min_span_s
        self.refusal_weight = refusal_weight
        self._sends = SendHistory(horizon_s)
        self._refused = SendHistory(horizon_s)
        self._dry_at: float | None = None
        self._last_send: float | None = None
        self.first_sent: float | None = None  # when the history began
        self._gap = 0.0  # the longest pause in sending since the last dry moment
        self._held_at: float | None = None  # when the pacer last held a request back (None: never told)
        self._unheld = 0.0  # the longest stretch since the last dry moment in which it held nothing back
        self.last: Estimate | None = None

    def sent(self, at: float, units: float) -> None:
        self._sends.add(at, units)
        if self.first_sent is None:
            self.first_sent = at
        if self._last_send is not None:
            self._gap = max(self._gap, at - self._last_send)
        self._last_send = at

    def held(self, at: float) -> None:
        """The lane held a request back at ``at`` (its pacer, or a pause): it sent at its rate,
        not under it."""
        self._unheld, self._held_at = self._unheld_until(at), at

    def _unheld_until(self, at: float) -> float:
        """The longest stretch without a hold from the last dry moment to ``at`` (0: never told)."""
        if self._held_at is None:
            return 0.0
        since = self._held_at if self._dry_at is None else max(self._held_at, self._dry_at)
        return max(self._unheld, at - since)

    def refused(self, sent_at: float, units: float, settle_s: float = 0.0) -> Estimate | None:
        """``settle_s``: how long the lane pauses after a cut to hear of its sends (twice the
        slowest refusal's trip): a pause that long is its own, not one a bucket overflows in
        (with refusals 200 ms away no span in a search measured anything, and the lane climbed
        and was cut for minutes)."""
        self._refused.add(sent_at, units)
        if self._dry_at is None or sent_at <= self._dry_at:
            self._dry_at = sent_at if self._dry_at is None else self._dry_at
            return None
        start, end = self._sends.before(self._dry_at), self._sends.before(sent_at)
        refused_start, refused_end = self._refused.before(self._dry_at), self._refused.before(sent_at)
        span = sent_at - self._dry_at
        if start is None or refused_start is None:  # the last dry moment fell out of the history
            self._dry_at = sent_at
            return None
        sends, refused = end - start, (refused_end or 0.0) - refused_start
        requests = self.requests_between(self._dry_at, sent_at)
        if span < self.min_span_s or requests < self.min_sends:
            return None  # still the same dry spell: keep measuring from its start
        gap = max(self._gap, self._unheld_until(sent_at))
        self._dry_at, self._gap, self._unheld = sent_at, 0.0, 0.0
        if refused > MAX_REFUSED_SHARE * sends or gap > max(MAX_GAP_S, settle_s + GAP_GRAIN_S, 4.0 * span / requests):
            return None  # a flood, a dry window, or a pause: the account did not spend its refill on us
        used = sends - refused * (1.0 - self.refusal_weight)
        self.last = Estimate(max(0.0, used) / span, span, sends, refused)
        return self.last

    def lost(self, sent_at: float, units: float) -> None:
        """A request refused while the account was not dry (a shared pool's refusal): not
        admitted, but no dry moment either."""
        self._refused.add(sent_at, units)

    def net_between(self, t0: float, t1: float) -> float | None:
        """Units sent in ``(t0, t1]`` less those refused (by send time): what was admitted."""
        values = (self._sends.before(t0), self._sends.before(t1), self._refused.before(t0),
                  self._refused.before(t1))
        if values[0] is None and self._sends.total == 0:
            return 0.0
        sends0 = values[0] if values[0] is not None else 0.0
        refused0 = values[2] if values[2] is not None else 0.0
        return max(0.0, (values[1] or 0.0) - sends0 - ((values[3] or 0.0) - refused0))

    def first_admitted(self, t0: float, t1: float) -> float | None:
        """The send time (to the history's grain) of the first request sent after ``t0`` and
        admitted, before ``t1``; None if there was none.

        >>> e = CeilingEstimator()
        >>> e.sent(1.0, 1.0); e.refused(1.0, 1.0); e.sent(3.0, 1.0)
        >>> round(e.first_admitted(0.0, 10.0), 1), e.first_admitted(3.5, 10.0)
        (3.0, None)
        """
        if not (self.net_between(t0, t1) or 0.0) > 0.0:
            return None
        lo, hi = t0, t1  # admitted in (t0, hi], not in (t0, lo]
        while hi - lo > BUCKET_S:
            mid = (lo + hi) / 2.0
            if (self.net_between(t0, mid) or 0.0) > 0.0:
                hi = mid
            else:
                lo = mid
        return hi

    @property
    def units_per_request(self) -> float:
        """What a request was worth on average (1 on a requests axis; its tokens on a tokens axis)."""
        return self._sends.total / self._sends.requests if self._sends.requests else 1.0

    def requests_between(self, t0: float, t1: float) -> int:
        """Requests sent in ``(t0, t1]`` (by send time), whatever their units."""
        a, b = self._sends.requests_before(t0), self._sends.requests_before(t1)
        return max(0, (b or 0) - (a or 0))

    def sent_between(self, t0: float, t1: float) -> float:
        """Units sent in ``(t0, t1]`` (by send time), refused or not."""
        a, b = self._sends.before(t0), self._sends.before(t1)
        return max(0.0, (b or 0.0) - (a or 0.0))

    def keep(self, horizon_s: float) -> None:
        """Keep ``horizon_s`` seconds of history from now on (older marks go as sends come)."""
        self._sends.horizon_s = self._refused.horizon_s = horizon_s

    def forget(self) -> None:
        """Start over (the lane paused: the old dry moment cannot speak for the span)."""
        self._dry_at = None
        self._gap = 0.0
