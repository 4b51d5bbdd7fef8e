"""The adaptive rate controller of one lane: the parts of ``core/rate/`` composed.

* an :class:`~promptforge_dagster.core.rate.axis.Axis` for requests per minute, and one for
  tokens per minute once anything says tokens are limited (a refusal that names them,
  OpenAI's header, a hint): each paces, measures and probes its own limit, the tokens axis
  in what its limit counts (:mod:`~promptforge_dagster.core.rate.token_units`);
* a refusal is attributed by evidence only (:mod:`~promptforge_dagster.core.rate.signals`):
  the limit the message or headers name; a refusal that names none counts against requests
  (pacing requests paces their tokens too), until the refused requests are clearly larger
  than the admitted ones: a request limit does not care about size, a token limit does;
* a stated limit (``x-ratelimit-limit-*``, ``anthropic-ratelimit-*``, "Limit N" in the
  message) is taken as the provider's word: paced under it, never probed past;
* ``retry-after`` pauses the lane briefly (the refused request itself waits all of it);
  ``remaining: 0`` with a reset pauses it until the reset; overload (503/529) backs off
  exponentially and lowers nothing;
* the in-flight bound follows Little's law (:mod:`~promptforge_dagster.core.rate.concurrency`),
  and a server that says its queue is full teaches it a concurrency ceiling.

Nothing here reads a clock: ``now`` is passed in. The client being slow lowers nothing:
only refusals lower a rate, and a step grows only when the pacer, not the client, held
sends back.

>>> c = AdaptiveController(RateConfig(window_s=5), now=0.0)
>>> c.acquire(0.0, est_tokens=100), c.snapshot()["phase"]
(0.0, 'discover')
"""

from __future__ import annotations

from collections import deque
from typing import Any

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.axis import Axis, Phase
from promptforge_dagster.core.rate.background import Background
from promptforge_dagster.core.rate.concurrency import InFlightLimit
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.signals import ADMISSION, CONCURRENCY, REQUESTS, TOKENS, RateSignal
from promptforge_dagster.core.rate.token_units import TokenUnits, stated_token_limits
from promptforge_dagster.core.rate_controller import RateSample

OVERLOAD_PAUSE_S = 0.5  # first pause after an overload answer; doubles per consecutive one
OVERLOAD_PAUSE_MAX_S = 30.0  # ... up to this: capacity problems pass in seconds to minutes
METER_S = 5.0  # the span over which the achieved send rate is read (client-bound check)
PACER_IDLE_S = 1.0  # sending, yet the pacer held nothing back for this long: something else is the limit
TOKEN_START_S = 10.0  # a tokens axis opened by a refusal starts at (half) the token rate sent over this span
SIZE_EVIDENCE_REFUSALS = 8  # silent refusals seen before their sizes are read as evidence
SIZE_EVIDENCE_RATIO = 1.25  # refused requests this much larger than admitted ones: tokens are what is limited
SIZE_EWMA = 0.05  # weight of one request in the running mean sizes (about the last 20-40 requests)
RETRY_PAUSE_MAX_S = 0.25  # a refusal's retry-after pauses the lane this long at most: longer is the refused
# request's own wait (pacing answers the rest); a longer lane pause would hide the refill being measured


def _mean(mean: float | None, value: float) -> float:
    return float(value) if mean is None else mean + SIZE_EWMA * (value - mean)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class AdaptiveController:
    """Paces one lane; :meth:`acquire` before each request, :meth:`record` after each answer."""

    def __init__(self, config: RateConfig | None = None, now: float = 0.0) -> None:
        self.cfg = cfg = config or RateConfig()
        self.requests = Axis(cfg, (cfg.rpm_hint or cfg.discovery.initial_rpm) / 60.0, now)
        self._born = now
        self.units = TokenUnits(cfg)  # what the tokens axis counts, and what was sent before it opened
        self.tokens: Axis | None = self._token_axis(cfg.tpm_hint / 60.0, now) if cfg.tpm_hint else None
        self.in_flight = InFlightLimit(cfg.concurrency, cfg.max_in_flight)
        self.background = Background()  # refusals that do not follow the rate (a shared pool's)
        self._paused_until = 0.0
        self._overloads = 0
        self._meter: deque[float] = deque()  # send times over METER_S
        self._last_blocked = now
        self._size_ok: float | None = None  # running mean tokens of admitted requests
        self._size_refused: float | None = None  # ... of refusals that named no limit
        self._silent = 0
        self.silent_limit = REQUESTS  # what refusals that name no limit are charged to
        self._now = now  # the latest time seen, for reports made without one
        self.sent = self.rate_limited = self.overloaded = 0

    # -- pacing ----------------------------------------------------------------
    def acquire(self, now: float, est_tokens: int, max_tokens: int = 0) -> float:
        self._now = max(self._now, now)
        axes = [(self.requests, 1.0)] + ([(self.tokens, self.units.of(est_tokens, max_tokens))] if self.tokens else [])
        paused_until = max([self._paused_until] + [axis.pause_until for axis, _ in axes])
        if now < paused_until:
            return paused_until - now
        waits = []
        for axis, units in axes:
            axis.tick(now)
            waits.append(axis.pacer.wait(now, units))
        wait = max(waits)
        if wait > 0.0:
            for (axis, _), w in zip(axes, waits):
                if w >= wait:
                    axis.blocked()
            self._last_blocked = now
            return wait
        for axis, units in axes:
            axis.sent(now, units)
        self.sent += 1
        self.background.sent(now, min(axis.per_s / units for axis, units in axes), self._under_ceiling())
        self._note_send(now, est_tokens, max_tokens)
        return 0.0

    def in_flight_limit(self, prompt_bytes: float = 0.0) -> int:
        """How many requests of this lane may be in flight now."""
        return self.in_flight.limit(self.requests.per_s, prompt_bytes)

    # -- learning --------------------------------------------------------------
    def record(self, sample: RateSample) -> None:
        self._now = max(self._now, sample.at)
        if sample.kind is OutcomeKind.FATAL:  # a bad key, no quota, a day's limit spent: nothing about the pace
            return
        signal = sample.signal or RateSignal()
        self._learn_stated_limits(signal, sample.at)
        if sample.kind is OutcomeKind.SUCCESS:
            self._overloads = 0
            self.in_flight.observe_latency(sample.latency)
            self.requests.admitted(sample.sent_at, sample.at, 1.0)
            self.background.answered(sample.sent_at, False, sample.at)
            self._size_ok = _mean(self._size_ok, sample.est_tokens)
            self.units.answered(sample.usage, sample.est_tokens - sample.max_tokens)
            if self.tokens is not None:
                self.tokens.admitted(sample.sent_at, sample.at, self.units.of(sample.est_tokens, sample.max_tokens))
        elif sample.kind is OutcomeKind.RATE_LIMITED:
            self.rate_limited += 1
            self._on_refused(sample, signal)
        elif sample.kind is OutcomeKind.OVERLOADED:
            self.overloaded += 1
            if signal.limit == CONCURRENCY:
                self.in_flight.refused_at(sample.in_flight)
            else:
                self._overloads += 1
                pause = min(OVERLOAD_PAUSE_MAX_S, OVERLOAD_PAUSE_S * 2 ** (self._overloads - 1))
                self._pause(sample.at, max(pause, signal.retry_after_s or 0.0), cap=OVERLOAD_PAUSE_MAX_S)

    def _on_refused(self, sample: RateSample, signal: RateSignal) -> None:
        if signal.limit is None and not self._a_limits(sample):
            return
        limit = signal.limit or self._silent_limit(sample)
        if limit == CONCURRENCY:
            self.in_flight.refused_at(sample.in_flight)
        elif limit == TOKENS:
            if self.tokens is None:  # counted as the refusal says its limit counts (else as OpenAI does)
                self.units.basis = signal.token_basis or ADMISSION
                self.tokens = self._token_axis(self._token_rate(sample.at) or 1.0, sample.at)
            units = self.units.of(sample.est_tokens, sample.max_tokens)
            self.tokens.refused(sample.sent_at, sample.at, units, signal.retry_after_s)
        else:
            self.requests.refused(sample.sent_at, sample.at, 1.0, signal.retry_after_s)
        if signal.retry_after_s:
            self._pause(sample.at, signal.retry_after_s, cap=RETRY_PAUSE_MAX_S)

    def _a_limits(self, sample: RateSample) -> bool:  # (a limit's, not the background's)
        """Whether a refusal that names no limit is a limit's; the background's (a shared
        pool's, whatever the rate) are counted as not admitted and teach nothing."""
        found = self.background.found
        if self.background.answered(sample.sent_at, True, sample.at):
            return True
        if not found:  # what the axes learned was the background's
            for axis in (self.requests, self.tokens):
                if axis is not None:
                    axis.release(sample.at)
        self.requests.estimator.lost(sample.sent_at, 1.0)
        if self.tokens is not None:
            self.tokens.estimator.lost(sample.sent_at, self.units.of(sample.est_tokens, sample.max_tokens))
        return False

    def _under_ceiling(self) -> bool:
        """Paced under a measured ceiling (where a limit refuses nothing), on every axis."""
        return all(axis.phase is Phase.STEADY for axis in (self.requests, self.tokens) if axis is not None)

    def _silent_limit(self, sample: RateSample) -> str:
        """Which limit a refusal that names none hit: requests, unless the sizes say tokens."""
        self._silent += 1
        self._size_refused = _mean(self._size_refused, sample.est_tokens)
        if (self.silent_limit == REQUESTS and self._silent >= SIZE_EVIDENCE_REFUSALS and self._size_ok
                and self._size_refused and self._size_refused > SIZE_EVIDENCE_RATIO * self._size_ok):
            self.silent_limit = TOKENS  # large requests are refused, small ones pass: a token limit
            self.requests.release(sample.at)
        return self.silent_limit

    def _learn_stated_limits(self, signal: RateSignal, now: float) -> None:
        """A stated limit is taken in its own basis: a tokens axis opens on OpenAI's header or
        on a refusal's message (Anthropic states its ITPM and OTPM on every answer, binding or
        not), and is capped by what is stated in the basis it counts."""
        h = signal.headers
        rpm = h.limit_requests or (signal.limit_value if signal.limit == REQUESTS else None)
        if rpm:
            self.requests.known_limit(float(rpm), now)
        tpm = stated_token_limits(signal)
        if self.tokens is None:
            opened_by = signal.token_basis if signal.limit == TOKENS and signal.limit_value else None
            basis = opened_by or (ADMISSION if h.limit_tokens else None)
            if basis is not None:
                self.units.basis = basis
                self.tokens = self._token_axis(tpm[basis] / 60.0, now)
        if self.tokens is not None and self.units.basis in tpm:
            self.tokens.known_limit(tpm[self.units.basis], now)
        for remaining, reset in ((h.remaining_requests, h.reset_requests_s), (h.remaining_tokens, h.reset_tokens_s)):
            if remaining == 0 and reset:  # the provider says the window is spent until reset
                self._pause(now, reset, cap=self.cfg.window_s)

    # -- helpers ---------------------------------------------------------------
    def _token_axis(self, start_per_s: float, now: float) -> Axis:
        """A tokens axis in the units' basis, opened on what the lane sent so far in it (its
        floor is what the account admitted)."""
        return Axis(self.cfg, start_per_s, now, min_per_s=1.0, max_per_s=self.cfg.max_rpm * 1000 / 60.0,
                    history=self.units.history(self.units.basis))

    def _pause(self, now: float, seconds: float, *, cap: float) -> None:
        self._paused_until = max(self._paused_until, now + min(seconds, cap))

    def _note_send(self, now: float, est_tokens: int, max_tokens: int) -> None:
        self._meter.append(now)
        while self._meter and self._meter[0] < now - METER_S:
            self._meter.popleft()
        if self.tokens is None:
            self.units.sent(now, est_tokens, max_tokens)

    def _token_rate(self, now: float) -> float | None:
        rate = self.units.rate(self.units.basis, now, min(TOKEN_START_S, now - self._born))
        return rate * self.cfg.discovery.backoff if rate else None

    def achieved_rpm(self, now: float) -> float:
        """Requests sent per minute over the last few seconds."""
        recent = [t for t in self._meter if t >= now - METER_S]
        return len(recent) * 60.0 / METER_S

    def client_bound_rpm(self, now: float) -> float | None:
        """The rate the client managed, when it, not the provider's allowance, was the limit:
        it kept sending, yet the pacer held nothing back (the allowance was never reached)."""
        achieved = self.achieved_rpm(now)
        idle_pacer = now - self._last_blocked > PACER_IDLE_S and now >= self._paused_until
        server_bound = self.in_flight.ceiling is not None  # a server's concurrency, not the client, holds it
        return achieved if self.sent and idle_pacer and achieved > 0 and not server_bound else None

    @property
    def decreases(self) -> int:
        return self.requests.decreases + (self.tokens.decreases if self.tokens else 0)

    @property
    def phase(self) -> Phase:
        return self.tokens.phase if self.tokens is not None and self.tokens.known is False and \
            self.tokens.phase is not Phase.STEADY else self.requests.phase

    # -- reporting, checkpoints, sharing ----------------------------------------
    def snapshot(self) -> dict[str, Any]:
        r, t = self.requests, self.tokens
        out = {
            "controller": "adaptive",
            "phase": self.phase.value,
            "allowed_rpm": round(r.per_s * 60.0, 2),
            "allowed_tpm": round(t.per_s * 60.0, 1) if t else None,
            "learned_rpm_ceiling": round(r.estimate * 60.0, 2) if r.estimate else None,
            "learned_tpm_ceiling": round(t.estimate * 60.0, 1) if t and t.estimate else None,
            "rpm_limit_source": ("stated" if r.known else "measured") if r.estimate else None,
            "tpm_limit_source": ("stated" if t.known else "measured") if t and t.estimate else None,
            "tpm_counts": self.units.basis if t else None,  # admission (prompt + max_tokens), input or output
            "in_flight_limit": self.in_flight_limit(),
            "latency_s": _round(self.in_flight.latency()),
            "concurrency_ceiling": round(self.in_flight.ceiling, 1) if self.in_flight.ceiling else None,
            "rate_limited": self.rate_limited,
            # refusals of a busy shared pool, retried and learned nothing from (a share of those answered)
            "background_refused_share": round(self.background.share, 4) if self.background.found else None,
            "overloaded": self.overloaded,
            "decreases": self.decreases,
            "sent": self.sent,
            "window_s": self.cfg.window_s,
            "client_bound_rpm": _round(self.client_bound_rpm(self._now)),
        }
        return out

    def export_state(self) -> dict[str, Any]:
        """What a warm restart (or another job on the lane) needs: the learned limits."""
        r, t = self.requests, self.tokens
        return {"rate": r.per_s, "ceiling_rpm": r.estimate * 60.0 if r.estimate else None,
                "stated_rpm": r.cap * 60.0 if r.cap else None,  # the account's: never scaled to a share
                "ceiling_tpm": t.estimate * 60.0 if t and t.estimate else None,
                "stated_tpm": t.cap * 60.0 if t and t.cap else None,
                "tpm_learned": bool(t and t.estimate), "tpm_counts": self.units.basis if t else None,
                "concurrency": self.in_flight.ceiling,
                "burst_s": r.burst.burst_s}

    @classmethod
    def from_state(cls, state: dict[str, Any], now: float, config: RateConfig | None = None) -> "AdaptiveController":
        """Start from what an earlier run learned: at its ceilings, not in discovery."""
        c = cls(config, now)

        def per_s(key: str) -> float | None:
            return float(state[key]) / 60.0 if state.get(key) else None

        if state.get("ceiling_rpm"):
            c.requests.restore(per_s("ceiling_rpm"), per_s("stated_rpm"), now)
        elif state.get("rate"):
            c.requests.restore(None, per_s("stated_rpm"), now, per_s=float(state["rate"]))
        if state.get("ceiling_tpm"):
            c.units.basis = state.get("tpm_counts") or ADMISSION
            c.tokens = c._token_axis(per_s("ceiling_tpm"), now)
            c.tokens.restore(per_s("ceiling_tpm"), per_s("stated_tpm"), now)
        if state.get("concurrency"):
            c.in_flight.ceiling = float(state["concurrency"])
        if state.get("burst_s"):
            c.requests.burst.burst_s = float(state["burst_s"])
        return c

    def rescale(self, factor: float, now: float) -> None:
        """This job's share of the lane changed (jobs joined or left)."""
        for axis in (self.requests, self.tokens):
            if axis is not None:
                axis.rescale(factor, now)
