"""The window a counter counts over, read from the end of a dry spell.

A window counter (a sliding or fixed window: Gemini's per-minute quotas, Azure OpenAI's RPM
evaluated over 1- or 10-s intervals) admits everything until the window's quota is used,
then nothing until the window frees. So a dry spell that ends says two things: the window
is about as long as from the first request it admitted to the first one it admitted again,
and the ceiling is what it admitted before it went dry, over that span. Until one is read
the window is a minute, the longest span per-minute limits are counted over.

The fill is read from the first request admitted after the previous episode of refusals (a
window that reset since then counts afresh), within the span known so far. Only a shorter
span is taken: a lane that sends without pause finds the oldest request of a window one
window back, so a later dry spell reads at least the span already known.

A reading from the lane's first requests (:attr:`WindowLearner.from_start`) may span a fixed
window's reset the lane never saw: its span is too long and its ceiling a lower bound. A later
dry spell (a probe that spends a window) reads one again; over the span already known, a fill
longer than a window would read high, so above the estimate the reading's own span
(:attr:`WindowLearner.read_s`) is what counts.

>>> w = WindowLearner()
>>> w.refused(5.0, first_of_episode=True)
>>> w.went_dry(lambda t0, t1: max(t0, 0.0), now=5.1, dry_at=5.0)   # admitted from 0 s until dry at 5 s
>>> w.resumed(sent_at=10.0, admitted=lambda t0, t1: 100.0)   # 100 admitted, free again after 10 s
10.0
>>> w.span_s, w.known
(10.0, True)
"""

from __future__ import annotations

import math
from typing import Callable

from promptforge_dagster.core.doubling import doubled

MINUTE_S = 60.0  # the span per-minute limits are counted over: what was admitted in it is always safe again
MIN_WINDOW_S = 1.0  # the shortest interval a provider documents counting over (Azure OpenAI: 1 s)
READ_BACK_S = 0.05  # the send history's grain: the first admitted request is read to this
MIN_FILL_REQUESTS = 3  # a window's quota is read only from this many requests admitted before it went dry: one
# or two are a bucket that holds one (a 10 RPM bucket charging refusals, dry 37 s, was read as a 37-s window of one)
DRY_PAUSE_S = 0.5  # refused at the floor: pause this long, doubling per refusal (a window must pass)
CAPPED_PAUSES = 2  # a dry spell's pauses end when its window frees by the span read; refused after that
# many, the span read is wrong (a fixed minute's reset read as its span): the pauses double instead
RETRY_GRAIN_S = 0.05  # a window freeing when the provider said is looked at this much later: a retry rounded to
# a tenth ("Please retry in 39.6s") is up to half a tenth early (a 10 RPM lane looked 16 ms before its first
# request aged out: refused)
DRY_PAUSE_MAX_S = 16.0  # ... up to this: a minute-long dry spell is probed ~7 times, each a refusal (and never
# past a window after the oldest request it admitted, when the window has freed)
UNSEEN_RESET_MIN = 2.0  # requests a window read from the lane's first requests falls short of a stated limit over
# its span before the reading is taken for one across a reset unseen (a 69 RPM limit counted over fixed 10-s windows
# holds 11 requests, not 11.5: read right, half a request short; paced at the stated limit instead, refused every 30 s)


class WindowLearner:
    def __init__(self) -> None:
        self.span_s = MINUTE_S
        self.known = False  # a dry spell ended as a window's does: the account counts over ``span_s``
        self._fill: tuple[float, float] | None = None
        self.from_start = False  # the latest reading's fill began with the lane's first requests (see resumed)
        self.last_refused: float | None = None  # the latest refusal's send time
        self._episode_after: float | None = None  # the last refusal before this episode of refusals
        self.read_s = MINUTE_S  # the latest reading's own span, from its fill's first request to the window freeing

    def refused(self, sent_at: float, *, first_of_episode: bool) -> None:
        if first_of_episode:
            self._episode_after = self.last_refused
        self.last_refused = sent_at

    def went_dry(self, first_admitted: Callable[[float, float], float | None], *, now: float, dry_at: float) -> None:
        """A dry spell began (its first refusal was sent at ``dry_at``): the window's quota went
        to what was admitted since the first request ``first_admitted(t0, t1)`` finds after
        the previous episode, within the span known so far."""
        start = max(now - self.span_s, self._episode_after if self._episode_after is not None else -math.inf)
        oldest = first_admitted(start, now)
        self._fill = (oldest, dry_at) if oldest is not None and oldest < dry_at else None
        self.from_start = self._episode_after is None

    def forget(self) -> None:
        """What was read was no window's: the account is not known to count over one."""
        self.span_s, self.known = MINUTE_S, False

    def frees_at(self, now: float, *, pauses: int, retry_after_s: float | None,
                 oldest_admitted: float | None) -> float:
        """When to look again after the ``pauses``-th refusal of a dry spell: when the provider
        said, else after a pause doubling from :data:`DRY_PAUSE_S`, but no later than a window
        after ``oldest_admitted``, the oldest request admitted in the last one (a sliding
        window frees it then, a fixed one has reset).

        >>> WindowLearner().frees_at(10.0, pauses=3, retry_after_s=None, oldest_admitted=None)
        12.0
        >>> WindowLearner().frees_at(10.0, pauses=1, retry_after_s=39.6, oldest_admitted=None)  # said to a tenth
        49.65
        >>> WindowLearner().frees_at(10.0, pauses=6, retry_after_s=None, oldest_admitted=-45.0)
        15.05

        Refused again after such a pause, the span read was too short (a job that began late
        in a fixed minute read the rest of it as the whole): a capped pause is then at least
        :data:`DRY_PAUSE_S`, not a storm of refusals as the lane's own sends age out:

        >>> WindowLearner().frees_at(10.0, pauses=2, retry_after_s=None, oldest_admitted=-49.9)
        10.55

        Refused after that too, a window read at the end of a dry spell did not free as its
        span says: the pause doubles (a lane on a fixed minute read as 23.6 s looked every
        0.55 s for 30 s, two refusals each time, as its own sends aged out of 23.6 s). A minute,
        the span when none was read, is always right (no per-minute limit counts over more):

        >>> w = WindowLearner()
        >>> w.frees_at(10.0, pauses=3, retry_after_s=None, oldest_admitted=-49.9)
        10.55
        >>> w.span_s, w.known = 20.0, True
        >>> w.frees_at(10.0, pauses=3, retry_after_s=None, oldest_admitted=-9.9)
        12.0
        >>> w.frees_at(10.0, pauses=5000, retry_after_s=None, oldest_admitted=None)  # hours dry: still the cap
        26.0
        """
        if retry_after_s:
            return now + min(MINUTE_S, retry_after_s) + RETRY_GRAIN_S
        until = now + doubled(DRY_PAUSE_S, pauses - 1, cap=DRY_PAUSE_MAX_S)
        if oldest_admitted is not None and (pauses <= CAPPED_PAUSES or not self.known):
            soonest = now + (DRY_PAUSE_S if pauses > 1 else 0.0)
            until = min(until, max(soonest, oldest_admitted + self.span_s) + READ_BACK_S)
        return until

    def resumed(self, sent_at: float, admitted: Callable[[float, float], float | None],
                units_per_request: float = 1.0) -> float | None:
        """A request sent at ``sent_at`` was admitted after the dry spell: the window freed.
        Returns the ceiling per second this window shows (None if the fill was not seen, or
        was under :data:`MIN_FILL_REQUESTS`: no window is read then). When the fill began with
        the lane's first requests (:attr:`from_start`), a fixed window may have reset anywhere
        in it, unseen: the span read is then as long as the window or longer by up to one, and
        the ceiling read is a lower bound (a 10-s window began 3.9 s before the lane's first
        request read as 13.9 s, at 0.77 of its quota's rate).

        >>> w = WindowLearner()
        >>> w.refused(5.0, first_of_episode=True)
        >>> w.went_dry(lambda t0, t1: max(t0, 0.0), now=5.1, dry_at=5.0)
        >>> w.resumed(sent_at=37.0, admitted=lambda t0, t1: 1.0), w.known   # one request admitted: a bucket's
        (None, False)
        """
        if self._fill is None:
            return None
        start, dry_at = self._fill
        self._fill = None
        filled = admitted(start - READ_BACK_S, dry_at) or 0.0
        if filled < MIN_FILL_REQUESTS * units_per_request:
            return None
        self.read_s = max(MIN_WINDOW_S, sent_at - start)
        self.span_s = min(self.span_s, self.read_s)
        self.known = True
        return filled / self.span_s


def against_stated(per_s: float, span_s: float, *, stated: float, margin: float, unit: float = 1.0) -> float:
    """The ceiling to take from a window read from the lane's first requests (:attr:`WindowLearner.from_start`)
    at ``per_s`` over ``span_s``, when the provider stated the limit, ``stated`` per second: the
    stated limit where the reading agrees with it within ``margin`` (the provider's count is
    exact), or falls short of it by :data:`UNSEEN_RESET_MIN` requests (of ``unit``) or more (a
    fixed window reset unseen in the fill: the reading is a lower bound); else the reading (a
    window holds whole requests, and a fraction of one is not a reset).

    >>> against_stated(19.9, 10.0, stated=20.0, margin=0.03)   # agrees with it
    20.0
    >>> against_stated(1.1, 10.0, stated=1.15, margin=0.03)    # half a request short: whole requests
    1.1
    >>> against_stated(14.0, 14.0, stated=20.0, margin=0.03)   # 84 short: a reset unseen
    20.0
    """
    short = (stated - per_s) * span_s
    if per_s >= stated * (1.0 - margin) or short >= UNSEEN_RESET_MIN * unit:
        return stated
    return per_s
