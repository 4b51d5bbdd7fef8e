"""One limit of one lane (requests per minute, or tokens per minute) as a state machine.

Its phases, and what moves between them, are one table in
:mod:`~promptforge_dagster.core.rate.phases`, whose actions are the methods of the
:class:`~promptforge_dagster.core.rate.machine.AxisMachine`; this module reads what the
controller tells an axis (sent, admitted, refused, a stated limit, time) into that table's
events. The parts it composes are each told in their own module: a
:class:`~promptforge_dagster.core.rate.pacer.Pacer` holds sends to the rate; a
:class:`~promptforge_dagster.core.rate.step.Step` says when a rate is proven; the
:class:`~promptforge_dagster.core.rate.estimator.CeilingEstimator` measures a ceiling between
two dry moments; the :class:`~promptforge_dagster.core.rate.dry.DrySpell` what a dry account
admits and when its window frees; :mod:`~promptforge_dagster.core.rate.spent` when a refusal
says wait rather than slow down; the :class:`~promptforge_dagster.core.rate.climb.Climb`
where a cut goes and how the climb back nears the rates refused; the
:class:`~promptforge_dagster.core.rate.prober.Prober` when and how far to look above a ceiling.

>>> a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
>>> a.phase.value, a.per_s
('discover', 1.0)
>>> a.known_limit(600.0, now=0.0); a.phase.value, round(a.per_s * 60)
('steady', 594)
"""

from __future__ import annotations

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.estimator import Estimate
from promptforge_dagster.core.rate.machine import AxisMachine
from promptforge_dagster.core.rate.phases import Event, Phase
from promptforge_dagster.core.rate.spent import Verdict, verdict, window_belied
from promptforge_dagster.core.rate.window import against_stated


class Axis(AxisMachine):
    """One limit of one lane: the machine, read from what the controller tells it."""

    def blocked(self) -> None:
        """The pacer held a request back: the rate, not demand, is what limits sending."""
        self.step.blocked = True

    def sent(self, now: float, units: float) -> None:
        self.pacer.take(now, units)
        if self.look.sent(now):  # the first request after a cut goes alone: wait to hear whether it was refused
            self._settle(now)
        self.estimator.sent(now, units)
        self.step.sent(now, units=units, **self._timing())

    def admitted(self, sent_at: float, now: float, units: float) -> None:
        """An answer came back admitted: a dry spell is over (a window's quota over its span,
        when its end showed them, is the ceiling). Above the estimate, it is taken over the
        reading's own span (:attr:`WindowLearner.read_s`), and only when its fill began after an
        earlier dry spell: one from the lane's first requests may span a reset unseen."""
        window = self.dry.resumed(sent_at, now)
        if window is not None and self.estimate is not None and window.per_s >= self.estimate:
            whole = window.sends / self.window.read_s  # (a probe spent a window the first reading had read low)
            if not self.window.from_start and whole > self.estimate:
                self._measured(Estimate(whole, self.window.read_s, window.sends, 0.0), now)
        elif window is not None:
            stated = None  # (a limit the provider stated may stand against a reading from the lane's first sends)
            if self.cap is not None and self.window.from_start:
                stated = against_stated(window.per_s, window.span_s, stated=self.cap, margin=self.cfg.steady.margin,
                                        unit=self.estimator.units_per_request)
            self._measured(window, now, at_least=stated)

    def refused(self, sent_at: float, now: float, units: float, retry_after_s: float | None = None, *,
                dry: bool = True) -> None:
        self.step.heard(sent_at, now)
        self.prober.refused_sent(sent_at)
        # a refused probe says the ceiling is under its reach, not under the estimate it started from
        kept = self.estimate if self.phase is Phase.PROBE and sent_at >= (self.prober.started_at or now) else None
        self.dry.refused(sent_at)
        self._retry_after = retry_after_s
        self.pacer.repay(now, units)  # the account may have charged it: skip a slot to repay
        estimate = self.estimator.refused(sent_at, units, settle_s=self.step.settle)
        if self.first_dry_at is None and self.phase is Phase.DISCOVER:
            self.first_dry_at = sent_at
        start = self.prober.started_at
        if self.phase is Phase.PROBE and start is not None and sent_at > start and self.estimate:
            admitted, bound = self.estimator.net_between(start, sent_at) or 0.0, None
            if dry:  # the account ran dry: what the probe admitted beyond a full burst was refilled
                bound = self.prober.refused_proof(admitted=admitted, span=sent_at - start, estimate=self.estimate,
                                                  burst=self.burst.units(self.estimate),
                                                  requests=self.estimator.requests_between(start, sent_at))
            if bound is not None:
                kept = max(kept or 0.0, bound)
            else:  # admitted beyond the estimate until the probe ran dry: the burst was at least that
                self.burst.observe(admitted - self.estimate * (sent_at - start), per_s=self.estimate)
        at_window = self.phase is Phase.STEADY and self.window.known
        if at_window and not self.known and window_belied(self.estimator, since=self._estimated_at, sent_at=sent_at,
                                                          span_s=self.window.span_s, per_s=self.estimate or self.per_s):
            self.window.forget()  # no window's (a stated limit's refusals are told apart by its retry)
            at_window = False
        said = verdict(sent_at=sent_at, step_start=self.step.start, stated=self.known, retry_after_s=retry_after_s,
                       looked=self.look.was(sent_at), at_window_estimate=at_window,
                       interval_s=self.estimator.units_per_request / self.cap if self.cap else None)
        if said is Verdict.WAIT:
            self._dry(now, retry_after_s)  # the window is spent: wait it out
        elif said is Verdict.SLOW:
            self.fire(Event.REFUSED, now)
        if (estimate is None and start is not None and kept is not None and self.estimate is not None
                and kept > self.estimate):
            # a refused probe's bound stands alone where no span since the last dry moment measured anything
            # (a charged 1,200 RPM bucket, refusals 100 ms away, kept 0.85 of it)
            estimate = Estimate(kept, sent_at - start, 0.0, 0.0)
        if estimate is not None and not self.dry.windowed(now):  # (within a minute of a dry window the
            self._measured(estimate, now, at_least=kept)  # account admits the echo of our own first burst)

    def known_limit(self, per_minute: float, now: float) -> None:
        """The provider stated this limit (headers or message): the account's, so a cap this
        lane never paces past; its own share is still measured (other jobs use the account)."""
        if self.known and self.cap == per_minute / 60.0:
            return
        self.cap, self.known = per_minute / 60.0, True
        if self.estimate is None or self.estimate > self.cap:
            self.estimate = self.cap
        self.fire(Event.KNOWN, now)

    def tick(self, now: float) -> None:
        """Check the proof of a step and whether a probe is due (call often; cheap)."""
        if self.phase is Phase.STEADY:
            if self.cap is not None and self.estimate is not None and self.estimate >= self.cap:
                return  # at the stated limit: nothing to probe for
            # (not within a window of a dry one: it frees as our first sends age out, a probe proves nothing;
            # probes are spaced by requests, whatever a request's units)
            if (self.step.blocked and not self.dry.windowed(now)
                    and self.prober.due(now, self.step.start, self.per_s / self.estimator.units_per_request)):
                self.fire(Event.PROBE_DUE, now)
            return
        if self.phase is Phase.PROBE:
            estimate = self.estimate or self.per_s
            self._proof = self.prober.best_proof(self.estimator.net_between, now - self.step.settle,
                                                 estimate=estimate, burst=self.burst.units(estimate),
                                                 requests=self.estimator.requests_between)
            if self._proof is not None:
                self.fire(Event.PROVEN, now)
            elif self.prober.expired(now):
                self.fire(Event.EXPIRED, now)
            return
        if self.step.proven(now, per_s=self.per_s, **self._timing()):
            recovered = (self.phase is Phase.BACKOFF and self.estimate is not None
                         and self.per_s >= self._target() * 0.999)
            outgrown = self.phase is Phase.BACKOFF and self.estimate is None and self.climb.outgrown(self.per_s)
            self.fire(Event.RECOVERED if recovered else Event.OUTGROWN if outgrown else Event.PROVEN, now)

    def release(self, now: float) -> None:
        """What this axis learned was another limit's doing: search again from its rate."""
        self.estimate, self.phase = None, Phase.DISCOVER
        self.prober.dropped(now)
        self.climb.forget()
        self.pause_until = 0.0
        self.dry.release()
        self.estimator.forget()
        self.step.restart(now)

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
        self.climb.rescale(factor)
        self._set(self.per_s * factor, now)
