"""A bounded time series of rate learning, for the rate plot: allowed and achieved rate,
429s, learned ceilings. Memory stays bounded on long jobs: past ``max_points`` samples,
neighbours are merged (resolution halves, the span is kept).

>>> class S: sent = 0; rate_limited = 0; succeeded = 0
>>> h = RateHistory(S(), lambda: {"l": {"allowed_rpm": 60.0, "learned_rpm_ceiling": None}}, start=0.0)
>>> S.succeeded = 10; h.sample(10.0); [round(p.achieved_rpm) for p in h.points]
[60]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class RatePoint:
    t: float  # seconds since the job started
    allowed_rpm: float
    achieved_rpm: float  # successful requests per minute over the last interval
    refused: int  # 429s in the last interval
    ceiling_rpm: float | None
    ceiling_tpm: float | None


class RateHistory:
    def __init__(self, stats: Any, snapshot: Callable[[], dict[str, dict[str, Any]]], *, start: float,
                 max_points: int = 2000, every_s: float = 1.0) -> None:
        self.stats, self._snapshot = stats, snapshot
        self.start, self.every_s, self.max_points = start, every_s, max_points
        self.points: list[RatePoint] = []
        self._last_t, self._last_ok, self._last_refused = start, stats.succeeded, stats.rate_limited

    def sample(self, now: float, *, force: bool = False) -> None:
        dt = now - self._last_t
        if dt <= 0 or (dt < self.every_s and not force):
            return
        lanes = self._snapshot().values()
        allowed = sum(s.get("allowed_rpm") or 0.0 for s in lanes)
        ceilings = [s.get("learned_rpm_ceiling") for s in lanes if s.get("learned_rpm_ceiling")]
        tpm = [s.get("learned_tpm_ceiling") for s in lanes if s.get("learned_tpm_ceiling")]
        ok, refused = self.stats.succeeded, self.stats.rate_limited
        self.points.append(RatePoint(now - self.start, allowed, (ok - self._last_ok) * 60.0 / dt,
                                     refused - self._last_refused, sum(ceilings) if ceilings else None,
                                     sum(tpm) if tpm else None))
        self._last_t, self._last_ok, self._last_refused = now, ok, refused
        if len(self.points) > self.max_points:
            self._halve()

    def _halve(self) -> None:
        merged = []
        for a, b in zip(self.points[0::2], self.points[1::2]):
            merged.append(RatePoint(b.t, (a.allowed_rpm + b.allowed_rpm) / 2, (a.achieved_rpm + b.achieved_rpm) / 2,
                                    a.refused + b.refused, b.ceiling_rpm, b.ceiling_tpm))
        if len(self.points) % 2:
            merged.append(self.points[-1])
        self.points = merged
        self.every_s *= 2
