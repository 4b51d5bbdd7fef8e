"""The pacing interface between the pipeline and a rate-control algorithm.

The pipeline asks :meth:`RateController.acquire` before every request and reports every
outcome through :meth:`RateController.record`. The controller alone decides when the
next request may go. Time is always passed in.

>>> c = FixedRateController(rpm=60, burst=1, now=0.0)
>>> c.acquire(0.0, est_tokens=10), c.acquire(0.0, est_tokens=10)
(0.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.headers import RateSignals
from promptforge_dagster.core.rate.signals import RateSignal
from promptforge_dagster.core.rate.concurrency import InFlightLimit
from promptforge_dagster.core.rate.config import Concurrency
from promptforge_dagster.core.token_bucket import TokenBucket


@dataclass(frozen=True, slots=True)
class RateSample:
    """One finished request as the controller sees it.

    ``tokens`` is the request's actual token count (prompt + completion) when known,
    else its estimate; ``signals`` are the rate headers of the answer.

    >>> RateSample(sent_at=0.0, at=0.4, kind=OutcomeKind.SUCCESS, tokens=120).latency
    0.4
    """

    sent_at: float
    at: float
    kind: OutcomeKind
    tokens: int = 0
    est_tokens: int = 0
    signals: RateSignals = RateSignals()
    signal: RateSignal | None = None  # everything the answer said about limits (core/rate/signals.py)
    in_flight: int = 0  # requests of the lane in flight when this one was sent
    max_tokens: int = 0  # the answer's budget, part of ``est_tokens`` (the rest is the prompt's estimate)
    usage: tuple[int, int] | None = None  # (prompt, answer) tokens as the provider counted them, when it said

    @property
    def latency(self) -> float:
        return self.at - self.sent_at


class RateController(Protocol):
    """Decides when requests may go; learns from every outcome."""

    def acquire(self, now: float, est_tokens: int, max_tokens: int = 0) -> float:
        """0.0 if a request of ``est_tokens`` (of which ``max_tokens`` are the answer's budget)
        may go now (it is counted as sent), else the seconds to wait before asking again."""

    def record(self, sample: RateSample) -> None:
        """Learn from one finished request."""

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state for telemetry, progress and checkpoints."""


class FixedRateController:
    """A fixed requests-per-minute (and optional tokens-per-minute) token bucket.

    ``rpm=None`` means unlimited. Whatever the limits, a ``retry-after`` from the
    provider pauses all sending until it has passed.
    """

    def __init__(self, rpm: float | None, now: float, *, tpm: float | None = None, burst: float | None = None) -> None:
        if rpm is not None and rpm <= 0:
            raise ValueError("rpm must be positive or None")
        if tpm is not None and tpm <= 0:
            raise ValueError("tpm must be positive or None")
        self.rpm = rpm
        self.tpm = tpm
        cap = burst if burst is not None else max(1.0, (rpm or 60) / 60.0)
        self._requests = TokenBucket(rpm / 60.0, cap, now) if rpm else None
        self._tokens = TokenBucket(tpm / 60.0, tpm / 60.0 * max(1.0, cap * 60.0 / (rpm or 60)), now) if tpm else None
        self._paused_until = 0.0
        self.rate_limited = 0
        self.sent = 0
        self.in_flight = InFlightLimit(Concurrency())  # Little's law on the fixed rate and observed latency

    def acquire(self, now: float, est_tokens: int, max_tokens: int = 0) -> float:
        if now < self._paused_until:
            return self._paused_until - now
        waits = [0.0]
        if self._requests is not None:
            waits.append(self._requests.wait_time(now, 1.0))
        if self._tokens is not None:
            waits.append(self._tokens.wait_time(now, float(est_tokens)))
        wait = max(waits)
        if wait > 0.0:
            return wait
        if self._requests is not None:
            self._requests.take(now, 1.0)
        if self._tokens is not None:
            self._tokens.take(now, float(est_tokens))
        self.sent += 1
        return 0.0

    def in_flight_limit(self, prompt_bytes: float = 0.0) -> int:
        return self.in_flight.limit(self.rpm / 60.0 if self.rpm else None, prompt_bytes)

    def record(self, sample: RateSample) -> None:
        if sample.kind is OutcomeKind.SUCCESS:
            self.in_flight.observe_latency(sample.latency)
        if sample.kind is OutcomeKind.RATE_LIMITED:
            self.rate_limited += 1
        if sample.signals.retry_after_s and sample.kind in (OutcomeKind.RATE_LIMITED, OutcomeKind.OVERLOADED):
            self._paused_until = max(self._paused_until, sample.at + sample.signals.retry_after_s)

    def snapshot(self) -> dict[str, Any]:
        return {
            "controller": "fixed",
            "allowed_rpm": self.rpm,
            "allowed_tpm": self.tpm,
            "rate_limited": self.rate_limited,
            "sent": self.sent,
        }
