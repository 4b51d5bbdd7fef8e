"""When a refusal says *wait*, not *slow down*: the account's window is spent.

A cut lowers the rate. A window counter that is spent refuses everything until it frees,
at any rate, so cutting on each of its refusals only digs the rate down to its floor. A
refusal is read as a spent window (the lane pauses until it frees) when:

* searching, the lane is refused at its floor (what the account admitted over the last
  window) or while the account admits under :data:`DRY_SHARE` of it: a bucket refills at
  least that much however dry, a window refuses all until it frees (:func:`spent_at_floor`);
* the provider stated the limit and says to retry in :data:`SPENT_WINDOW_RETRY_S` or more, or
  to a fraction of a second in :data:`SPENT_INTERVALS` of the limit's intervals or more: the
  lane is paced under the stated limit, so its window is spent (by others, or by itself);
* the lane is steady at an estimate a window gave: refused at the end of its quota. Unless,
  over :data:`BELIED_SPANS` of the window's spans since, more than :data:`BELIED_SHARE` of
  what it sent was refused (:func:`belied`): a window refuses about once per span, so the
  reading was no window's (a bucket's refill read as one); the window is forgotten, and the
  refusal is a ceiling's. So too at once when the lane had sent under :data:`UNFILLED_SHARE` of
  the window's quota over its span (:func:`unfilled`): a window counter refuses only once its
  quota is used (a bucket that holds a minute gives a first burst that reads as a window);
* it is the **look** after a cut (the one request sent alone once the cut's pause ended; a
  dry spell's second pause and later end with one too)
  and the provider says to retry in :data:`LOOK_WAIT_MIN_S` or more (Azure OpenAI: "Please
  retry after 4 seconds"): cut and paused, not even one request is admitted. Cut again on
  each look instead, a lane on Azure's 10-s windows went from 7,680 RPM to a sixth of its
  600 in 2 s and climbed back for a minute. Under a stated limit, with any retry (even
  "0.0s"): the provider said when its window frees, and the lane's first request after that
  pause went alone; still refused, the window has not freed yet (a charged refusal kept it a
  slot longer), so wait as told again, not cut (a 300 RPM lane cut twice there and climbed
  back for 13 s).

>>> look = Look()
>>> look.arm(); look.sent(10.0), look.sent(10.3)   # the first request after the arming is the look
(True, False)
>>> look.was(10.01), look.was(10.3)
(True, False)
>>> spent_at_floor(2.0, floor=1.0, admitted=0.2), spent_at_floor(2.0, floor=1.0, admitted=1.0)
(True, False)
>>> belied(sent=40, refusals=10, spans=4.0), belied(sent=400, refusals=4, spans=4.0)
(True, False)
>>> spent(stated=False, retry_after_s=4.0, at_window_estimate=False, looked=True)
True
>>> spent(stated=False, retry_after_s=1.0, at_window_estimate=False, looked=True)   # any short wait
False
>>> spent(stated=True, retry_after_s=1.0, at_window_estimate=False, looked=False)  # ... under a stated limit too
False
>>> spent(stated=True, retry_after_s=0.0, at_window_estimate=False, looked=True)   # ... but its look: wait as told
True

:func:`verdict` says it as one of three: wait (the window is spent), slow down (a ceiling's
refusal), or nothing new (a request sent before the rate last changed).
"""

from __future__ import annotations

import enum

from promptforge_dagster.core.rate.estimator import CeilingEstimator

DRY_SHARE = 0.5  # searching, refused while admitting under half the floor: a spent window (a bucket admits
# about the floor again however dry; a window refuses all until it frees, at any rate)
SPENT_WINDOW_RETRY_S = 2.0  # refused under a stated limit with a retry this long: the window is spent, wait it out
# (not at 1 s: Anthropic rounds its retry-after up to whole seconds, so 1 s is any short wait; three jobs on
# one account each paused 1 s on each refusal instead of stepping back to their share, and refused 3%)
SPENT_INTERVALS = 10.0  # ... or with a retry to a fraction of a second (OpenAI's "Please try again in 1.558s", not a
# whole second rounded up) this many of the stated limit's intervals long: the provider counts that many requests
# to wait for (a 6,000 RPM lane refused at the limit in a 10-s window its flood spent, told 1.56 s, cut to 158 RPM)
LOOK_WAIT_MIN_S = 2.0  # a cut's look refused with a retry this long: the window is spent (retries are rounded
# up to whole seconds, Azure's and Anthropic's: 1 s is any short wait, a bucket's or a 1-s window's)
BELIED_SPANS = 3.0  # a window's estimate is judged once this many of its spans passed (a pause is at most one)
BELIED_SHARE = 0.05  # ... refusing more than this share of what was sent meanwhile: no window's (a 30,000 TPM
# bucket read as a 5.5-s window of 62,000 TPM refused 30% of its requests, each refusal waited out, never cut)
BELIED_MIN = 3  # ... and at least this many refusals (a few are noise at ~25 requests a minute)
UNFILLED_SHARE = 0.5  # refused with under this share of a window's quota sent over its span: no window's (a
# window counter refuses only once its quota is used; a bucket holding a minute, read as an 18-s window of 70 at
# 62 RPM, refused 2 of every 3 requests for a minute, each waited out, at 3.5x its ceiling)
UNFILLED_MIN = 3  # ... and this many requests short of it at least (a 1-s window's quota is a few requests)
LOOK_MATCH_S = 0.05  # a refusal sent this close to the look is the look's (the clock read at the send and at
# the pacer differ by the event loop's turn; the next request goes a settle time, 0.25 s or more, later)


class Look:
    """The first request after a cut (or after a dry spell's second pause) goes alone; the
    caller then pauses to hear of it."""

    def __init__(self) -> None:
        self.armed = False
        self.sent_at: float | None = None

    def arm(self) -> None:
        """A cut: the next request is the look."""
        self.armed = True

    def sent(self, now: float) -> bool:
        """A request went at ``now``: whether it was the look."""
        if not self.armed:
            return False
        self.armed, self.sent_at = False, now
        return True

    def was(self, sent_at: float) -> bool:
        """Whether a request sent at ``sent_at`` was the latest look."""
        return self.sent_at is not None and abs(sent_at - self.sent_at) <= LOOK_MATCH_S


def spent(*, stated: bool, retry_after_s: float | None, at_window_estimate: bool, looked: bool,
          interval_s: float | None = None) -> bool:
    """Whether a refusal says the account's window is spent (see the module); ``interval_s``:
    the time between two requests at the stated limit.

    >>> spent(stated=True, retry_after_s=1.558, at_window_estimate=False, looked=False, interval_s=0.01)
    True
    >>> spent(stated=True, retry_after_s=1.0, at_window_estimate=False, looked=False, interval_s=0.01)  # whole
    False
    """
    wait = retry_after_s or 0.0
    return ((stated and told_spent(retry_after_s, interval_s)) or at_window_estimate
            or (looked and wait >= LOOK_WAIT_MIN_S) or (looked and stated and retry_after_s is not None))


def told_spent(retry_after_s: float | None, interval_s: float | None) -> bool:
    """Under a stated limit, whether the retry says its window is spent: :data:`SPENT_WINDOW_RETRY_S`
    or more, or to a fraction of a second :data:`SPENT_INTERVALS` of the limit's intervals long."""
    wait = retry_after_s or 0.0
    precise = wait % 1.0 > 0.0 and interval_s is not None and wait >= SPENT_INTERVALS * interval_s
    return wait >= SPENT_WINDOW_RETRY_S or precise


class Verdict(str, enum.Enum):
    WAIT = "wait"  # the window is spent: pause until it frees
    SLOW = "slow"  # over the ceiling: the transition table's REFUSED
    STALE = "stale"  # sent before the rate last changed: says nothing new


def verdict(*, sent_at: float, step_start: float, stated: bool, retry_after_s: float | None,
            at_window_estimate: bool, looked: bool, interval_s: float | None = None) -> Verdict:
    """What the refusal of a request sent at ``sent_at`` says, the lane's rate set at
    ``step_start`` (the other arguments as :func:`spent`'s). One sent before the rate changed
    says nothing new, unless the provider states the limit and when it frees: the refusal that
    told the limit restarted the step, its retry is the window's now.

    >>> verdict(sent_at=1.0, step_start=2.0, stated=False, retry_after_s=None, at_window_estimate=False, looked=False)
    <Verdict.STALE: 'stale'>
    >>> verdict(sent_at=1.0, step_start=2.0, stated=True, retry_after_s=20.0, at_window_estimate=False, looked=False)
    <Verdict.WAIT: 'wait'>
    >>> verdict(sent_at=3.0, step_start=2.0, stated=False, retry_after_s=None, at_window_estimate=False, looked=False)
    <Verdict.SLOW: 'slow'>
    """
    if sent_at < step_start and not (stated and told_spent(retry_after_s, interval_s)):
        return Verdict.STALE
    if spent(stated=stated, retry_after_s=retry_after_s, looked=looked, at_window_estimate=at_window_estimate,
             interval_s=interval_s):
        return Verdict.WAIT
    return Verdict.SLOW


def spent_at_floor(per_s: float, *, floor: float, admitted: float) -> bool:
    """Searching and refused at ``per_s``: whether the window is spent, the lane at or below its
    ``floor`` or the account ``admitted`` (per second, just now) under :data:`DRY_SHARE` of it."""
    return per_s <= floor * 1.001 or admitted < floor * DRY_SHARE


def belied(*, sent: float, refusals: float, spans: float) -> bool:
    """Whether the refusals since an estimate a window gave (``spans`` of the window ago,
    ``refusals`` of ``sent`` requests) belie it: a window refuses once per span at most."""
    return spans >= BELIED_SPANS and refusals >= BELIED_MIN and refusals > BELIED_SHARE * sent


def belied_since(history: CeilingEstimator, since: float, until: float, span_s: float) -> bool:
    """:func:`belied`, read from the send ``history`` between ``since`` (when the estimate was
    taken) and ``until``, the window being ``span_s`` long."""
    if until <= since:
        return False
    refused = (history.sent_between(since, until) - (history.net_between(since, until) or 0.0))
    return belied(sent=history.requests_between(since, until), refusals=refused / history.units_per_request,
                  spans=(until - since) / span_s)


def unfilled(history: CeilingEstimator, sent_at: float, *, span_s: float, per_s: float) -> bool:
    """Whether a request sent at ``sent_at`` was refused though what the lane sent over the
    ``span_s`` before it (refused or not) is well under the quota a window of that span holds
    at ``per_s``: a window counter would have admitted it (a sliding window counts those
    sends, a fixed one no more than them).

    >>> h = CeilingEstimator()
    >>> for i in range(60):
    ...     h.sent(i * 1.0, 1.0)
    >>> unfilled(h, 59.5, span_s=60.0, per_s=1.0), unfilled(h, 59.5, span_s=20.0, per_s=3.0)
    (False, True)
    """
    quota = per_s * span_s
    sent = history.sent_between(sent_at - span_s, sent_at)
    return sent < UNFILLED_SHARE * quota and quota - sent >= UNFILLED_MIN * history.units_per_request


def window_belied(history: CeilingEstimator, *, since: float, sent_at: float, span_s: float, per_s: float) -> bool:
    """Whether a refusal of a request sent at ``sent_at``, steady since ``since`` at a window's
    estimate (``per_s`` over ``span_s``), says the reading was no window's: :func:`belied_since`
    or :func:`unfilled`."""
    return (belied_since(history, since, sent_at, span_s)
            or unfilled(history, sent_at, span_s=span_s, per_s=per_s))
