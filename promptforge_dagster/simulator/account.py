"""The simulated provider account: RPM and TPM token buckets, a limit schedule, headers.

Pure and clock-driven, so the HTTP server and fake-clock tests share one model of a
provider.

>>> acct = SimulatedAccount(AccountLimits(rpm=60, tpm=None, burst_s=1.0), now=0.0)
>>> acct.admit(0.0, tokens=10).ok, acct.admit(0.0, tokens=10).ok
(True, False)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from promptforge_dagster.core.rate.messages import TOKEN_BASES
from promptforge_dagster.simulator.limiters import make_limiter

# What a TPM limit counts (TOKEN_BASES), as each provider documents it:
# "admission": prompt + max_tokens, estimated when the request is received (OpenAI, Azure OpenAI);
# "input": prompt tokens only (Anthropic's ITPM; Gemini's TPM, metric ``input_token_count``);
# "output": max_tokens when admitted, the unused part returned when the answer is done
# (Anthropic's OTPM: "estimated based on max_tokens ... and adjusted at the end of the request").


@dataclass(frozen=True)
class AccountLimits:
    """Limits of the account. ``None`` is unlimited. ``burst_s`` is how many seconds of
    sustained rate a bucket holds (the short burst a provider tolerates).

    ``schedule`` changes the limits over time: ``[(t_seconds, rpm, tpm), ...]`` sorted by
    time, each entry applying from ``t`` on (``None`` keeps that limit as it was).

    The provider matrix: ``limiter`` is how the account counts ("bucket", "sliding"
    window, "fixed" window, each over ``window_s`` seconds, a minute unless set);
    ``refusals_count`` charges refused requests too (OpenAI: "unsuccessful requests contribute to your per-minute limit");
    ``concurrency`` is a self-hosted server's batch size (vLLM, TGI) and ``queue`` how
    many more may wait before it answers "queue full"; ``tokens_basis`` is what the TPM
    limit counts (:data:`TOKEN_BASES`); ``pool_refusals`` is the share of requests a shared pool
    refuses whatever the account's use (Vertex AI's dynamic shared quota when the region is
    busy: "Resource exhausted, please try again later"; they count against no limit).
    """

    rpm: float | None = 600.0
    tpm: float | None = None
    burst_s: float = 2.0
    schedule: tuple[tuple[float, float | None, float | None], ...] = ()
    limiter: str = "bucket"
    window_s: float = 60.0  # the span a window counter counts over (Azure: 1 or 10 s)
    window_phase_s: float = 0.0  # how far into a fixed window the account's clock starts (the job's first
    # request lands anywhere in a real account's window)
    refusals_count: bool = False
    concurrency: int | None = None
    queue: int = 0
    tokens_basis: str = "admission"
    pool_refusals: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens_basis not in TOKEN_BASES:
            raise ValueError(f"unknown tokens_basis {self.tokens_basis!r} (one of {', '.join(TOKEN_BASES)})")
        if not 0.0 <= self.pool_refusals < 1.0:
            raise ValueError(f"pool_refusals must be in [0, 1), not {self.pool_refusals}")

    def token_charge(self, prompt_tokens: int, max_tokens: int) -> int:
        """What the TPM limit counts when a request is admitted.

        >>> [AccountLimits(tokens_basis=b).token_charge(100, 50) for b in TOKEN_BASES]
        [150, 100, 50]
        """
        return {"admission": prompt_tokens + max_tokens, "input": prompt_tokens, "output": max_tokens}[
            self.tokens_basis]

    def token_refund(self, max_tokens: int, completion_tokens: int) -> int:
        """What the TPM limit gives back when an admitted answer is done: the ``max_tokens``
        it did not use, where output tokens are counted (Anthropic adjusts its estimate)."""
        return max(0, max_tokens - completion_tokens) if self.tokens_basis == "output" else 0

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
    limit: str | None = None  # "requests", "tokens", "concurrency", "pool" (a shared pool's) or "too_large" (the
    # request alone is over the TPM limit) when refused
    retry_after_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    limit_value: float | None = None  # the per-minute limit (or concurrency) that refused it
    used: float | None = None  # what the account had counted against it (too_large: what the request needs)


def _duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:.3f}s"


class SimulatedAccount:
    """Admits or refuses requests like a provider account (see :class:`AccountLimits`).

    ``admit`` counts the request against the limits (``tokens``: what the provider charges
    at admission, :meth:`AccountLimits.token_charge`); the caller ``release``-s each
    admitted request when its answer is done.
    """

    def __init__(self, limits: AccountLimits, now: float, seed: int = 0) -> None:
        self.limits = limits
        self._pool = random.Random(seed)  # which requests a busy shared pool refuses
        self.started = now
        self._rpm: float | None = None
        self._tpm: float | None = None
        self._req = None
        self._tok = None
        self.admitted = 0
        self.refused = 0
        self.in_system = 0
        self._apply(now)

    def _apply(self, now: float) -> None:
        rpm, tpm = self.limits.at(now - self.started)
        if rpm != self._rpm:
            self._rpm, self._req = rpm, self._relimit(self._req, rpm, now)
        if tpm != self._tpm:
            self._tpm, self._tok = tpm, self._relimit(self._tok, tpm, now)

    def _relimit(self, limiter, per_minute: float | None, now: float):
        """The limiter for a new per-minute limit, keeping what it has counted."""
        if per_minute is None:
            return None
        if limiter is None:
            return make_limiter(self.limits.limiter, per_minute, self.limits.burst_s, now - self.started,
                                self.limits.window_s, self.limits.window_phase_s)
        limiter.set_limit(per_minute, self.limits.burst_s, now - self.started)
        return limiter

    def current_limits(self, now: float) -> tuple[float | None, float | None]:
        self._apply(now)
        return self._rpm, self._tpm

    def admit(self, now: float, tokens: int) -> Admission:
        self._apply(now)
        t = now - self.started
        conc = self.limits.concurrency
        if self.limits.pool_refusals and self._pool.random() < self.limits.pool_refusals:
            self.refused += 1  # the shared pool is busy: refused before the account's limits are counted
            return Admission(False, "pool")
        if conc is not None and self.in_system >= conc + self.limits.queue:
            self.refused += 1
            return Admission(False, "concurrency", 0.0, {}, float(conc), float(self.in_system))
        if self._tpm and tokens > self._tpm:  # larger than the limit itself: no wait admits it
            self.refused += 1
            return Admission(False, "too_large", 0.0, {}, self._tpm, float(tokens))
        wait_r = self._req.wait(t, 1.0) if self._req else 0.0
        wait_t = self._tok.wait(t, float(tokens)) if self._tok else 0.0
        if wait_r > 0.0 or wait_t > 0.0:
            self.refused += 1
            limit = "requests" if wait_r >= wait_t else "tokens"
            limiter = self._req if limit == "requests" else self._tok
            value = self._rpm if limit == "requests" else self._tpm
            used = value - limiter.remaining(t) if value else None
            if self.limits.refusals_count:  # an unsuccessful request counts all the same
                self._charge(t, tokens)
            return Admission(False, limit, max(wait_r, wait_t), self._headers(t), value, used)
        self._charge(t, tokens)
        self.admitted += 1
        self.in_system += 1 if conc is not None else 0
        return Admission(True, None, 0.0, self._headers(t))

    def _charge(self, t: float, tokens: int) -> None:
        if self._req:
            self._req.charge(t, 1.0)
        if self._tok:
            self._tok.charge(t, float(tokens))

    def release(self, now: float | None = None, unused_tokens: int = 0) -> None:
        """An admitted request's answer is done: frees a concurrency slot, and gives back
        ``unused_tokens`` (:meth:`AccountLimits.token_refund`) to the TPM limit."""
        if self.limits.concurrency is not None:
            self.in_system = max(0, self.in_system - 1)
        if unused_tokens and self._tok is not None and now is not None:
            self._tok.refund(now - self.started, float(unused_tokens))

    def load(self) -> float:
        """How busy a concurrency-limited server is: requests in it per batch slot (0 without)."""
        return self.in_system / self.limits.concurrency if self.limits.concurrency else 0.0

    def _headers(self, t: float) -> dict[str, str]:
        h: dict[str, str] = {}
        for kind, limiter, value in (("requests", self._req, self._rpm), ("tokens", self._tok, self._tpm)):
            if limiter is not None and value:
                h[f"x-ratelimit-limit-{kind}"] = str(int(value))
                h[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(limiter.remaining(t))))
                h[f"x-ratelimit-reset-{kind}"] = _duration(limiter.wait(t, 1.0) if kind == "requests"
                                                           else limiter.wait(t, value))
        return h
