"""One limit of one lane (requests per minute, or tokens per minute) as a state machine.

Phases and what moves between them, all in :data:`~promptforge_dagster.core.rate.phases.TRANSITIONS`:

* ``DISCOVER``: no ceiling known; the rate doubles each time a step is *proven* (enough
  sends at it, none refused, and the pacer was what held them back).
* ``BACKOFF``: refused while searching, or at the estimate: the rate was cut; it climbs
  back toward the refused rate while steps are proven, and is cut again when a request
  sent *after* the cut is refused (a refusal of one sent before it says nothing new); a
  rate admitted for seconds before its refusal is near the ceiling, so it is stepped back
  (``steady_cut``) rather than halved.
  The first cut goes no lower than the *floor*, what the account admitted over the last
  minute (a per-minute limit always admits that much again), and no higher than half the
  refused rate. Refused at the floor, the account is counting over a window (a bucket
  refills continuously, so it cannot stay dry below what it admits): the lane pauses,
  doubling, until the window frees. When it does, the window's span and quota are the
  ceiling (:mod:`~promptforge_dagster.core.rate.window`; Azure counts over 10 s), and a
  refusal at that estimate later is a spent window again: a pause, not a cut.
* ``STEADY``: paced at the measured ceiling less a margin; the
  :class:`~promptforge_dagster.core.rate.prober.Prober` says when a probe is due.
* ``PROBE``: above the estimate until refused or expired (back to steady: the estimator
  measures from the refusal, but a refused probe never lowers the estimate it started
  from). Each time it has sent more beyond the estimate than the
  account's burst could absorb (:mod:`~promptforge_dagster.core.rate.burst`), the estimate
  rises to what it proved and the probe reaches further.

Climbing back after cuts aims just under the lowest rate refused above the current one,
halfway each proven step, and a refused step returns to the rate it climbed from: the rates
measured at are then near the ceiling (a window counter loses what it does not admit).
Refusals that followed a flood (an account still dry, or in debt when refusals are charged)
are passed in a few steps once the rates under them are admitted.

``MEASURED`` (the estimator closed a span between two dry moments) leads to ``STEADY`` from
any phase; ``KNOWN`` (headers or the message stated the limit) does too: a stated limit is
the account's, a cap never paced past, while this lane's own share of it (other jobs, other
clients) is measured as any ceiling is. Time is always an argument.

>>> a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
>>> a.phase.value, a.per_s
('discover', 1.0)
>>> a.known_limit(600.0, now=0.0); a.phase.value, round(a.per_s * 60)
('steady', 594)
"""

from __future__ import annotations

import math

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.burst import BurstLearner
from promptforge_dagster.core.rate.estimator import HORIZON_S, CeilingEstimator, Estimate
from promptforge_dagster.core.rate.pacer import Pacer
from promptforge_dagster.core.rate.phases import TRANSITIONS, Event, Phase
from promptforge_dagster.core.rate.prober import Prober
from promptforge_dagster.core.rate.window import MINUTE_S, WindowLearner

SETTLE_START_S = 0.25  # how long a refusal may take to come back, before one has been seen
SETTLE_FACTOR = 2.0  # a step is proven once its sends are older than twice the slowest refusal
SPENT_WINDOW_RETRY_S = 1.0  # refused under a stated limit with a retry this long: the window is spent, wait it out
DRY_PAUSE_S = 0.5  # refused at the floor: pause this long, doubling per refusal (a window must pass)
DRY_PAUSE_MAX_S = 16.0  # ... up to this: a minute-long dry spell is probed ~7 times, each a refusal (and never
# past a minute after the oldest request it admitted, when a per-minute window has freed)
DRY_READ_BACK_S = 0.05  # the send history's grain: sends this close before the first refusal were as dry
APPROACH_GAIN = 0.1  # admitted at every rate refused since the last estimate: climb on gently (x per step)
OUTGROWN = 2.0  # climbing back with nothing measured, admitted at twice the highest rate refused: search on by
# doubling (a busy shared pool's refusal early in a cold start held a lane to +10% steps for a minute)
SUSTAINED_S = 4.0  # a rate admitted this long before a refusal is near the ceiling: an overshoot by half would
# have drained a 2-s burst in 4 s; so the cut is a step back (steady_cut), not a halving (a 60 RPM lane
# refused at 72 after 7 s was halved to 36 and measured its own rate there: 46)


def new_estimator(config: RateConfig, horizon_s: float = HORIZON_S) -> CeilingEstimator:
    """The send history and ceiling estimator of one axis, as ``config`` sets it."""
    s = config.steady
    return CeilingEstimator(min_sends=s.measure_min_requests, min_span_s=s.measure_min_s,
                            refusal_weight=s.counted_refusals_weight, horizon_s=horizon_s)


class Axis:
    """Rate, estimate and phase of one limit; a :class:`Pacer` holds sends to the rate."""

    def __init__(self, config: RateConfig, start_per_s: float, now: float, *, min_per_s: float | None = None,
                 max_per_s: float | None = None, history: CeilingEstimator | None = None) -> None:
        """``history``: what was sent before this axis paced (a tokens axis opened by a refusal
        measures its floor from the sends before it, not from nothing)."""
        self.cfg = config
        self.min_per_s = min_per_s if min_per_s is not None else config.min_rpm / 60.0
        self.max_per_s = max_per_s if max_per_s is not None else config.max_rpm / 60.0
        self.phase = Phase.DISCOVER
        self.known = False  # the provider stated the limit: ``cap``
        self.cap: float | None = None  # the stated limit is the account's: never paced past, shared with others
        self.per_s = self._clamp(start_per_s)
        self.estimate: float | None = None  # the measured (or stated) ceiling, per second
        self.refused_rates: list[float] = []  # rates refused since the last estimate
        self.born = now
        self.first_dry_at: float | None = None  # the first refusal of a cold start: where the burst is read
        self.burst = BurstLearner()
        self.prober = Prober(config.steady, config.window_s)
        self._proof: float | None = None
        self._dry_since: float | None = None  # the first refusal of this episode of refusals
        self.pacer = Pacer(self.per_s, now)
        self.estimator = history or new_estimator(config)
        self._settle = SETTLE_START_S
        self.decreases = 0
        self.pause_until = 0.0  # a dry spell: the controller sends nothing on this axis until then
        self._look = False  # after a cut: the next request goes alone, then a pause to hear of it
        self._dry_pauses = 0
        self.windowed_until = 0.0  # the account counts over a window: hold at the floor until then
        self.window, self._retry_after = WindowLearner(), None  # the span counted over; the provider's retry
        self._climbed_from = math.inf  # the admitted rate the latest step of a climb back started from
        self._passed: float | None = None  # the highest rate refused that a climb back has since passed
        self._gain = APPROACH_GAIN  # ... and the gain of its next step past them, doubling per step proven
        self._new_step(now)

    # -- what the controller tells it -----------------------------------------
    def blocked(self) -> None:
        """The pacer held a request back: the rate, not demand, is what limits sending."""
        self._blocked = True

    def sent(self, now: float, units: float) -> None:
        self.pacer.take(now, units)
        if self._look:  # the first request after a cut goes alone: wait to hear whether it was refused
            self._look = False
            self.pause_until = max(self.pause_until, now + self._settle)
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
            per_s, span = self.window.resumed(sent_at, self.estimator.net_between), self.window.span_s
            self.windowed_until = now + span
            if per_s is not None and (self.estimate is None or per_s < self.estimate):  # the window's quota
                self._measured(Estimate(per_s, span, per_s * span, 0.0), now)  # over its span: the ceiling

    def floor(self, now: float) -> float:
        """Admitted per second over the last window (sends less refusals, by send time, old
        enough for their refusals to be back), over a whole window however young the lane."""
        span = self.window.span_s
        return (self.estimator.net_between(now - span, now - self._settle) or 0.0) / span

    def recent_admitted(self, now: float) -> float:
        """Admitted per second just now: what a dry account is giving while it refuses. Once
        enough was sent since it went dry, the share of it admitted at the rate sent; before
        that, what it admitted over the last seconds."""
        end = now - self._settle
        if self._dry_since is not None:
            sent = self.estimator.sent_between(self._dry_since - DRY_READ_BACK_S, end)
            if sent >= self.cfg.discovery.step_requests:
                admitted = self.estimator.net_between(self._dry_since - DRY_READ_BACK_S, end) or 0.0
                return self.per_s * admitted / sent
        start = end - min(10.0, max(1.0, 10.0 / self.per_s))
        first = self.estimator.first_sent
        start = max(start, min(end - 1e-3, first if first is not None else start))  # not before the first send
        return (self.estimator.net_between(start, end) or 0.0) / max(end - start, 1e-9)

    def refused(self, sent_at: float, now: float, units: float, retry_after_s: float | None = None) -> None:
        self._settle = max(self._settle, SETTLE_FACTOR * (now - sent_at))
        # a refused probe says the ceiling is under its reach, not under the estimate it started from
        kept = self.estimate if self.phase is Phase.PROBE and sent_at >= (self.prober.started_at or now) else None
        self.window.refused(sent_at, first_of_episode=self._dry_since is None)
        if self._dry_since is None:
            self._dry_since = sent_at
        self._retry_after = retry_after_s
        self.pacer.repay(now, units)  # the account may have charged it: skip a slot to repay
        estimate = self.estimator.refused(sent_at, units)
        if self.first_dry_at is None and self.phase is Phase.DISCOVER:
            self.first_dry_at = sent_at
        start = self.prober.started_at
        if self.phase is Phase.PROBE and start is not None and sent_at > start and self.estimate:
            # admitted beyond the estimate until the probe ran dry: the burst was at least that
            excess = (self.estimator.net_between(start, sent_at) or 0.0) - self.estimate * (sent_at - start)
            self.burst.observe(excess, per_s=self.estimate)
        spent = ((self.known and retry_after_s is not None and retry_after_s >= SPENT_WINDOW_RETRY_S)
                 or (self.phase is Phase.STEADY and self.window.known))  # told to wait, or a window at the estimate
        if sent_at >= self._step_start and spent:  # the window is spent: wait it out
            self._dry(now, retry_after_s)
        elif sent_at >= self._step_start:  # under the stated limit and refused soon after: others share it
            self._fire(Event.REFUSED, now)
        if estimate is not None and now >= self.windowed_until:  # (within a minute of a dry window the
            self._measured(estimate, now, at_least=kept)  # account admits the echo of our own first burst)

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
            # (not within a window of a dry one: it frees as our first sends age out, a probe proves nothing)
            if self._blocked and now >= self.windowed_until and self.prober.due(now, self._step_start, self.per_s):
                self._fire(Event.PROBE_DUE, now)
            return
        if self.phase is Phase.PROBE:
            estimate = self.estimate or self.per_s
            self._proof = self.prober.best_proof(self.estimator.net_between, now - self._settle,
                                                 estimate=estimate, burst=self.burst.units(estimate))
            if self._proof is not None:
                self._fire(Event.PROVEN, now)
            elif self.prober.expired(now):
                self._fire(Event.EXPIRED, now)
            return
        if self._proven(now):
            recovered = (self.phase is Phase.BACKOFF and self.estimate is not None
                         and self.per_s >= self._target() * 0.999)
            outgrown = (self.phase is Phase.BACKOFF and self.estimate is None and self._passed is not None
                        and self.per_s >= OUTGROWN * self._passed)
            self._fire(Event.RECOVERED if recovered else Event.OUTGROWN if outgrown else Event.PROVEN, now)

    # -- the machine -----------------------------------------------------------
    def _fire(self, event: Event, now: float) -> None:
        step = TRANSITIONS.get((self.phase, event))
        if step is None:
            return
        if event is not Event.REFUSED:
            self._dry_since = None  # admitted, measured or told: the episode of refusals is over
        self.phase, action = step
        getattr(self, "_" + action)(now)

    def _grow(self, now: float) -> None:
        self._set(self.per_s * self.cfg.discovery.growth, now)

    def _cut(self, now: float) -> None:
        self.refused_rates.append(self.per_s)
        floor = self.floor(now) if self.estimate is None else 0.0
        if self.per_s <= floor * 1.001:  # dry below what it admits per minute: a window, not a bucket
            self._dry(now, self._retry_after)
            return
        self.decreases += 1
        # half the refused rate, or what the account admits while dry if that is less (a far
        # overshoot is undone in one step), never under the floor
        target = self.per_s * self.cfg.discovery.backoff
        if self.estimate is None:
            target = min(target, self.recent_admitted(now))
            if len(self.refused_rates) > 1 and now - self._step_start >= SUSTAINED_S:
                target = self.per_s * self.cfg.steady.steady_cut
            if len(self.refused_rates) > 1 and self._climbed_from < self.per_s:  # a step of the climb back
                target = max(target, self._climbed_from)  # was refused: back to where it was admitted
        self._climbed_from = math.inf  # (a cut ends the climb: the next one starts from the rate cut to)
        self._passed, self._gain = None, APPROACH_GAIN
        self._set(max(floor, target), now)
        # look before sending on: what was sent before the cut comes back refused meanwhile, and a dry
        # window costs one refusal per cut, not a wave at the new rate (a bucket refills meanwhile)
        if self.estimate is None:  # searching: the rate may be far above the ceiling
            self.pause_until = max(self.pause_until, now + self._settle)
            self._look = True  # then the first request alone: its refusal would be back within the settle time
        self.pacer.drain(now)  # resume one interval at a time, not with the pacer's saved-up burst

    def _step_back(self, now: float) -> None:
        self.refused_rates.append(self.per_s)
        self.decreases += 1
        self._set(self.per_s * self.cfg.steady.steady_cut, now)

    def _dry(self, now: float, retry_after_s: float | None) -> None:
        """Pause this axis until the account's window frees: as long as the provider said,
        else doubling from DRY_PAUSE_S, but no later than a window (a minute until one is
        learned) after the oldest request it admitted in the last one (a sliding window frees
        it then, a fixed one has reset). Not in the window after a dry spell: a sliding one
        then frees as our first sends age out, a few at a time, each costing a refusal."""
        self._dry_pauses += 1
        backoff = min(DRY_PAUSE_MAX_S, DRY_PAUSE_S * 2 ** (self._dry_pauses - 1))
        until = now + (min(MINUTE_S, retry_after_s) if retry_after_s else backoff)
        windowed = now < self.windowed_until  # the echo of a spent window: it frees as our own sends age out
        oldest = self.estimator.first_admitted(now - self.window.span_s, now) if not windowed else None
        if self._dry_pauses == 1 and not windowed:  # (the echo of a spent window is no new fill)
            self.window.went_dry(self.estimator.first_admitted, now=now, dry_at=self._dry_since or now)
        if oldest is not None and not retry_after_s:
            until = min(until, max(now, oldest + self.window.span_s) + DRY_READ_BACK_S)
        self.pause_until = until
        self.estimator.forget()
        self._new_step(now)

    def _approach(self, now: float) -> None:
        """Climb back: halfway to just under the estimate, else the lowest rate refused above
        this one, at most doubling (and, within a window of a dry one, to the floor)."""
        if now < self.windowed_until:
            self._set(max(self.per_s, self.floor(now) * (1.0 - self.cfg.steady.margin)), now)
            return
        under = 1.0 - self.cfg.steady.margin
        if self.estimate is not None:
            above = [self._target()]
        else:
            above = [r * under for r in self.refused_rates if r * under > self.per_s * 1.001]
        if above and self.per_s < min(above) * 0.999:  # halfway there (at least +10%), at most doubling
            self._climbed_from = self.per_s
            halfway = max((self.per_s + min(above)) / 2.0, self.per_s * (1.0 + APPROACH_GAIN))
            self._set(min(min(above), self.per_s * self.cfg.discovery.growth, halfway), now)
        else:  # admitted at every refused rate: a flood's echo, or the ceiling rose
            self._passed = max(self.refused_rates + [self._passed or 0.0]) or None
            self.refused_rates = []
            self._set(self.per_s * (1.0 + self._gain), now)
            self._gain = min(2.0 * self._gain, self.cfg.discovery.growth - 1.0)

    def _fall_back(self, now: float) -> None:  # a probe was refused: under the estimate again
        self.prober.ended(refused_at=self.window.last_refused)
        self._hold(now)

    def _hold(self, now: float) -> None:
        self.prober.ended()
        if self.estimate is not None:
            self._set(self._target(), now)
        else:
            self._new_step(now)

    def _probe(self, now: float) -> None:
        self._set(self.prober.reach(self.estimate or self.per_s), now)
        self.prober.start(now)

    def _raise(self, now: float) -> None:
        """The probe proved a higher ceiling: take what it proved and probe on, reaching
        further (the proof is over the whole probe, so it tightens as the probe goes on)."""
        self.estimate = min(max(self.estimate or 0.0, self._proof or 0.0), self.cap or math.inf)
        self.prober.proven(now)
        self.estimator.forget()
        self._set(self.prober.reach(self.estimate), now)

    def _measured(self, estimate: Estimate, now: float, at_least: float | None = None) -> None:
        """A span between two dry moments measured the ceiling (``at_least``: what a refused
        probe leaves standing; at a few requests a second one request more or less is 5%)."""
        per_s = max(estimate.per_s, at_least or 0.0)
        self.estimate = min(per_s, self.cap) if self.cap is not None else per_s
        self.refused_rates = []
        if self.burst.burst_s is None and self.first_dry_at is not None:
            self.burst.learn(self.estimator.net_between, per_s=estimate.per_s, dry_at=self.first_dry_at,
                             since=self.born)
        self._fire(Event.MEASURED, now)

    # -- helpers ---------------------------------------------------------------
    def _target(self) -> float:
        """Just under the estimate: by the margin of a measurement, or by the smaller one of a
        limit the provider stated (this lane's share of it is the whole of it)."""
        at_stated = self.cap is not None and self.estimate is not None and self.estimate >= self.cap
        margin = self.cfg.steady.stated_margin if at_stated else self.cfg.steady.margin
        return self._clamp((self.estimate or self.per_s) * (1.0 - margin))

    def _clamp(self, per_s: float) -> float:
        return min(self.max_per_s, self.cap if self.cap is not None else math.inf, max(self.min_per_s, per_s))

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
        full_at = self._step_full_at
        if self.phase is Phase.DISCOVER:  # nothing refused yet: a step is full after step_max_s, whether or
            # not a slow lane sent again since (its next send may be a second away; its sends are as old)
            full_at = min(full_at, self._step_start + self.cfg.discovery.step_max_s)
        return (self._blocked and now - self._step_start >= self.cfg.discovery.step_min_s
                and now - full_at >= self._settle)

    def release(self, now: float) -> None:
        """What this axis learned was another limit's doing: search again from its rate."""
        self.estimate, self.refused_rates, self.phase = None, [], Phase.DISCOVER
        self.pause_until = self.windowed_until = 0.0
        self._dry_pauses = 0
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
        self.refused_rates = [r * factor for r in self.refused_rates]
        self._set(self.per_s * factor, now)
