"""The state of one limit of one lane, and the actions its transition table names.

:mod:`~promptforge_dagster.core.rate.phases` holds the table: ``(phase, event) -> (next phase,
action)``. :class:`AxisMachine` holds what the table moves (the phase, the rate, the estimate and
the parts that keep them) and, as one method each, the actions it names: ``"cut"`` is
:meth:`AxisMachine._cut`; :meth:`AxisMachine.fire` moves by the table. Which event a
provider's answer is, is told in :class:`~promptforge_dagster.core.rate.axis.Axis`: this
machine with its inputs.

>>> m = AxisMachine(RateConfig(window_s=5), start_per_s=2.0, now=0.0)
>>> m.fire(Event.PROVEN, 0.0); m.fire(Event.PROVEN, 0.5); m.phase.value, m.per_s  # each proven step doubles
('discover', 8.0)
>>> m.fire(Event.PROBE_DUE, 1.0); m.phase.value, m.per_s  # a pair not in the table: nothing moves
('discover', 8.0)
"""

from __future__ import annotations

import math

from promptforge_dagster.core.rate.burst import BurstLearner
from promptforge_dagster.core.rate.climb import SUSTAINED_REQUESTS, SUSTAINED_S, Climb
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.dry import DrySpell
from promptforge_dagster.core.rate.estimator import HORIZON_S, CeilingEstimator, Estimate
from promptforge_dagster.core.rate.pacer import Pacer
from promptforge_dagster.core.rate.phases import TRANSITIONS, Event, Phase
from promptforge_dagster.core.rate.prober import Prober
from promptforge_dagster.core.rate.spent import Look, spent_at_floor
from promptforge_dagster.core.rate.step import Step
from promptforge_dagster.core.rate.window import WindowLearner


DEEP_SHARE = 0.25  # cut under this share of a measured ceiling (a window spent, a debt: each refusal cut on), the
# climb back is timed as a search's: a step of 8 requests at 3 RPM takes 160 s (a fixed minute spent at 4x its rate
# cut a 15,000 RPM lane to 3 RPM in 20 s, and nothing was admitted for the next 100 s)
DEEP_STEP_S = 5.0  # ... a step full after this long, or its requests: a small account shows a refusal per step
# (a 62 RPM bucket read at 223 climbed back by 0.5-s steps, each over its ceiling: 18% refused, not 12%)


def new_estimator(config: RateConfig, horizon_s: float = HORIZON_S) -> CeilingEstimator:
    """The send history and ceiling estimator of one axis, as ``config`` sets it."""
    s = config.steady
    return CeilingEstimator(min_sends=s.measure_min_requests, min_span_s=s.measure_min_s,
                            refusal_weight=s.counted_refusals_weight, horizon_s=horizon_s)


class AxisMachine:
    """Rate, estimate and phase of one limit, and the actions that move them."""

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
        self._estimated_at = now  # ... since when
        self.climb = Climb()  # the rates refused since the last estimate, and the climb back toward them
        self.born = now
        self.first_dry_at: float | None = None  # the first refusal of a cold start: where the burst is read
        self.burst = BurstLearner()
        self.prober = Prober(config.steady, config.window_s)
        self._proof: float | None = None
        self.pacer = Pacer(self.per_s, now)
        self.estimator = history or new_estimator(config)
        self.step = Step(config.discovery, now)
        self.decreases = 0
        self.pause_until = 0.0  # a dry spell: the controller sends nothing on this axis until then
        self.look = Look()  # after a cut: the next request goes alone, then a pause to hear of it
        self.dry = DrySpell(self.estimator, config.discovery.step_requests)
        self._retry_after: float | None = None  # the latest refusal's retry delay, when the provider said

    @property
    def window(self) -> WindowLearner:
        """The span the account counts over, as dry spells showed it."""
        return self.dry.window

    def fire(self, event: Event, now: float) -> None:
        """Move by the table: to its next phase, by the action it names (none: stay)."""
        step = TRANSITIONS.get((self.phase, event))
        if step is None:
            return
        if event is not Event.REFUSED:
            self.dry.ended()
        self.phase, action = step
        getattr(self, "_" + action)(now)

    def _grow(self, now: float) -> None:
        self._set(self.per_s * self.cfg.discovery.growth, now)

    def _cut(self, now: float) -> None:
        self.climb.refused_at(self.per_s)
        floor = admitted = 0.0
        if self.estimate is None:  # searching: what the account admits per minute, and admitted just now
            floor = self.dry.floor(now, self.step.settle)
            admitted = self.dry.recent_admitted(now, self.step.settle, self.per_s)
            spent = spent_at_floor(self.per_s, floor=floor, admitted=admitted)
        else:  # cut under a known ceiling: a spent window only where the account admits next to nothing
            spent = self.dry.admits_nothing(now, self.step.settle, self.per_s)
        if spent:
            self._dry(now, self._retry_after)
            return
        self.decreases += 1
        target = self.per_s * self.cfg.discovery.backoff  # (searching, the climb says; never under the floor)
        if self.estimate is None:
            target = self.climb.cut(self.per_s, halved=target, admitted=admitted, steady_cut=self.cfg.steady.steady_cut,
                                    sustained=(now - self.step.start >= SUSTAINED_S
                                               and self.step.sends >= SUSTAINED_REQUESTS))
        else:
            self.climb.restart()  # (a cut ends the climb; Climb.cut ends it itself)
        self._set(max(floor, target), now)
        # look before sending on: what was sent before the cut comes back refused meanwhile, and a dry
        # window costs one refusal per cut, not a wave at the new rate (a bucket refills meanwhile)
        if self.estimate is None:  # searching: the rate may be far above the ceiling
            self._settle(now)
            self.look.arm()  # then the first request alone: its refusal would be back within the settle time
        self.pacer.drain(now)  # resume one interval at a time, not with the pacer's saved-up burst

    def _step_back(self, now: float) -> None:
        self.climb.refused_at(self.per_s)
        self.decreases += 1
        self._set(self.per_s * self.cfg.steady.steady_cut, now)

    def _settle(self, now: float) -> None:
        """Send nothing for a settle time, to hear of what was sent (after a cut, after its look);
        the step counts the pause (a bucket banks its refill meanwhile)."""
        self.pause_until = max(self.pause_until, now + self.step.settle)
        self.step.paused(now, self.pause_until)

    def _dry(self, now: float, retry_after_s: float | None) -> None:
        """Pause this axis until the account's window frees (:meth:`DrySpell.pause`)."""
        self.pause_until = self.dry.pause(now, retry_after_s)
        if self.dry.pauses > 1 or (self.known and retry_after_s):  # refused after a pause, or told when the window
            self.look.arm()  # frees: the next one goes alone (not a burst at the rate into a window still spent)
        self.estimator.forget()
        self.step.restart(now)

    def _approach(self, now: float) -> None:
        """Climb back (:meth:`Climb.step`) toward just under the estimate, else the rates
        refused (within a window of a dry one, first to the floor: what ages out of it)."""
        margin = self.cfg.steady.margin
        floor = self.dry.floor(now, self.step.settle) * (1.0 - margin) if self.dry.windowed(now) else 0.0
        if floor > self.per_s:
            self._set(floor, now)
            return
        target = self._target() if self.estimate is not None else None
        self._set(self.climb.step(self.per_s, target=target, margin=margin, growth=self.cfg.discovery.growth), now)

    def _fall_back(self, now: float) -> None:  # a probe was refused: under the estimate again
        window_s = self.window.span_s if self.window.known else 0.0
        self.prober.ended(refused_at=self.window.last_refused, window_s=window_s, reached=self.per_s, at=now)
        self._at_estimate(now)

    def _expire(self, now: float) -> None:
        """A probe admitted all along proved nothing (its excess within the burst): as :meth:`_hold`,
        but from a window read from the lane's first requests (:attr:`WindowLearner.from_start`, a
        lower bound when a fixed window reset unseen in it) the next probe reaches twice as far:
        at +50% a 10-s window read at 0.59 of its rate was never spent, so never read again."""
        lower_bound = self.window.known and self.window.from_start and not self.known
        self.prober.ended(further=lower_bound, at=now)
        self._at_estimate(now)

    def _hold(self, now: float) -> None:
        self.prober.ended(at=now)
        self._at_estimate(now)

    def _at_estimate(self, now: float) -> None:
        """Pace just under the estimate (none yet: the step starts again at the rate)."""
        if self.estimate is not None:
            self._set(self._target(), now)
        else:
            self.step.restart(now)

    def _probe(self, now: float) -> None:
        self._set(self.prober.reach(self.estimate or self.per_s), now)
        self.prober.start(now)

    def _raise(self, now: float) -> None:
        """The probe proved a higher ceiling: take what it proved and probe on, reaching
        further (the proof is over the whole probe, so it tightens as the probe goes on)."""
        self.estimate = min(max(self.estimate or 0.0, self._proof or 0.0), self.cap or math.inf)
        self._estimated_at = now
        self.prober.proven(now)
        self.estimator.forget()
        self._set(self.prober.reach(self.estimate), now)

    def _measured(self, estimate: Estimate, now: float, at_least: float | None = None) -> None:
        """A span between two dry moments measured the ceiling (``at_least``: what a refused
        probe leaves standing; at a few requests a second one request more or less is 5%)."""
        per_s = max(estimate.per_s, at_least or 0.0)
        self.estimate = min(per_s, self.cap) if self.cap is not None else per_s
        self._estimated_at = now
        self.climb.forget()
        if self.burst.burst_s is None and self.first_dry_at is not None:
            self.burst.learn(self.estimator.net_between, per_s=estimate.per_s, dry_at=self.first_dry_at,
                             since=self.born)
        self.fire(Event.MEASURED, now)

    # -- helpers ---------------------------------------------------------------
    def _timing(self) -> dict[str, bool | float | None]:
        """How this axis's step is proven: discovering, or cut under :data:`DEEP_SHARE` of a
        measured ceiling, it is timed (full after ``step_max_s``, or :data:`DEEP_STEP_S`, whatever
        it sent), else counted in requests (:class:`Step`)."""
        deep = self.phase is Phase.BACKOFF and self.estimate is not None and self.per_s < self.estimate * DEEP_SHARE
        return {"searching": self.phase is Phase.DISCOVER or deep, "full_after_s": DEEP_STEP_S if deep else None}

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
        self.step.restart(now)
