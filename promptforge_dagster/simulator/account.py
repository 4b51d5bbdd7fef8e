"""The simulated provider account: RPM and TPM token buckets, a limit schedule, headers.

Pure and clock-driven, so the HTTP server and fake-clock tests share one model of a
provider.

>>> acct = SimulatedAccount(AccountLimits(rpm=60, tpm=None, burst_s=1.0), now=0.0)
>>> acct.admit(0.0, tokens=10).ok, acct.admit(0.0, tokens=10).ok
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptforge_dagster.core.token_bucket import TokenBucket


@dataclass(frozen=True)
class AccountLimits:
    """Limits of the account. ``None`` is unlimited. ``burst_s`` is how many seconds of
    sustained rate the buckets hold (the short burst a provider tolerates).

    ``schedule`` changes the limits over time: ``[(t_seconds, rpm, tpm), ...]`` sorted by
    time, each entry applying from ``t`` on (``None`` keeps that limit as it was).
    """

    rpm: float | None = 600.0
    tpm: float | None = None
    burst_s: float = 2.0
    schedule: tuple[tuple[float, float | None, float | None], ...] = ()

    def at(self, t: float) -> tuple[float | None, float | None]:
        rpm, tpm = self.rpm, self.tpm
        for start, s_rpm, s_tpm in self.schedule:
            if t >= start:
                rpm = s_rpm if s_rpm is not None else rpm
                tpm = s_tpm if s_tpm is not None else tpm
        return rpm, tpm


def parse_schedule(text: str) -> tuple[tuple[float, float | None, float | None], ...]:
    """``"0:900,60:300,120:1200"`` (RPM) or ``"0:900/40000,60:300/"`` (RPM/TPM) to a schedule.

    >>> parse_schedule("0:900,60:300/5000")
    ((0.0, 900.0, None), (60.0, 300.0, 5000.0))
    """
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        t, _, limits = item.partition(":")
        rpm, _, tpm = limits.partition("/")
        out.append((float(t), float(rpm) if rpm else None, float(tpm) if tpm else None))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Admission:
    """Whether a request was admitted, which limit refused it, and the rate headers."""

    ok: bool
    limit: str | None = None  # "requests" or "tokens" when refused
    retry_after_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:.3f}s"


class SimulatedAccount:
    """Admits or refuses requests like a provider account with token-bucket limits."""

    def __init__(self, limits: AccountLimits, now: float) -> None:
        self.limits = limits
        self.started = now
        self._rpm: float | None = None
        self._tpm: float | None = None
        self._req: TokenBucket | None = None
        self._tok: TokenBucket | None = None
        self.admitted = 0
        self.refused = 0
        self._apply(now)

    def _apply(self, now: float) -> None:
        rpm, tpm = self.limits.at(now - self.started)
        if rpm != self._rpm:
            self._rpm, self._req = rpm, self._rebucket(self._req, rpm, now)
        if tpm != self._tpm:
            self._tpm, self._tok = tpm, self._rebucket(self._tok, tpm, now)

    def _rebucket(self, bucket: TokenBucket | None, per_minute: float | None, now: float) -> TokenBucket | None:
        """The bucket for a new per-minute limit, keeping its level across changes."""
        if per_minute is None:
            return None
        rate, capacity = per_minute / 60.0, max(1.0, per_minute / 60.0 * self.limits.burst_s)
        if bucket is None:
            return TokenBucket(rate, capacity, now)
        bucket.set_rate(now, rate, capacity)
        return bucket

    def current_limits(self, now: float) -> tuple[float | None, float | None]:
        self._apply(now)
        return self._rpm, self._tpm

    def admit(self, now: float, tokens: int) -> Admission:
        self._apply(now)
        wait_r = self._req.wait_time(now, 1.0) if self._req else 0.0
        wait_t = self._tok.wait_time(now, float(tokens)) if self._tok else 0.0
        if wait_r > 0.0 or wait_t > 0.0:
            self.refused += 1
            limit = "requests" if wait_r >= wait_t else "tokens"
            return Admission(False, limit, max(wait_r, wait_t), self._headers(now))
        if self._req:
            self._req.take(now, 1.0)
        if self._tok:
            self._tok.take(now, float(tokens))
        self.admitted += 1
        return Admission(True, None, 0.0, self._headers(now))

    def _headers(self, now: float) -> dict[str, str]:
        h: dict[str, str] = {}
        if self._req and self._rpm:
            h["x-ratelimit-limit-requests"] = str(int(self._rpm))
            h["x-ratelimit-remaining-requests"] = str(max(0, int(self._req.level(now))))
            h["x-ratelimit-reset-requests"] = _duration(max(0.0, 1.0 - self._req.level(now)) / self._req.rate_per_s)
        if self._tok and self._tpm:
            h["x-ratelimit-limit-tokens"] = str(int(self._tpm))
            h["x-ratelimit-remaining-tokens"] = str(max(0, int(self._tok.level(now))))
            h["x-ratelimit-reset-tokens"] = _duration(
                max(0.0, self._tok.capacity - self._tok.level(now)) / self._tok.rate_per_s
            )
        return h
