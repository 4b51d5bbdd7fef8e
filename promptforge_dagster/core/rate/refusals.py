"""Where a refusal goes: the limit it teaches, or none.

A 429 reaches :func:`on_refused` unless it is the provider's capacity (:func:`of_capacity`:
Azure's peak load, or a shared pool's words once a 429 named the limit;
:func:`short_of_capacity` waits it out and learns nothing); a 503/529 that names no full queue
reaches :func:`overloaded`. What a refusal teaches is decided by evidence only:

* a refusal that names no limit, sent while the headers showed room on every limit they
  state, is no limit's (:class:`~promptforge_dagster.core.rate.headroom.Headroom`);
* one whose share does not follow the rate is a busy shared pool's
  (:class:`~promptforge_dagster.core.rate.background.Background`): counted as not admitted,
  and nothing is learned from it; until that share is known, one worded as a shared pool's
  (Vertex AI's pay-as-you-go "Resource exhausted, please try again later": its docs,
  "Error code 429"; a project's own quota names its metric) with no other refusal among
  the latest answers (:attr:`Background.lone`) teaches nothing while searching or steady;
* otherwise it goes to the limit it names, or, naming none, to requests until the refused
  requests are clearly larger than the admitted ones
  (:class:`~promptforge_dagster.core.rate.attribution.SilentLimit`); a refusal of tokens opens
  the tokens axis, at the token rate the lane was sending;
* ``retry-after`` pauses the lane at most :data:`RETRY_PAUSE_MAX_S` (the refused request
  waits all of it); overloads back off exponentially and lower nothing.

Each function takes the lane's :class:`~promptforge_dagster.core.rate.controller.AdaptiveController`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptforge_dagster.core.doubling import doubled
from promptforge_dagster.core.rate.messages import ADMISSION, CAPACITY, CONCURRENCY, REQUESTS, TOKENS
from promptforge_dagster.core.rate.phases import Phase
from promptforge_dagster.core.rate.signals import RateSignal
from promptforge_dagster.core.rate_controller import RateSample

if TYPE_CHECKING:
    from promptforge_dagster.core.rate.controller import AdaptiveController

OVERLOAD_PAUSE_S = 0.5  # first pause after an overload answer; doubles per consecutive one
OVERLOAD_PAUSE_MAX_S = 30.0  # ... up to this: capacity problems pass in seconds to minutes
LONE_PHASES = (Phase.DISCOVER, Phase.STEADY)  # where a lone refusal in a shared pool's words teaches nothing yet:
# a pool refusing 3% cut a cold start from 480 to 60 RPM in 14 s and ratcheted a steady estimate down each time
# (worst of 8 seeds 0.05 -> 0.70 of the ceiling; at 1%, 0.67 -> 0.91). Not climbing back nor probing, where a refusal
# is the rate's answer, heard at once: with those too, a 600 RPM limit in these words refused 1.24%, not 0.92%
RETRY_PAUSE_MAX_S = 0.25  # a refusal's retry-after pauses the lane this long at most: longer is the refused
# request's own wait (pacing answers the rest); a longer lane pause would hide the refill being measured


def of_capacity(c: AdaptiveController, signal: RateSignal) -> bool:
    """Whether a 429 is the provider's capacity, no quota's: it says so, or it is worded as a
    shared pool's after another 429 named the limit (:attr:`AdaptiveController.names_limits`,
    noted here): a provider that names its limits does not word them as its pool (Vertex AI:
    "Quota exceeded for aiplatform.googleapis.com/..." against "Resource exhausted, please try
    again later"). Before any names it, a pool's words may be the limit's own."""
    c.names_limits = c.names_limits or signal.limit in (REQUESTS, TOKENS)
    return signal.limit == CAPACITY or (signal.pooled and c.names_limits)


def short_of_capacity(c: AdaptiveController, sample: RateSample) -> None:
    """A 429 of the provider's capacity, no quota's (Azure's peak load): the refused
    request waits its own retry. One alone lowers and pauses nothing (a busy region
    refuses a share whatever the rate, as a shared pool does: a pause per refusal held a
    lane to a third of its rate at a 3% share); a run of them with no answer between
    backs off as an overload does, from the first step."""
    lost(c, sample)
    c.capacity_refused += 1
    c.overloads_in_a_row += 1
    if c.overloads_in_a_row > 1:
        back_off(c, sample.at, doublings=c.overloads_in_a_row - 2)


def overloaded(c: AdaptiveController, now: float, signal: RateSignal) -> None:
    """The provider is short of capacity: pause, doubling per overload in a row (at least
    as long as it asked), and lower nothing."""
    c.overloads_in_a_row += 1
    back_off(c, now, doublings=c.overloads_in_a_row - 1, at_least=signal.retry_after_s or 0.0)


def back_off(c: AdaptiveController, now: float, *, doublings: int, at_least: float = 0.0) -> None:
    """Pause :data:`OVERLOAD_PAUSE_S` doubled ``doublings`` times, no shorter than
    ``at_least`` and no longer than :data:`OVERLOAD_PAUSE_MAX_S`."""
    pause = doubled(OVERLOAD_PAUSE_S, doublings, cap=OVERLOAD_PAUSE_MAX_S)
    c.pause(now, max(pause, at_least), cap=OVERLOAD_PAUSE_MAX_S)


def on_refused(c: AdaptiveController, sample: RateSample, signal: RateSignal) -> None:
    room = signal.limit is None and had_room(c, sample)
    c.headroom.answered(True)
    if room:
        lost(c, sample)
        return
    if signal.limit is None and not a_limits(c, sample, signal.pooled):
        return
    limit = signal.limit or silent_limit(c, sample)
    if limit == CONCURRENCY:
        c.in_flight.refused_at(sample.in_flight)
    elif limit == TOKENS:
        if c.tokens is None:  # counted as the refusal says its limit counts (else as OpenAI does)
            c.units.basis = signal.token_basis or ADMISSION
            # at the token rate it was sending, its step begun when the refused request went: the
            # refusal that opened it is its own first, cut from there as any (and a window's dry spell)
            c.tokens = c.token_axis(c.token_rate(sample.sent_at) or 1.0, sample.sent_at)
        units = c.units.of(sample.est_tokens, sample.max_tokens)
        c.tokens.refused(sample.sent_at, sample.at, units, signal.retry_after_s, dry=ran_dry(c, signal))
    else:
        c.requests.refused(sample.sent_at, sample.at, 1.0, signal.retry_after_s, dry=ran_dry(c, signal))
    if signal.retry_after_s:
        c.pause(sample.at, signal.retry_after_s, cap=RETRY_PAUSE_MAX_S)


def a_limits(c: AdaptiveController, sample: RateSample, pooled: bool) -> bool:  # (a limit's, or the pool's)
    """Whether a refusal that names no limit is a limit's; the background's (a shared
    pool's, whatever the rate) are counted as not admitted and teach nothing. Worded as a
    shared pool's (``pooled``) with no other refusal among the latest answers, searching or
    steady, it is no limit's yet (:data:`LONE_PHASES`)."""
    found = c.background.found
    if c.background.answered(sample.sent_at, True, sample.at):
        if found or not (pooled and lone(c)):
            return True
        lost(c, sample)
        return False
    if not found:  # what the axes learned was the background's
        for axis in (c.requests, c.tokens):
            if axis is not None:
                axis.release(sample.at)
    lost(c, sample)
    return False


def ran_dry(c: AdaptiveController, signal: RateSignal) -> bool:
    """Whether a limit's refusal says its account ran dry: not where a shared pool may have
    refused it (its words, or a background found), whatever was left."""
    return not (signal.pooled or c.background.found)


def lone(c: AdaptiveController) -> bool:
    """The latest refusal came with no other among the latest answers (:attr:`Background.lone`),
    searching or steady (:data:`LONE_PHASES`), where no headers count what is left (they say
    whose it is: :class:`~promptforge_dagster.core.rate.headroom.Headroom`) and no other job
    is known to pace on the lane (its load refuses alike: lane sharing tells it apart)."""
    return (c.background.lone and c.requests.phase in LONE_PHASES and not c.headroom.counting
            and c.background.looking)


def lost(c: AdaptiveController, sample: RateSample) -> None:
    """A refusal that was no limit's: not admitted, and no dry moment either."""
    c.requests.estimator.lost(sample.sent_at, 1.0)
    if c.tokens is not None:
        c.tokens.estimator.lost(sample.sent_at, c.units.of(sample.est_tokens, sample.max_tokens))


def had_room(c: AdaptiveController, sample: RateSample) -> bool:
    """Whether a refusal that names no limit went while the headers showed room on every
    limit they state (:meth:`Headroom.had_room`)."""
    tokens = c.tokens
    return c.headroom.had_room(
        sample.sent_at, requests_since=lambda t: c.requests.estimator.requests_between(t, sample.sent_at),
        tokens_since=lambda t: tokens.estimator.sent_between(t, sample.sent_at) if tokens is not None else None,
        units=c.units.of(sample.est_tokens, sample.max_tokens))


def silent_limit(c: AdaptiveController, sample: RateSample) -> str:
    """Which limit a refusal that names none hit (:class:`SilentLimit`): once the sizes say
    tokens, what the requests axis learned was the token limit's doing."""
    before = c.silent.limit
    limit = c.silent.refused(sample.est_tokens)
    if limit != before:
        c.requests.release(sample.at)
    return limit
