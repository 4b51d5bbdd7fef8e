"""Refusals that do not follow the rate: a shared pool's, not this account's limit.

Vertex AI's pay-as-you-go models draw on a shared pool ("dynamic shared quota"): when the
region is busy it answers 429 ``RESOURCE_EXHAUSTED`` "Resource exhausted, please try again
later", whatever the project's quota (Vertex AI docs, "Error code 429"; ../shared/PROVIDERS.md).
Those refusals say nothing about a ceiling, and a lane that cuts on each one halves its rate
every few dozen requests: a 1% share of them held a 1,200 RPM lane to 0.52 of its ceiling,
3% to 0.21 (fake clock, engine of 8aefcb4).

Only the rate's effect tells them apart. A limit refuses a share that grows with the rate
past the ceiling and vanishes under it: cut the rate and its refusals stop. Background
refusals keep their share however low the rate goes. So each answer is counted by the rate
the lane was paced at when its request went (bands 10% apart), and once the low rates
refused about as large a share as rates well above them (both small: a flood or a dry window
refuses most of what it sends), the share at the low rates is the *background*. From then on
a refusal is a limit's only when the latest answers hold more refusals than the background
would give but rarely; the others are retried, and lower nothing. The share is read again
from the answers sent while paced under a measured ceiling, where a limit refuses nothing.
Before it is found, a refusal is :attr:`Background.lone` when no other came among the
latest answers: in a shared pool's words, such a one teaches the lane nothing yet
(:mod:`~promptforge_dagster.core.rate.refusals`).

Other jobs pacing on the same account look the same from one lane: their load refuses a
share that this lane's rate does not move. So while lane sharing says others pace on the
lane, no background is looked for (three jobs on one account whose 429s name no limit took
their contention for a pool's, stopped backing off, and refused 2.7% over HTTP). A share
found before they came is kept. Jobs that share an account but not a lane (sharing off,
or several keys of one organisation) cannot be told apart: see docs/BENCHMARKS.md.

>>> b = Background()
>>> for second in range(60):                       # 4% refused at 20/s and at 5/s alike
...     rate = 20 if second < 30 else 5
...     for i in range(rate):
...         b.sent(second + i / rate, rate, under_ceiling=rate == 5)
...         _ = b.answered(second + i / rate, refused=(second * rate + i) % 25 == 0, now=second + i / rate)
>>> b.found, round(b.share, 2)   # found once the rate of 5/s refused as large a share (read as (k-1)/(n-1))
(True, 0.03)
>>> b.answered(59.0, refused=True, now=60.0)       # one more at the background's share: not a limit's
False
>>> [b.answered(60.0, refused=True, now=60.0) for _ in range(6)][-1]  # a run of them is a limit's
True
"""

from __future__ import annotations

import math
from collections import deque

BAND = 1.1  # answers are counted by the rate their request was sent at, in bands this far apart
SEND_MEMORY_S = 130.0  # how long the rate at each moment is remembered for the answers still to come (an
# answer later than --timeout, 120 s by default, is none)
GRAIN_S = 0.1  # ... to this grain (a pacer's step lasts a quarter of a second at least)
HORIZON_S = 180.0  # answers counted: long enough to hold a lane's cuts from its rate to a quarter of it
RATE_GAP = 1.25  # the rates compared: up to x paced under a ceiling, and from 1.25x (a limit refusing 10% or less
# at 1.25x has its ceiling over x, and refuses nothing there)
SHARE_KEPT = 0.5  # the lower rate refused at least half the higher one's share: the share did not follow the rate
FLOOD_SHARE = 0.25  # a rate refused more than this was a flood or a dry window: left out
BACKGROUND_MAX = 0.1  # a background larger than this is not looked for: a bucket's own share reads alike
MIN_REFUSALS = 3  # refusals on each side before their shares are compared
MIN_ANSWERS = 20  # answers on each side: a share read from fewer is noise
MIN_PACED = 60  # ... and under a ceiling: a limit counted in other units (output tokens, behind a gateway that
# says nothing) refuses a few there too (a bare OTPM limit was taken for a background at 20: 3 refusals in 77)
PRIOR_ANSWERS = 100  # the share read when found weighs as much as this many answers paced under a ceiling
FIRST_WINDOW = 8  # the shortest run of recent answers judged: a limit refuses a third of a probe's sends
KEPT_RUN = 8  # answers of a run that showed a limit kept in the next: with 4, or a fresh run, a lane climbing
# back over a bucket refused 10-30% before each run showed (fake clock, 3% background)
EVIDENCE = 9.2  # a run of answers refused this improbably under the background (ln 10,000) is a limit's
LONE_RUN = 8  # a refusal with no other among this many latest answers is lone: a limit passed refuses a run (one
# past by a quarter refuses a fifth of what it sends); in a shared pool's words, lone is the pool's until it is found


class Background:
    """Feed it every send and every answer of the lane (refused or admitted); ``answered``
    says whether a refusal is a limit's (True) or the background's (False)."""

    def __init__(self) -> None:
        self._bands: dict[int, int] = {}  # send grain -> the band of the rate then, x2, +1 if under a ceiling
        self._grains: deque[int] = deque()
        self._cells: deque[list] = deque()  # [second answered, {(band, under a ceiling): [answered, refused]}]
        self.share: float | None = None  # the background's share of refusals, once found
        self.looking = True  # False while other jobs pace on the lane: their load looks alike (a share of
        # refusals that this lane's rate does not move); a share found before they came is kept
        self._found_share = 0.0  # ... as read when found
        self._paced = self._paced_refused = 0  # answers (and refusals) paced under a measured ceiling, since found
        self._since = -math.inf  # answers to requests sent before this were counted for the last limit
        self._refused: deque[int] = deque([0])  # refusals before each recent answer (cumulative)
        self._latest: deque[bool] = deque(maxlen=LONE_RUN)  # the latest answers, refused or not

    @property
    def found(self) -> bool:
        return self.share is not None

    def sent(self, at: float, per_s: float, under_ceiling: bool = False) -> None:
        """A request went at ``at``, paced at ``per_s`` requests a second; ``under_ceiling``:
        paced under a measured ceiling, where a limit refuses nothing."""
        grain = math.floor(at / GRAIN_S)
        if grain not in self._bands:
            self._grains.append(grain)
            while self._grains[0] < grain - SEND_MEMORY_S / GRAIN_S:
                del self._bands[self._grains.popleft()]
        self._bands[grain] = 2 * math.floor(math.log(max(per_s, 1e-6)) / math.log(BAND)) + under_ceiling

    def answered(self, sent_at: float, refused: bool, now: float) -> bool:
        """Note an answer; for a refusal, whether it is a limit's (to be learned from)."""
        self._latest.append(refused)
        code = self._bands.get(math.floor(sent_at / GRAIN_S))
        band, under_ceiling = (None, False) if code is None else divmod(code, 2)
        if band is not None:
            counts = self._cell(now).setdefault((band, bool(under_ceiling)), [0, 0])
            counts[0] += 1
            counts[1] += refused
        if self.share is None:
            found = self._found() if refused and self.looking else None
            if found is not None:
                self.share = self._found_share = found
            return refused and found is None
        if under_ceiling:  # what a limit refuses nothing of: the background alone, read again
            self._paced += 1
            self._paced_refused += refused
            paced = (self._found_share * PRIOR_ANSWERS + self._paced_refused) / (PRIOR_ANSWERS + self._paced)
            self.share = min(self._found_share, paced)  # never above what was found: a measured ceiling set
            # too high refuses under it, and a share that rose with those would pass them all
        if sent_at < self._since:  # sent before the last limit's refusal: its echo, the axis judges it
            return refused
        self._refused.append(self._refused[-1] + refused)
        while len(self._refused) > 2 * FIRST_WINDOW and len(self._refused) * self.share > 2 * EVIDENCE:
            self._refused.popleft()  # far more than a run that could show a limit
        if not refused or not self._improbable(self.share):
            return False
        self._since = now  # keep the end of the run that showed it: a flood's next refusal is a limit's too
        self._refused = deque(list(self._refused)[-KEPT_RUN - 1:])
        return True

    @property
    def lone(self) -> bool:
        """The latest answer was refused, and none other of the last :data:`LONE_RUN`."""
        return bool(self._latest) and self._latest[-1] and sum(self._latest) == 1

    def _improbable(self, share: float) -> bool:
        """Whether the last n answers (n = 8, 16, 32, ...) hold more refusals than the
        background would give but one time in e^EVIDENCE (a Chernoff bound)."""
        n, total = FIRST_WINDOW, len(self._refused) - 1
        while n <= total:
            k = self._refused[-1] - self._refused[-1 - n]
            if k / n > share and n * _kl(k / n, share) > EVIDENCE:
                return True
            n *= 2
        return False

    def _cell(self, now: float) -> dict[int, list[int]]:
        second = math.floor(now)
        if not self._cells or self._cells[-1][0] < second:
            self._cells.append([second, {}])
            while self._cells[0][0] < second - HORIZON_S:
                self._cells.popleft()
        return self._cells[-1][1]

    def _found(self) -> float | None:
        """The share refused at low rates paced under a measured ceiling, if it is about the
        share refused at rates well above (both small): the least such share, each read as a
        count stopped at its last refusal, (k-1)/(n-1)."""
        totals: dict[tuple[int, bool], list[int]] = {}
        for _, cells in self._cells:
            for key, (answered, refused) in cells.items():
                t = totals.setdefault(key, [0, 0])
                t[0] += answered
                t[1] += refused
        kept = sorted((key, c) for key, c in totals.items() if c[1] <= FLOOD_SHARE * c[0])  # floods left out
        gap = math.ceil(math.log(RATE_GAP) / math.log(BAND))
        found = None
        for band in sorted({b for (b, _), _ in kept}):
            low = _share([c for (b, under), c in kept if b <= band and under], MIN_PACED)
            high = _share([c for (b, _), c in kept if b >= band + gap])
            if low is None or high is None:
                continue
            if high <= BACKGROUND_MAX and low <= BACKGROUND_MAX and low >= SHARE_KEPT * high:
                found = min(found if found is not None else 1.0, low)
        return found


def _share(counts: list[list[int]], min_answers: int = MIN_ANSWERS) -> float | None:
    answered, refused = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if refused < MIN_REFUSALS or answered < min_answers:
        return None
    return (refused - 1) / (answered - 1)


def _kl(q: float, p: float) -> float:
    """The Kullback-Leibler divergence of a share q observed from a share p expected."""
    p = min(max(p, 1e-9), 1 - 1e-9)
    out = q * math.log(q / p) if q > 0 else 0.0
    return out + ((1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0)
