"""The climb back after a refusal, when no ceiling is measured yet: the rates refused are the map.

* **A cut** of a search refused at ``per_s`` goes to half of it, or to what the account
  admitted while dry if that is less (a far overshoot is undone in one step). Refused again
  after a rate was held :data:`SUSTAINED_S`, the rate is near the ceiling: a step back
  (``steady_cut``), not a halving. A refused step of a climb returns to where it climbed from.
* **A climb** aims just under the lowest rate refused above the current one, halfway each
  proven step (at least +10%, at most the growth of a search): the rates measured at are then
  near the ceiling (a window counter loses what it does not admit).
* **Past every rate refused** (a flood's echo: an account still dry, or in debt when refusals
  are charged) it climbs on by growing steps, +10%, +20%, +40%, ..., and past :data:`OUTGROWN`
  times the highest refused it is a search again.

>>> c = Climb()
>>> c.refused_at(10.0)
>>> c.cut(10.0, halved=5.0, admitted=4.0, sustained=False, steady_cut=0.85)   # what was admitted
4.0
>>> round(c.step(4.0, target=None, margin=0.03, growth=2.0), 2)   # halfway to just under 10
6.85
>>> c.refused_at(6.85); c.cut(6.85, halved=3.4, admitted=6.0, sustained=False, steady_cut=0.85)   # back to 4
4.0
"""

from __future__ import annotations

import math

APPROACH_GAIN = 0.1  # admitted at every rate refused since the last estimate: climb on gently (x per step)
OUTGROWN = 2.0  # climbing back with nothing measured, admitted at twice the highest rate refused: search on by
# doubling (a busy shared pool's refusal early in a cold start held a lane to +10% steps for a minute)
SUSTAINED_S = 4.0  # a rate admitted this long before a refusal is near the ceiling: an overshoot by half would
# have drained a 2-s burst in 4 s; so the cut is a step back (steady_cut), not a halving (a 60 RPM lane
# refused at 72 after 7 s was halved to 36 and measured its own rate there: 46)
SUSTAINED_REQUESTS = 4  # ... and this many requests sent at it: a bucket holds at least one request, which an
# overshoot by half drains in two intervals (a 10 RPM lane "held" 13 RPM for one request and stepped back to 11)


class Climb:
    def __init__(self) -> None:
        self.refused_rates: list[float] = []  # rates refused since the last estimate
        self.restart()

    def restart(self) -> None:
        """A cut ends the climb: the next one starts from the rate cut to."""
        self.climbed_from = math.inf  # the admitted rate the latest step of the climb started from
        self.passed: float | None = None  # the highest rate refused that the climb has since passed
        self.gain = APPROACH_GAIN  # ... and the gain of its next step past them, doubling per step proven

    def refused_at(self, per_s: float) -> None:
        self.refused_rates.append(per_s)

    def forget(self) -> None:
        """A ceiling was measured (or was another limit's doing): the rates refused say no more."""
        self.refused_rates = []

    def cut(self, per_s: float, *, halved: float, admitted: float, sustained: bool, steady_cut: float) -> float:
        """Where a search refused at ``per_s`` goes (the caller keeps it above its floor).
        ``sustained``: the rate was held :data:`SUSTAINED_S` before the refusal."""
        target = min(halved, admitted)
        again = len(self.refused_rates) > 1
        if again and sustained:
            target = per_s * steady_cut
        if again and self.climbed_from < per_s:  # a step of the climb was refused: back to where it was admitted
            target = max(target, self.climbed_from)
        self.restart()
        return target

    def step(self, per_s: float, *, target: float | None, margin: float, growth: float) -> float:
        """The next rate after ``per_s`` was proven: halfway to just under ``target`` (a
        measured estimate's) or the lowest rate refused above, else on past them."""
        if target is not None:
            above = [target]
        else:
            above = [r * (1.0 - margin) for r in self.refused_rates if r * (1.0 - margin) > per_s * 1.001]
        if above and per_s < min(above) * 0.999:  # halfway there (at least +10%), at most doubling
            self.climbed_from = per_s
            halfway = max((per_s + min(above)) / 2.0, per_s * (1.0 + APPROACH_GAIN))
            return min(min(above), per_s * growth, halfway)
        # admitted at every refused rate: a flood's echo, or the ceiling rose
        self.passed = max(self.refused_rates + [self.passed or 0.0]) or None
        self.refused_rates = []
        rate = per_s * (1.0 + self.gain)
        self.gain = min(2.0 * self.gain, growth - 1.0)
        return rate

    def outgrown(self, per_s: float) -> bool:
        """Climbing past every rate refused, ``per_s`` is twice the highest: they were no ceiling."""
        return self.passed is not None and per_s >= OUTGROWN * self.passed

    def rescale(self, factor: float) -> None:
        self.refused_rates = [r * factor for r in self.refused_rates]
