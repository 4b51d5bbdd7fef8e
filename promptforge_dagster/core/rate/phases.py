"""The phases of one limit's rate and the one table of what moves between them.

Each entry is ``(phase, event) -> (next phase, action)``; the action names a method of
:class:`~promptforge_dagster.core.rate.machine.AxisMachine` (``"cut"`` is ``AxisMachine._cut``). A
pair not listed leaves the phase as it is. How each action moves the rate is told there; which
event a provider's answer is, in :class:`~promptforge_dagster.core.rate.axis.Axis`.

* ``DISCOVER``: no ceiling known; the rate doubles each time a step is proven.
* ``BACKOFF``: refused while searching: cut, no lower than the floor, and then the next request
  goes alone (what was sent before the cut comes back refused meanwhile, not a wave at the new
  rate). Cut again only when a request sent *after* the cut is refused (one sent before it
  says nothing new). Refused at the floor (or admitting under half of it; under a known
  ceiling, measured or stated, next to nothing), the account counts over a window: pause
  until it frees; so too when the look itself is refused with a wait of seconds
  (:mod:`~promptforge_dagster.core.rate.spent`); a refusal at an estimate a window gave is a
  spent window again: a pause, not a cut. Cut under a quarter of a measured ceiling,
  the climb back's steps are timed, not counted in requests (8 of them at 3 RPM take 160 s).
* ``STEADY``: paced at the measured ceiling less a margin; refused there, a step back
  (``steady_cut``) and the estimator measures again.
* ``PROBE``: above the estimate until refused (back to steady: a refused probe never lowers the
  estimate it started from, and raises it to what it admitted beyond a full burst; refused at
  once, later probes stop halfway to its rate) or expired
  (from a window read across a reset unseen, a lower bound, the next probe then reaches twice
  as far). Each time it has sent more beyond the estimate than the account's burst could absorb
  (:mod:`~promptforge_dagster.core.rate.burst`), the estimate rises to what it proved and the
  probe reaches further.

``MEASURED`` leads to ``STEADY`` from any phase; ``KNOWN`` (headers or the message stated the
limit) does too: a stated limit is the account's, a cap never paced past, while this lane's
own share of it (other jobs, other clients) is measured as any ceiling is.

>>> TRANSITIONS[(Phase.STEADY, Event.REFUSED)]
(<Phase.BACKOFF: 'backoff'>, 'step_back')
>>> (Phase.DISCOVER, Event.EXPIRED) in TRANSITIONS
False
"""

from __future__ import annotations

import enum


class Phase(str, enum.Enum):
    DISCOVER = "discover"  # no ceiling known: the rate doubles per proven step
    BACKOFF = "backoff"  # refused: cut, then climbing back toward the rates refused
    STEADY = "steady"  # paced just under the estimate
    PROBE = "probe"  # paced above it, to find out whether the ceiling rose


class Event(str, enum.Enum):
    PROVEN = "proven"  # a step's sends are admitted, and the pacer was what held them back
    RECOVERED = "recovered"  # proven, back at the target under a known estimate
    REFUSED = "refused"  # a request sent at the current rate was refused
    MEASURED = "measured"  # a span between two dry moments gave an estimate
    PROBE_DUE = "probe_due"  # the prober says a probe is due, and the pacer binds
    EXPIRED = "expired"  # a probe neither proven nor refused for several windows
    KNOWN = "known"  # the provider stated the limit
    OUTGROWN = "outgrown"  # climbing back, admitted at twice every rate refused: those refusals were no ceiling


TRANSITIONS: dict[tuple[Phase, Event], tuple[Phase, str]] = {
    (Phase.DISCOVER, Event.PROVEN): (Phase.DISCOVER, "grow"),
    (Phase.DISCOVER, Event.REFUSED): (Phase.BACKOFF, "cut"),
    (Phase.BACKOFF, Event.REFUSED): (Phase.BACKOFF, "cut"),
    (Phase.BACKOFF, Event.PROVEN): (Phase.BACKOFF, "approach"),
    (Phase.BACKOFF, Event.RECOVERED): (Phase.STEADY, "hold"),
    (Phase.BACKOFF, Event.OUTGROWN): (Phase.DISCOVER, "grow"),
    (Phase.STEADY, Event.REFUSED): (Phase.BACKOFF, "step_back"),
    (Phase.STEADY, Event.PROBE_DUE): (Phase.PROBE, "probe"),
    (Phase.PROBE, Event.PROVEN): (Phase.PROBE, "raise"),
    (Phase.PROBE, Event.REFUSED): (Phase.STEADY, "fall_back"),
    (Phase.PROBE, Event.EXPIRED): (Phase.STEADY, "expire"),
    **{(p, Event.MEASURED): (Phase.STEADY, "hold") for p in Phase},
    **{(p, Event.KNOWN): (Phase.STEADY, "hold") for p in Phase},
}
