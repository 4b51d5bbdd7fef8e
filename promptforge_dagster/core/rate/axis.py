"""One limit of one lane (requests per minute, or tokens per minute) as a state machine.

Phases and what moves between them, all in :data:`TRANSITIONS`:

* ``DISCOVER``: no ceiling known; the rate doubles each time a step is *proven* (enough
  sends at it, none refused, and the pacer was what held them back).
* ``BACKOFF``: refused while searching, or at the estimate: the rate was cut; it climbs
  back toward the refused rate while steps are proven, and is cut again when a request
  sent *after* the cut is refused (a refusal of one sent before it says nothing new).
  The first cut goes no lower than the *floor*, what the account admitted over the last
  minute (a per-minute limit always admits that much again), and no higher than half the
  refused rate. Refused at the floor, the account is counting over a window (a bucket
  refills continuously, so it cannot stay dry below what it admits): the lane pauses,
  doubling, until the window frees, and then holds at the floor for a minute before
  climbing, so it does not chase the echo of its own first burst.
* ``STEADY``: paced at the measured ceiling less a margin; probes are due every two windows.
* ``PROBE``: above the estimate for a step; proven, the estimate rises (and the next probe
  reaches further); refused, back to steady.

``MEASURED`` (the estimator closed a span between two dry moments) leads to ``STEADY`` from
any phase; ``KNOWN`` (headers or the message stated the limit) does too: a stated limit is
the account's, a cap never paced past, while this lane's own share of it (other jobs, other
clients) is measured as any ceiling is. Time is always an argument.

>>> a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
>>> a.phase.value, a.per_s
('discover', 1.0)
>>> a.known_limit(600.0, now=0.0); a.phase.value, round(a.per_s * 60)
('steady', 582)
"""

from __future__ import annotations

import enum
import math

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.estimator import CeilingEstimator, Estimate
from promptforge_dagster.core.rate.pacer import Pacer

SETTLE_START_S = 0.25  # how long a refusal may take to come back, before one has been seen
SETTLE_FACTOR = 2.0  # a step is proven once its sends are older than twice the slowest refusal
SPENT_WINDOW_RETRY_S = 1.0  # refused under a stated limit with a retry this long: the window is spent, wait it out
MINUTE_S = 60.0  # the span per-minute limits are counted over: what was admitted in it is always safe again
DRY_PAUSE_S = 0.5  # refused at the floor: pause this long, doubling per refusal (a window must pass)
DRY_PAUSE_MAX_S = 8.0  # ... up to this: probes a minute-long dry spell about ten times


class Phase(str, enum.Enum):
    DISCOVER = "discover"
    BACKOFF = "backoff"
    STEADY = "steady"
    PROBE = "probe"


class Event(str, enum.Enum):
    PROVEN = "proven"  # a step's sends are admitted, and the pacer was what held them back
    RECOVERED = "recovered"  # proven, back at the target under a known estimate
    REFUSED = "refused"  # a request sent at the current rate was refused
    MEASURED = "measured"  # a span between two dry moments gave an estimate
    PROBE_DUE = "probe_due"  # steady for two windows, and the pacer binds
    KNOWN = "known"  # the provider stated the limit


# (phase, event) -> (next phase, action). Any pair not listed leaves the phase as it is.
TRANSITIONS: dict[tuple[Phase, Event], tuple[Phase, str]] = {
    (Phase.DISCOVER, Event.PROVEN): (Phase.DISCOVER, "grow"),
    (Phase.DISCOVER, Event.REFUSED): (Phase.BACKOFF, "cut"),
    (Phase.BACKOFF, Event.REFUSED): (Phase.BACKOFF, "cut"),
    (Phase.BACKOFF, Event.PROVEN): (Phase.BACKOFF, "approach"),
    (Phase.BACKOFF, Event.RECOVERED): (Phase.STEADY, "hold"),
    (Phase.STEADY, Event.REFUSED): (Phase.BACKOFF, "step_back"),
    (Phase.STEADY, Event.PROBE_DUE): (Phase.PROBE, "probe"),
    (Phase.PROBE, Event.PROVEN): (Phase.STEADY, "raise"),
    (Phase.PROBE, Event.REFUSED): (Phase.STEADY, "hold"),
    **{(p, Event.MEASURED): (Phase.STEADY, "hold") for p in Phase},
    **{(p, Event.KNOWN): (Phase.STEADY, "hold") for p in Phase},
}


class Axis:
    """Rate, estimate and phase of one limit; a :class:`Pacer` holds sends to the rate."""

    def __init__(self, config: RateConfig, start_per_s: float, now: float, *, min_per_s: float | None = None,
                 max_per_s: float | None = None) -> None:
        self.cfg = config
        self.min_per_s = min_per_s if min_per_s is not None else config.min_rpm / 60.0
        self.max_per_s = max_per_s if max_per_s is not None else config.max_rpm / 60.0
        self.phase = Phase.DISCOVER
        self.known = False  # the provider stated the limit: ``cap``
        self.cap: float | None = None  # the stated limit is the account's: never paced past, shared with others
        self.per_s = self._clamp(start_per_s)
        self.estimate: float | None = None  # the measured (or stated) ceiling, per second
        self.refused_at: float | None = None  # the lowest rate refused since the last estimate
        self.pacer = Pacer(self.per_s, now)
        s = config.steady
        self.estimator = CeilingEstimator(min_sends=s.measure_min_requests, min_span_s=s.measure_min_s,
                                          refusal_weight=s.counted_refusals_weight)
        self._gain = s.probe_gain
        self._settle = SETTLE_START_S
        self.decreases = 0
        self.pause_until = 0.0  # a dry spell: the controller sends nothing on this axis until then
        self._dry_pauses = 0
        self.windowed_until = 0.0  # the account counts over a window: hold at the floor until then
        self._new_step(now)

    # -- what the controller tells it -----------------------------------------
    def blocked(self) -> None:
        """The pacer held a request back: the rate, not demand, is what limits sending."""
        self._blocked = True

    def sent(self, now: float, units: float) -> None:
        self.pacer.take(now, units)
        self.estimator.sent(now, units)
        self._step_sends += 1
        d = self.cfg.discovery
        quick = self.phase is Phase.DISCOVER and now - self._step_start >= d.step_max_s  # nothing refused yet
        if self._step_full_at == math.inf and (self._step_sends >= d.step_requests or quick):
            self._step_full_at = now

    def admitted(self, sent_at: float, now: float, units: float) -> None:
        """An answer came back admitted: a dry spell is over."""
        if self._dry_pauses:
            self._dry_pauses = 0
            self.windowed_until = now + MINUTE_S

    def floor(self, now: float) -> float:
        """Admitted per second over the last minute (sends less refusals, by send time, old
        enough for their refusals to be back), over a whole minute however young the lane."""
        return (self.estimator.net_between(now - MINUTE_S, now - self._settle) or 0.0) / MINUTE_S

    def recent_admitted(self, now: float) -> float:
        """Admitted per second just now: what a dry account is giving while it refuses."""
        span = min(10.0, max(1.0, 10.0 / self.per_s))
        end = now - self._settle
        return (self.estimator.net_between(end - span, end) or 0.0) / span

    def refused(self, sent_at: float, now: float, units: float, retry_after_s: float | None = None) -> None:
        self._settle = max(self._settle, SETTLE_FACTOR * (now - sent_at))
        estimate = self.estimator.refused(sent_at, units)
        spent = self.known and retry_after_s is not None and retry_after_s >= SPENT_WINDOW_RETRY_S
        if sent_at >= self._step_start and spent:  # under the stated limit, told to wait: the window is spent
            self._dry(now, retry_after_s)
        elif sent_at >= self._step_start:  # under the stated limit and refused soon after: others share it
            self._fire(Event.REFUSED, now)
        if estimate is not None:
            self._measured(estimate, now)

    def known_limit(self, per_minute: float, now: float) -> None:
        """The provider stated this limit (headers or message): the account's, so a cap this
        lane never paces past; its own share is still measured (other jobs use the account)."""
        if self.known and self.cap == per_minute / 60.0:
            return
        self.cap, self.known = per_minute / 60.0, True
        if self.estimate is None or self.estimate > self.cap:
            self.estimate = self.cap
        self._fire(Event.KNOWN, now)

    def tick(self, now: float) -> None:
        """Check the proof of a step and whether a probe is due (call often; cheap)."""
        if self.phase is Phase.STEADY:
            if self.cap is not None and self.estimate is not None and self.estimate >= self.cap:
                return  # at the stated limit: nothing to probe for
            s = self.cfg.steady
            windows = s.probe_again_windows if self._gain > s.probe_gain else s.probe_every_windows
            if self._blocked and now - self._step_start >= windows * self.cfg.window_s:
                self._fire(Event.PROBE_DUE, now)
            return
        if self._proven(now):
            recovered = (self.phase is Phase.BACKOFF and self.estimate is not None
                         and self.per_s >= self._target() * 0.999)
            self._fire(Event.RECOVERED if recovered else Event.PROVEN, now)

    # -- the machine -----------------------------------------------------------
    def _fire(self, event: Event, now: float) -> None:
        step = TRANSITIONS.get((self.phase, event))
        if step is None:
            return
        self.phase, action = step
        getattr(self, "_" + action)(now)

    def _grow(self, now: float) -> None:
        self._set(self.per_s * self.cfg.discovery.growth, now)

    def _cut(self, now: float) -> None:
        self.refused_at = self.per_s if self.refused_at is None else min(self.refused_at, self.per_s)
        floor = self.floor(now) if self.estimate is None else 0.0
        if self.per_s <= floor * 1.001:  # dry below what it admits per minute: a window, not a bucket
            self._dry(now, None)
            return
        self.decreases += 1
        # half the refused rate, or what the account admits while dry if that is less (a far
        # overshoot is undone in one step), never under the floor
        target = self.per_s * self.cfg.discovery.backoff
        if self.estimate is None:
            target = min(target, self.recent_admitted(now))
        self._set(max(floor, target), now)

    def _step_back(self, now: float) -> None:
        self.refused_at = self.per_s
        self.decreases += 1
        self._set(self.per_s * self.cfg.steady.steady_cut, now)

    def _dry(self, now: float, retry_after_s: float | None) -> None:
        """Pause this axis until the account's window frees: as long as the provider said,
        else doubling from DRY_PAUSE_S."""
        self._dry_pauses += 1
        backoff = min(DRY_PAUSE_MAX_S, DRY_PAUSE_S * 2 ** (self._dry_pauses - 1))
        self.pause_until = now + (min(MINUTE_S, retry_after_s) if retry_after_s else backoff)
        self.estimator.forget()
        self._new_step(now)

    def _approach(self, now: float) -> None:
        """Climb back: doubling, but no further than just under the lowest refused rate
        (and, on an account that counts over a window, than the floor for a minute)."""
        if now < self.windowed_until:
            self._set(max(self.per_s, self.floor(now) * (1.0 - self.cfg.steady.margin)), now)
            return
        ceiling = self._target() if self.estimate is not None else None
        if ceiling is None and self.refused_at is not None:
            ceiling = self.refused_at * (1.0 - self.cfg.steady.margin)
        if ceiling is not None and self.per_s < ceiling * 0.999:
            self._set(min(ceiling, self.per_s * self.cfg.discovery.growth), now)
        else:  # at the old ceiling and admitted: it was a burst's echo, or the ceiling rose
            self.refused_at = None
            self._set(self.per_s * (1.0 + self._gain), now)

    def _hold(self, now: float) -> None:
        self._gain = self.cfg.steady.probe_gain
        if self.estimate is not None:
            self._set(self._target(), now)
        else:
            self._new_step(now)

    def _probe(self, now: float) -> None:
        self._set(self._target() * (1.0 + self._gain), now)

    def _raise(self, now: float) -> None:
        """The probe rate was admitted: the ceiling is at least that; reach further next time."""
        self.estimate = min(max(self.estimate or 0.0, self.per_s), self.cap or math.inf)
        self._gain = min(self.cfg.steady.probe_gain_max, self._gain * 2.0)
        # the ceiling rose above what was sent since the last refusal: that span measured our
        # own rate (the account overflowed its refill), not the ceiling; measure afresh
        self.estimator.forget()
        self._set(self._target(), now)

    def _measured(self, estimate: Estimate, now: float) -> None:
        self.estimate = min(estimate.per_s, self.cap) if self.cap is not None else estimate.per_s
        self.refused_at = None
        self._fire(Event.MEASURED, now)

    # -- helpers ---------------------------------------------------------------
    def _target(self) -> float:
        return self._clamp((self.estimate or self.per_s) * (1.0 - self.cfg.steady.margin))

    def _clamp(self, per_s: float) -> float:
        ceiling = self.max_per_s if self.cap is None else min(self.max_per_s, self.cap)
        return min(ceiling, max(self.min_per_s, per_s))

    def _set(self, per_s: float, now: float) -> None:
        self.per_s = self._clamp(per_s)
        self.pacer.set_rate(self.per_s, now)
        self._new_step(now)

    def _new_step(self, now: float) -> None:
        self._step_start = now
        self._step_sends = 0
        self._step_full_at = math.inf
        self._blocked = False

    def _proven(self, now: float) -> bool:
        d = self.cfg.discovery
        # a first probe holds for a window (a bucket's burst hides a too-high rate for a while);
        # once one was admitted, the ceiling is rising and later probes climb as fast as steps
        first_probe = self.phase is Phase.PROBE and self._gain <= self.cfg.steady.probe_gain
        least = self.cfg.window_s if first_probe else d.step_min_s
        return (self._blocked and now - self._step_start >= least
                and now - self._step_full_at >= self._settle)

    def release(self, now: float) -> None:
        """What this axis learned was another limit's doing: search again from its rate."""
        self.estimate, self.refused_at, self.phase = None, None, Phase.DISCOVER
        self.estimator.forget()
        self._new_step(now)

    def restore(self, estimate: float | None, cap: float | None, now: float, *, per_s: float | None = None) -> None:
        """A warm start: steady under an earlier estimate (and the stated cap, if any), or
        discovering from an earlier rate."""
        self.cap, self.known = cap, cap is not None
        if estimate is None:
            self._set(per_s or self.per_s, now)
            return
        self.estimate, self.phase = min(estimate, cap) if cap else estimate, Phase.STEADY
        self._set(self._target(), now)

    def rescale(self, factor: float, now: float) -> None:
        """This job's share of the account changed (shared lanes): scale what it learned."""
        if self.estimate is not None:
            self.estimate *= factor
        if self.refused_at is not None:
            self.refused_at *= factor
        self._set(self.per_s * factor, now)
