"""The prober: when to look above a measured ceiling, how far, and what a probe proves.

A probe paces above the estimate. Refused, it ends at once (the estimator measures from the
refusal, so a failed probe costs about one refusal). Admitted, it proves nothing until it
has sent more beyond the estimate than the account's burst could have absorbed
(:mod:`~promptforge_dagster.core.rate.burst`): a bucket rested under its ceiling admits a
too-high rate for a while. Once it has sent :data:`PROOF_BURSTS` bursts more, the ceiling is
at least ``(admitted - burst) / span`` over the whole probe, a bound no burst can fake; the
probe then goes on, reaching twice as far each time it proves more. Refused before a proof,
it still proved that bound if it beats the estimate (:meth:`Prober.refused_proof`): the refusal
says the account ran dry, so a full burst at most was spent from it (not where a shared pool may
have refused it). A probe that proves nothing new and is not refused for a few windows (demand
or the client held it back) ends.

Probes are spaced by time (``probe_every_windows``); once one was refused, also by sends
(:data:`PROBE_MIN_SENDS` for each refusal it cost: what it sent until it heard of the first
is refused too, its rate times a refusal's trip), so failed probes' refusals stay under 1%
of what is sent at any rate and however far the provider is. After a proven probe the next
comes soon (a risen ceiling is climbed in seconds). A probe refused within
:data:`QUICK_REFUSAL_S`, about as soon as a proof could span, says the account's slack is a
second or two (a 1-s window counter, a tiny bucket): the next one reaches half as far, and a
probe that would reach past that rate stops halfway to it (a bisection) until one proven
there, or one that ended otherwise, says the ceiling may have risen.

>>> from promptforge_dagster.core.rate.config import Steady
>>> p = Prober(Steady(), window_s=5.0)
>>> p.due(now=10.0, since=0.0, per_s=20.0)   # 10 s is two windows and 200 sends
True
>>> p.proof(admitted=110.0, span=5.0, estimate=20.0, burst=4.0) is None   # 10 beyond: under 1.5 bursts + 5%
True
>>> round(p.proof(admitted=120.0, span=5.0, estimate=20.0, burst=4.0), 1)
23.2
"""

from __future__ import annotations

from typing import Callable

from promptforge_dagster.core.rate.config import Steady

PROBE_MIN_SENDS = 200  # sends at the estimate between probes for each refusal the last failed one cost: <= 0.5%
# of them (with refusals 200 ms away a probe at +50% of 600 RPM costs ~3, and probes cost 1.5% of what was sent)
PROOF_BURSTS = 1.5  # a probe proves once it sent this many bursts beyond the estimate: half its reach is then sure
PROOF_MIN_UNITS = 2.0  # ... and at least this much: a couple of requests is noise at any rate
PROOF_MIN_SHARE = 0.05  # ... and 5% of what the estimate sends over the span (tokens come in lumps)
PROOF_MIN_S = 1.0  # a proof spans at least this long: the send history's grain is 50 ms
PROOF_MIN_REQUESTS = 8  # ... and this many requests: a tokens axis's request is a lump (one of 1,100 tokens on a
# 30,000 TPM account proved +40% in 1.6 s, and the lane refused 38% at the estimate it raised)
QUICK_REFUSAL_S = 2.0  # a probe refused this soon halves the next one's reach: a 1-s window refuses +25% in 1-2 s
# (once its sends line up with a window), and at 1 s the next probe went back to +50%, refused too (0.83)
MAX_MARKS = 8  # the spans a probe's proof is read over: since its start, or since one of its latest proofs
PROBE_MAX_WINDOWS = 6.0  # a probe neither proven nor refused in this many windows ends (nothing more to learn)


class Prober:
    def __init__(self, steady: Steady, window_s: float) -> None:
        self.steady = steady
        self.window_s = window_s
        self.gain = steady.probe_gain
        self.started_at: float | None = None
        self._progress_at = 0.0  # the probe's start or its latest proof
        self._proofs = 0  # proofs in this probe
        self.marks: list[float] = []  # the probe's start and each proof: where its reach changed
        self.refused = False  # a probe was refused since the last proven one: space them by sends too
        self.refused_reach: float | None = None  # the reach of a probe refused at once: later ones stop halfway
        self._halfway = False  # the latest reach stopped halfway to ``refused_reach``
        self._sent_from, self._sent_until = 0.0, -1.0  # the latest probe's sends: from its start to its end
        self.cost = 0  # refusals of the latest probe's sends (those in flight when it ended are heard later)

    @property
    def rising(self) -> bool:
        """The last probe proved a higher ceiling: it may be climbing still."""
        return self.gain > self.steady.probe_gain

    def due(self, now: float, since: float, per_s: float) -> bool:
        """Steady since ``since`` at ``per_s`` requests a second: is a probe due?"""
        s = self.steady
        if self.rising:
            return now - since >= s.probe_again_windows * self.window_s
        spacing = s.probe_every_windows * self.window_s
        if self.refused:
            spacing = max(spacing, PROBE_MIN_SENDS * max(1, self.cost) / max(per_s, 1e-9))
        return now - since >= spacing

    def start(self, now: float) -> None:
        self.started_at = self._progress_at = now
        self._proofs = 0
        self.marks = [now]
        self._sent_from, self._sent_until, self.cost = now, float("inf"), 0

    def refused_sent(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was refused: one more the latest probe cost, if it sent it.

        >>> p = Prober(Steady(), window_s=5.0); p.start(10.0)
        >>> p.refused_sent(10.5); p.ended(refused_at=10.5, at=10.7); p.refused_sent(10.6); p.refused_sent(11.0)
        >>> p.cost, round(p.cost * PROBE_MIN_SENDS / 10.0)   # two refused: 40 s between probes at 10 a second
        (2, 40)
        """
        if self._sent_from <= sent_at <= self._sent_until:
            self.cost += 1

    def reach(self, estimate: float) -> float:
        """Where a probe from ``estimate`` (per second) paces: further on a fast lane, but
        halfway to :attr:`refused_reach` where it would reach that (noted: a proof there
        forgets it).

        >>> p = Prober(Steady(), window_s=5.0); p.refused_reach = 12.0
        >>> p.reach(10.0), p.reach(7.0)
        (11.0, 10.5)
        """
        s, gain = self.steady, self.gain
        if estimate * 60.0 < s.slow_rpm:  # the same doublings after each proof, from a smaller first reach
            gain *= s.slow_probe_gain / s.probe_gain
        reach = estimate * (1.0 + gain)
        self._halfway = self.refused_reach is not None and estimate < self.refused_reach <= reach
        if self._halfway:
            return (estimate + self.refused_reach) / 2.0  # halfway to a rate refused: a bisection
        return reach

    def proof(self, *, admitted: float, span: float, estimate: float, burst: float) -> float | None:
        """The ceiling proven by ``admitted`` units over ``span`` seconds of probing, or None."""
        least = PROOF_BURSTS * burst + max(PROOF_MIN_UNITS, PROOF_MIN_SHARE * estimate * span)
        if span < PROOF_MIN_S or admitted - estimate * span < least:
            return None
        return (admitted - burst) / span

    def refused_proof(self, *, admitted: float, span: float, estimate: float, burst: float,
                      requests: int) -> float | None:
        """The ceiling a refused probe proved: its refusal says the account ran dry, so what it
        admitted over its span, less what a full burst could hold, was refilled (a lower bound),
        or None when that is not above the estimate (or the span is too short or too thin to say).

        >>> p = Prober(Steady(), window_s=5.0)
        >>> round(p.refused_proof(admitted=22.0, span=2.2, estimate=5.9, burst=6.6, requests=22), 2)
        7.0
        >>> p.refused_proof(admitted=22.0, span=2.2, estimate=7.5, burst=6.6, requests=22) is None
        True
        """
        if span < PROOF_MIN_S or requests < PROOF_MIN_REQUESTS:
            return None
        bound = (admitted - burst) / span
        return bound if bound > estimate else None

    def best_proof(self, admitted: Callable[[float, float], float | None], end: float, *, estimate: float,
                   burst: float, requests: Callable[[float, float], int]) -> float | None:
        """The highest ceiling proven over the spans from the probe's start or one of its
        proofs to ``end`` (a recent span follows a rising ceiling; a long one beats the burst),
        each of at least :data:`PROOF_MIN_REQUESTS` requests sent (``requests(t0, t1)``)."""
        proofs = [self.proof(admitted=admitted(t0, end) or 0.0, span=end - t0, estimate=estimate, burst=burst)
                  for t0 in self.marks if end > t0 and requests(t0, end) >= PROOF_MIN_REQUESTS]
        return max((p for p in proofs if p is not None), default=None)

    def expired(self, now: float) -> bool:
        return self.started_at is not None and now - self._progress_at >= PROBE_MAX_WINDOWS * self.window_s

    def proven(self, now: float) -> None:
        self.gain = self._twice_as_far()
        self._progress_at = now
        self._proofs += 1
        self.marks = (self.marks + [now])[-MAX_MARKS:]
        self.refused = False
        if self._halfway:  # proven halfway to the rate refused: the ceiling may have risen since
            self.refused_reach = None

    def ended(self, refused_at: float | None = None, window_s: float = 0.0, *, further: bool = False,
              reached: float | None = None, at: float | None = None) -> None:
        """Refused (a request sent at ``refused_at``), expired, or the estimate was measured or
        told: the next probe reaches as far as a first one, or half as far as this one if it
        was refused within :data:`QUICK_REFUSAL_S`, or within a window of a window counter
        (``window_s``, when one is known: it refuses only once its count passes the quota), or
        twice as far when ``further`` (expired, admitted all along, from an estimate known to be
        a lower bound: the next one spends the window, and its end reads it again). Refused
        quickly where no window is known, the rate it ``reached`` is one the next probes stop
        halfway to. ``at``: when it ended (its sends are those before).

        >>> p = Prober(Steady(), window_s=5.0); p.start(0.0); p.ended(further=True); p.gain
        1.0
        """
        if self.started_at is not None:
            self._sent_until = at if at is not None else self._progress_at
        if self.started_at is not None and not self._proofs:
            self.refused = True  # ended before it proved anything: as good as refused, for spacing
        quick = max(QUICK_REFUSAL_S, window_s)
        if refused_at is not None and self.started_at is not None and refused_at - self._progress_at < quick:
            # refused about as soon as a proof could span: the account's slack is a second or two (a 1-s
            # window counter refuses +50% at once and +25% within 1-2 s), so a far probe never proves: nearer
            self.gain = max(self.steady.probe_gain_min, self.gain / 2.0)
            # (not on a known window: a probe past it causes a dry spell whose end reads the window again, one
            # halfway under it reads nothing; a 6,000 RPM 10-s window read low stayed there, 0.894 -> 0.877)
            self.refused_reach = None if window_s else reached
        elif self.started_at is not None:
            self.refused_reach = None
            self.gain = self._twice_as_far() if further else self.steady.probe_gain
        self.started_at = None

    def dropped(self, at: float) -> None:
        """The lane left its probe with no answer to it (what it learned was another limit's
        doing): its sends end ``at``, and later refusals are none of its cost."""
        if self.started_at is not None:
            self._sent_until, self.started_at = at, None

    def _twice_as_far(self) -> float:
        return min(self.steady.probe_gain_max, self.gain * 2.0)
