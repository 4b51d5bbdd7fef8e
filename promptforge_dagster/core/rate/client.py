"""The client is not the provider: is this lane held back by its own process?

A lane is *client-bound* when it keeps sending, yet its pacer has held nothing back for a
while (the allowance was never reached): event-loop lag, CPU, or a pipeline that cannot
keep up. Then the rate it managed is what the client can do, reported as such, and the
provider's learned ceiling is left alone (only refusals lower a rate).

>>> m = ClientMeter(now=0.0)
>>> for i in range(50):
...     m.sent(i * 0.1)
>>> m.achieved_rpm(5.0), m.client_bound_rpm(5.0, paused=False, server_bound=False)
(600.0, 600.0)
>>> m.blocked(4.9); m.client_bound_rpm(5.0, paused=False, server_bound=False) is None
True
"""

from __future__ import annotations

from collections import deque

METER_S = 5.0  # the span over which the achieved send rate is read
PACER_IDLE_S = 1.0  # sending, yet the pacer held nothing back for this long: something else is the limit


class ClientMeter:
    def __init__(self, now: float) -> None:
        self._sends: deque[float] = deque()  # send times over METER_S
        self._last_blocked = now

    def sent(self, now: float) -> None:
        self._sends.append(now)
        while self._sends and self._sends[0] < now - METER_S:
            self._sends.popleft()

    def blocked(self, now: float) -> None:
        """The pacer held a request back: the allowance, not the client, was the limit."""
        self._last_blocked = now

    def achieved_rpm(self, now: float) -> float:
        """Requests sent per minute over the last few seconds."""
        return sum(1 for t in self._sends if t >= now - METER_S) * 60.0 / METER_S

    def client_bound_rpm(self, now: float, *, paused: bool, server_bound: bool) -> float | None:
        """The rate the client managed, when it was the limit: sending, and the pacer idle
        (not ``paused`` by the provider, and no server's concurrency ``server_bound``)."""
        achieved = self.achieved_rpm(now)
        idle_pacer = now - self._last_blocked > PACER_IDLE_S and not paused
        return achieved if achieved > 0 and idle_pacer and not server_bound else None
