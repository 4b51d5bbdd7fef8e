"""The phases of one limit's rate and the one table of what moves between them.

Each entry is ``(phase, event) -> (next phase, action)``; the action names a method of
:class:`~promptforge_dagster.core.rate.axis.Axis` (``"cut"`` is ``Axis._cut``). A pair not
listed leaves the phase as it is. What each phase and event means is told where they are
defined; how each action moves the rate, in the axis.

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
    (Phase.PROBE, Event.EXPIRED): (Phase.STEADY, "hold"),
    **{(p, Event.MEASURED): (Phase.STEADY, "hold") for p in Phase},
    **{(p, Event.KNOWN): (Phase.STEADY, "hold") for p in Phase},
}
