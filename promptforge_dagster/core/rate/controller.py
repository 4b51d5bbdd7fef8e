"""The adaptive rate controller of one lane: the parts of ``core/rate/`` composed.

* an :class:`~promptforge_dagster.core.rate.axis.Axis` for requests per minute, and one for
  tokens per minute once anything says tokens are limited (a refusal that names them,
  OpenAI's header, a hint): each paces, measures and probes its own limit, the tokens axis
  in what its limit counts (:mod:`~promptforge_dagster.core.rate.token_units`);
* a refusal is attributed by evidence only (:mod:`~promptforge_dagster.core.rate.signals`,
  routed in :mod:`~promptforge_dagster.core.rate.refusals`):
  the limit the message or headers name; a refusal that names none counts against requests
  (pacing requests paces their tokens too), until the refused requests are clearly larger
  than the admitted ones: a request limit does not care about size, a token limit does;
* a stated limit (``x-ratelimit-limit-*``, ``anthropic-ratelimit-*``, "Limit N" in the
  message) is taken as the provider's word (:mod:`~promptforge_dagster.core.rate.stated`):
  paced under it, never probed past;
* ``retry-after`` pauses the lane briefly (the refused request itself waits all of it);
  ``remaining: 0`` with a reset pauses it until the reset; overload (503/529) backs off
  exponentially and lowers nothing, as does a run of 429s that name the provider's capacity
  (Azure's peak load; one alone is waited out by its own request);
* the in-flight bound follows Little's law (:mod:`~promptforge_dagster.core.rate.concurrency`),
  and a server that says its queue is full teaches it a concurrency ceiling, as does one that
  queues without a word, its answers slowing as the lane sends more
  (:mod:`~promptforge_dagster.core.rate.queueing`).

Nothing here reads a clock: ``now`` is passed in. The client being slow lowers nothing:
only refusals lower a rate, and a step grows only when the pacer, not the client, held
sends back.

>>> c = AdaptiveController(RateConfig(window_s=5), now=0.0)
>>> c.acquire(0.0, est_tokens=100), c.snapshot()["phase"]
(0.0, 'discover')
"""

from __future__ import annotations

from typing import Any

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate import refusals, report, stated
from promptforge_dagster.core.rate.attribution import SilentLimit
from promptforge_dagster.core.rate.axis import Axis, Phase
from promptforge_dagster.core.rate.background import Background
from promptforge_dagster.core.rate.client import ClientMeter
from promptforge_dagster.core.rate.concurrency import InFlightLimit
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.headroom import Headroom
from promptforge_dagster.core.rate.queueing import QueueWatch
from promptforge_dagster.core.rate.messages import CONCURRENCY
from promptforge_dagster.core.rate.signals import RateSignal
from promptforge_dagster.core.rate.token_units import TokenUnits
from promptforge_dagster.core.rate_controller import RateSample

TOKEN_START_S = 10.0  # a tokens axis opened by a refusal starts at the token rate sent over this span


class AdaptiveController:
    """Paces one lane; :meth:`acquire` before each request, :meth:`record` after each answer."""

    def __init__(self, config: RateConfig | None = None, now: float = 0.0) -> None:
        self.cfg = cfg = config or RateConfig()
        self.requests = Axis(cfg, (cfg.rpm_hint or cfg.discovery.initial_rpm) / 60.0, now)
        self._born = now
        self.units = TokenUnits(cfg)  # what the tokens axis counts, and what was sent before it opened
        self.tokens: Axis | None = self.token_axis(cfg.tpm_hint / 60.0, now) if cfg.tpm_hint else None
        self.in_flight = InFlightLimit(cfg.concurrency, cfg.max_in_flight)
        self.queue = QueueWatch()  # a server that queues, not refuses, past its batch
        self.background = Background()  # refusals that do not follow the rate (a shared pool's)
        self.headroom = Headroom()  # ... or that came while the headers showed room
        self._paused_until = 0.0
        self.overloads_in_a_row = 0
        self.client = ClientMeter(now)  # whether the client, not the provider, holds the lane back
        self.silent = SilentLimit()  # what refusals that name no limit are charged to
        self.rpm_said: float | None = None  # the requests per minute a refusal's message stated
        self.latest = now  # the latest time seen, for reports made without one
        self.sent = self.rate_limited = self.overloaded = 0
        self.capacity_refused = 0  # 429s that named the provider's capacity (of rate_limited)
        self.names_limits = False  # a 429 named its limit (requests or tokens): see refusals.of_capacity

    # -- pacing ----------------------------------------------------------------
    def acquire(self, now: float, est_tokens: int, max_tokens: int = 0) -> float:
        self.latest = max(self.latest, now)
        axes = [(self.requests, 1.0)] + ([(self.tokens, self.units.of(est_tokens, max_tokens))] if self.tokens else [])
        paused_until = max([self._paused_until] + [axis.pause_until for axis, _ in axes])
        if now < paused_until:
            for axis, _ in axes:  # held by a pause (a gap in sending, measured as such)
                axis.estimator.held(now)
            return paused_until - now
        waits = []
        for axis, units in axes:
            axis.tick(now)
            waits.append(axis.pacer.wait(now, units))
        wait = max(waits)
        if wait > 0.0:
            for (axis, _), w in zip(axes, waits):
                axis.estimator.held(now)  # held to its rate (on any axis), not under it: its spans measure
                if w >= wait:
                    axis.blocked()
            self.client.blocked(now)
            return wait
        for axis, units in axes:
            axis.sent(now, units)
        self.sent += 1
        self.queue.sent(now)
        self.background.sent(now, min(axis.per_s / units for axis, units in axes), self._under_ceiling())
        self.client.sent(now)
        if self.tokens is None:  # what was sent in each token basis, for a tokens axis opened later
            self.units.sent(now, est_tokens, max_tokens)
        return 0.0

    def in_flight_limit(self, prompt_bytes: float = 0.0) -> int:
        """How many requests of this lane may be in flight now (what the answers showed the
        server holds bounds it until a rate limit refused it, then the limit paces it; never
        on a hosted API, whose limits refuse what it cannot serve)."""
        shown = self.queue.shown()
        if self.cfg.hosted or (self.rate_limited and not shown):
            shown = None
        return self.in_flight.limit(self.requests.per_s, prompt_bytes, shown=shown)

    # -- learning --------------------------------------------------------------
    def record(self, sample: RateSample) -> None:
        self.latest = max(self.latest, sample.at)
        self._watch_queue(sample)
        if sample.kind is OutcomeKind.FATAL:  # a bad key, no quota, a day's limit spent: nothing about the pace
            return
        signal = sample.signal or RateSignal()
        stated.learn(self, signal, sample.at, sample.sent_at)
        if sample.kind is OutcomeKind.SUCCESS:
            self.overloads_in_a_row = 0
            self.in_flight.observe_latency(sample.latency)
            self.requests.admitted(sample.sent_at, sample.at, 1.0)
            self.background.answered(sample.sent_at, False, sample.at)
            self.headroom.admitted(sample.sent_at, signal.headers)
            self.silent.admitted(sample.est_tokens)
            self.units.answered(sample.usage, sample.est_tokens - sample.max_tokens)
            if self.tokens is not None:
                self.tokens.admitted(sample.sent_at, sample.at, self.units.of(sample.est_tokens, sample.max_tokens))
        elif sample.kind is OutcomeKind.RATE_LIMITED:
            self.rate_limited += 1
            if refusals.of_capacity(self, signal):
                refusals.short_of_capacity(self, sample)
            else:
                refusals.on_refused(self, sample, signal)
        elif sample.kind is OutcomeKind.OVERLOADED:
            self.overloaded += 1
            if signal.limit == CONCURRENCY:
                self.in_flight.refused_at(sample.in_flight)
            else:
                refusals.overloaded(self, sample.at, signal)

    def _watch_queue(self, sample: RateSample) -> None:
        """A server that queues (:class:`QueueWatch`): answers and timeouts (a transient
        failure counts as slow as it took) teach the in-flight ceiling; refusals do not. Not
        on a hosted API: its answers slow by themselves, its limits refuse (over HTTP a 10,000
        RPM lane of 20-s answers was once held to 3,055 in flight, ~8,150 RPM, by a reading)."""
        answer = sample.kind in (OutcomeKind.SUCCESS, OutcomeKind.TRANSIENT)
        ceiling = self.queue.answered(sample.at, sample.at - sample.sent_at if answer else None,
                                      self.in_flight_limit(), self.in_flight.ceiling,
                                      served=sample.kind is OutcomeKind.SUCCESS)
        if ceiling is not None and not self.cfg.hosted:
            self.in_flight.ceiling = ceiling

    def _under_ceiling(self) -> bool:
        """Paced under a measured ceiling (where a limit refuses nothing), on every axis."""
        return all(axis.phase is Phase.STEADY for axis in (self.requests, self.tokens) if axis is not None)

    # -- helpers ---------------------------------------------------------------
    def token_axis(self, start_per_s: float, now: float) -> Axis:
        """A tokens axis in the units' basis, opened on what the lane sent so far in it (its
        floor is what the account admitted)."""
        return Axis(self.cfg, start_per_s, now, min_per_s=1.0, max_per_s=self.cfg.max_rpm * 1000 / 60.0,
                    history=self.units.history(self.units.basis))

    def pause(self, now: float, seconds: float, *, cap: float) -> None:
        """Send nothing on this lane for ``seconds`` (at most ``cap``)."""
        self._paused_until = max(self._paused_until, now + min(seconds, cap))

    def token_rate(self, now: float) -> float | None:
        return self.units.rate(self.units.basis, now, min(TOKEN_START_S, now - self._born)) or None

    def client_bound_rpm(self, now: float) -> float | None:
        """The rate the client managed, when it, not the provider's allowance, was the limit
        (:class:`ClientMeter`); a server's concurrency ceiling holding it is not the client."""
        return self.client.client_bound_rpm(now, paused=now < self._paused_until,
                                            server_bound=self.in_flight.ceiling is not None)

    @property
    def decreases(self) -> int:
        return self.requests.decreases + (self.tokens.decreases if self.tokens else 0)

    @property
    def phase(self) -> Phase:
        return self.tokens.phase if self.tokens is not None and self.tokens.known is False and \
            self.tokens.phase is not Phase.STEADY else self.requests.phase

    # -- reporting, checkpoints, sharing ----------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The lane as users see it (:func:`~promptforge_dagster.core.rate.report.snapshot`)."""
        return report.snapshot(self)

    def export_state(self) -> dict[str, Any]:
        """What a warm restart (or another job on the lane) needs: the learned limits."""
        return report.export_state(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], now: float, config: RateConfig | None = None) -> "AdaptiveController":
        """Start from what an earlier run learned: at its ceilings, not in discovery."""
        c = cls(config, now)
        report.restore(c, state, now)
        return c

    def shared_by(self, jobs: int) -> None:
        """How many jobs pace on this lane now (lane sharing). While others do, their load
        refuses what this lane's own rate does not explain, as a busy pool would: no pool is
        looked for (:attr:`Background.looking`)."""
        self.background.looking = jobs <= 1

    def rescale(self, factor: float, now: float) -> None:
        """This job's share of the lane changed (jobs joined or left)."""
        for axis in (self.requests, self.tokens):
            if axis is not None:
                axis.rescale(factor, now)
