"""A dry spell: the account refuses what is sent until its limit refills or its window frees.

Read from the send history (a :class:`~promptforge_dagster.core.rate.estimator.CeilingEstimator`)
by send time, over sends old enough (``settle``) for their refusals to be back:

* the **floor**: admitted per second over the last window. A per-minute limit always admits
  that much again, so a first cut goes no lower; and refused *at* the floor, the account
  counts over a window (a bucket refills continuously: it cannot stay dry below what it
  admits). Then the lane pauses until the window frees.
* **recent admitted**: what a dry account gives while it refuses (a far overshoot is undone
  in one cut to it). Under a known ceiling (measured or stated) a cut is a dry spell only
  where the account admits next to nothing (:meth:`DrySpell.admits_nothing`): a window
  spent (by the cold start's flood, or by a fill the estimator read as a rate), not a
  ceiling crossed.
* the **pause**: when to look again (:meth:`WindowLearner.frees_at`); and when a request is
  admitted after one, what the end of the spell says: the window's span and quota are the
  ceiling (:class:`~promptforge_dagster.core.rate.window.WindowLearner`; Azure counts over 10 s).
  For a window after that, the account admits the echo of the lane's own first burst.

>>> from promptforge_dagster.core.rate.estimator import CeilingEstimator
>>> history = CeilingEstimator(min_sends=12, min_span_s=1.0)
>>> for i in range(100):
...     history.sent(i * 0.1, 1.0)
>>> d = DrySpell(history, step_requests=8)
>>> round(d.floor(now=10.0, settle=0.25) * 60)   # what was admitted, over a minute's window
98
>>> round(d.recent_admitted(now=10.0, settle=0.25, per_s=10.0), 1)   # 10 a second over the last seconds
10.0
"""

from __future__ import annotations

from promptforge_dagster.core.rate.estimator import CeilingEstimator, Estimate
from promptforge_dagster.core.rate.window import WindowLearner

READ_BACK_S = 0.05  # the send history's grain: sends this close before the first refusal were as dry
RECENT_S = 10.0  # what a dry account admits is read over this long (or 10 sends of a slow lane) ...
RECENT_MIN_S = 1.0  # ... and at least this long (the pacer's and the clock's grain)
NOTHING_SHARE = 0.25  # cut under a known ceiling, the account admitting under this share of the floor is a window
# spent, not a ceiling crossed (a 300 RPM fixed minute spent by the cold start's flood, cut on each refusal down to a
# few RPM, climbed back until 95 s: 0.78 -> 0.96; a 10-s window's fill measured at 1.4x its rate); a bucket admits its
# refill (a ceiling fallen from 900 to 300 RPM, a third): at half, that fall and a bucket that holds a
# minute were read as windows (the shift's last phase 0.80 -> 0.71, the bucket 3.4% -> 5.5% refused)


class DrySpell:
    def __init__(self, history: CeilingEstimator, step_requests: int) -> None:
        self.history = history
        self.step_requests = step_requests  # sends since the spell began before its own share admitted is read
        self.window = WindowLearner()
        self.since: float | None = None  # the first refusal of this episode of refusals
        self.pauses = 0  # pauses in this dry spell, each after a refusal at the floor
        self.dry_from = 0.0  # when the first refusal of the spell they pause was sent
        self.windowed_until = 0.0  # after a dry window: it frees as the lane's own sends age out until then

    def refused(self, sent_at: float) -> None:
        self.window.refused(sent_at, first_of_episode=self.since is None)
        if self.since is None:
            self.since = sent_at

    def ended(self) -> None:
        """Admitted at a step, measured or told: the episode of refusals is over."""
        self.since = None

    def windowed(self, now: float) -> bool:
        return now < self.windowed_until

    def floor(self, now: float, settle: float) -> float:
        """Admitted per second over the last window (sends less refusals), over a whole window
        however young the lane."""
        span = self.window.span_s
        return (self.history.net_between(now - span, now - settle) or 0.0) / span

    def recent_admitted(self, now: float, settle: float, per_s: float) -> float:
        """Admitted per second just now, paced at ``per_s``. Once enough was sent since the
        spell began, the share of it admitted at that rate; before, what was admitted over the
        last seconds (over a young lane's own life)."""
        end = now - settle
        if self.since is not None:
            sent = self.history.sent_between(self.since - READ_BACK_S, end)
            if sent >= self.step_requests:
                return per_s * (self.history.net_between(self.since - READ_BACK_S, end) or 0.0) / sent
        start = end - min(RECENT_S, max(RECENT_MIN_S, RECENT_S / per_s))
        first = self.history.first_sent
        if first is None or start >= first:
            return (self.history.net_between(start, end) or 0.0) / max(end - start, 1e-9)
        # a young lane: the sends after its first, over the time since (each ends an interval); if none of those was
        # admitted, the first alone (a 10 RPM account refused the second send: not "nothing admitted", a spent window)
        start = min(end - 1e-3, first)
        admitted = self.history.net_between(start, end) or self.history.net_between(first - READ_BACK_S, end) or 0.0
        return admitted / max(end - start, 1e-9)

    def admits_nothing(self, now: float, settle: float, per_s: float) -> bool:
        """Whether the account admits (:meth:`recent_admitted`) under :data:`NOTHING_SHARE` of
        the :meth:`floor`: a window spent, not a ceiling crossed (a bucket admits its refill)."""
        return self.recent_admitted(now, settle, per_s) < NOTHING_SHARE * self.floor(now, settle)

    def pause(self, now: float, retry_after_s: float | None) -> float:
        """Refused at the floor: until when to send nothing. Within a window of a dry one, not
        by its oldest admitted request: it frees as the lane's first sends age out, a few at a
        time, each costing a refusal (and the echo is no new fill)."""
        self.pauses += 1
        if self.pauses == 1:
            self.dry_from = self.since if self.since is not None else now
        windowed = self.windowed(now)
        oldest = self.history.first_admitted(now - self.window.span_s, now) if not windowed else None
        if self.pauses == 1 and not windowed:
            self.window.went_dry(self.history.first_admitted, now=now, dry_at=self.since or now)
        return self.window.frees_at(now, pauses=self.pauses, retry_after_s=retry_after_s, oldest_admitted=oldest)

    def resumed(self, sent_at: float, now: float) -> Estimate | None:
        """A request sent at ``sent_at`` was admitted: after a pause, the window freed. Its
        quota over its span, when the fill was seen."""
        if not self.pauses or sent_at < self.dry_from:  # (one sent before the spell: a flood's echo)
            return None
        self.pauses = 0
        per_s = self.window.resumed(sent_at, self.history.net_between, self.history.units_per_request)
        span = self.window.span_s
        self.windowed_until = now + span
        return Estimate(per_s, span, per_s * span, 0.0) if per_s is not None else None

    def release(self) -> None:
        """What was learned was another limit's doing."""
        self.pauses = 0
        self.windowed_until = 0.0
