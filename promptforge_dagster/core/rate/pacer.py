"""Pacing: a token bucket per limit, charged as the provider charges.

Requests are charged one each; tokens are charged what the provider counts at admission
(OpenAI and Azure: the prompt plus ``max_tokens``, whatever the answer's length). The
bucket holds little (``BURST_S`` of rate, at least one unit's cost, and ``LATE_S`` more), so sending is smooth:
providers that enforce a per-minute limit over 1- or 10-second slices (Azure, OpenAI's
"quantized" limits) never see a burst.

>>> p = Pacer(per_s=10.0, now=0.0)
>>> p.wait(0.0, 1.0), p.take(0.0, 1.0), p.wait(0.0, 1.0) > 0
(0.0, None, True)
>>> p.wait(0.1, 1.0)
0.0
"""

from __future__ import annotations

BURST_S = 0.03  # 30 ms of rate: smooth to any 1-s slice and small as floods go
LATE_S = 0.005  # and 5 ms more: a sleep wakes ~1 ms late on an event loop; at 20 requests/s a bucket of
# exactly one request lost that on every send (2.4% of the rate over real HTTP); now the next send catches it up


DEBT_MAX_S = 0.25  # after a cut, refused requests' debt holds the lane at most this long (see drain)


class Pacer:
    """A bucket refilled at ``per_s`` (None: no limit), holding ``BURST_S`` of rate (or one request) and ``LATE_S``."""

    def __init__(self, per_s: float | None, now: float) -> None:
        self.per_s = per_s
        self._updated = now
        self._largest = 1.0  # the largest cost seen: the bucket must hold one whole request
        self._level = self._capacity()  # the first request goes at once
        self._taken: tuple[float, float] | None = None  # the last charge (a send, or a refused one's slot
        # repaid): when, and the level it left

    def _capacity(self) -> float:
        return max(self._largest, (self.per_s or 0.0) * BURST_S) + (self.per_s or 0.0) * LATE_S

    def _refill(self, now: float) -> None:
        if self.per_s is not None and now > self._updated:
            self._level = min(self._capacity(), self._level + (now - self._updated) * self.per_s)
        self._updated = max(self._updated, now)

    def set_rate(self, per_s: float | None, now: float) -> None:
        """Change the rate from ``now`` on; what is in the bucket stays (within capacity), but
        no more than the new rate refilled since the last send: a lower rate spaces the next
        send from the last one by its own interval (a lane at 1 request/s told of a 5 RPM limit
        0.35 s after its first send went again 7.8 s later, not 12; the account refused it).

        >>> p = Pacer(per_s=1.0, now=0.0); p.take(0.0, 1.0); p.set_rate(5 / 60, 0.35)
        >>> round(p.wait(0.35, 1.0), 2)   # 12 s after the last send (less what the bucket keeps for a late wake)
        11.59
        """
        self._refill(now)
        if per_s is not None and self.per_s is not None and per_s < self.per_s and self._taken is not None:
            taken_at, left = self._taken
            self._level = min(self._level, left + (now - taken_at) * per_s)
        self.per_s = per_s
        self._level = min(self._level, self._capacity())

    def wait(self, now: float, cost: float) -> float:
        """Seconds until ``cost`` may be spent (0.0: now). Spends nothing."""
        if self.per_s is None:
            return 0.0
        self._largest = max(self._largest, cost)
        self._refill(now)
        return 0.0 if self._level + 1e-9 >= cost else (cost - self._level) / self.per_s

    def take(self, now: float, cost: float) -> None:
        """Spend ``cost`` (after a zero ``wait``)."""
        if self.per_s is not None:
            self._refill(now)
            self._level -= cost
            self._taken = (now, self._level)

    def drain(self, now: float) -> None:
        """Empty the bucket: after a cut or a pause, sending resumes one interval at a time,
        not with the burst the bucket saved up (at high rates that is dozens of requests), and
        the debt refused requests left (:meth:`repay`) holds it :data:`DEBT_MAX_S` at most: owed
        at the rate they went at and repaid at a rate cut to a sixth, it kept a lane silent past
        its 10-s window's end, so the lane never saw the window still dry.

        >>> p = Pacer(per_s=10.0, now=0.0); p.repay(0.0, 50.0); p.drain(0.0)
        >>> round(p.wait(0.0, 1.0), 2)   # 0.25 s of debt and one interval, not five seconds
        0.35
        """
        self._refill(now)
        self._level = max(min(self._level, 0.0), -(self.per_s or 0.0) * DEBT_MAX_S)

    def repay(self, now: float, cost: float) -> None:
        """Charge ``cost`` again, below empty if need be: a refused request may have been
        counted by the account (OpenAI's rule), so its slot is skipped to repay it.

        >>> p = Pacer(per_s=10.0, now=0.0); p.drain(0.0); p.repay(0.0, 1.0)
        >>> round(p.wait(0.0, 1.0), 2)   # one slot to repay, one to send
        0.2
        """
        self.take(now, cost)
