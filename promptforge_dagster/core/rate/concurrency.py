"""How many requests may be in flight: Little's law, a byte budget, a learned ceiling.

A lane allowed ``r`` requests a second whose answers take ``L`` seconds holds ``r x L``
requests in flight; a fixed bound caps the rate at ``bound / L`` (64 in flight with 6-s
answers can never exceed 640 RPM). So the bound follows the allowed rate and the
observed latency, with headroom, within a byte budget for prompts in flight and a hard
maximum. A self-hosted server (vLLM, TGI) limits concurrency rather than rate: when it
(or its gateway) says its queue is full, the bound learns that ceiling (a little under what
was in flight when refused); one that queues without a word is read from its answers'
times (:mod:`~promptforge_dagster.core.rate.queueing`). Nothing refuses a rate it cannot
serve, so an adaptive lane is also held to what its answers have *shown* the server holds:
:data:`BLIND_IN_FLIGHT` before they show more, then :data:`EVIDENCE_GAIN` times it. Not
before any answer once a rate limit refused the lane (the controller says so): a limit paces
it, and a reasoning model's first answers may be a minute away; nor ever on a hosted API
(:mod:`~promptforge_dagster.core.rate.hosted`), whose limits refuse what it cannot serve.

>>> c = InFlightLimit(Concurrency())
>>> for _ in range(20):
...     c.observe_latency(6.0)
>>> c.limit(rate_per_s=50.0)   # 3,000 RPM x 6 s x 1.5
450
>>> c.limit(rate_per_s=500.0), c.limit(rate_per_s=500.0, shown=0.0), c.limit(rate_per_s=500.0, shown=200.0)
(4500, 1000, 1600)
>>> c.refused_at(in_flight=100); c.limit(rate_per_s=50.0)
90
"""

from __future__ import annotations

import math
from collections import deque

from promptforge_dagster.core.rate.config import Concurrency

LATENCY_SAMPLES = 256  # recent answers kept for the latency quantile: a few seconds of a busy lane
RESORT_EVERY = 16  # answers between recomputations of the quantile once it has many (read on every send);
# while it has few, every answer moves it (a 16th of the samples at most, so the first answers count at once)
BLIND_IN_FLIGHT = 1_000  # in flight before the answers show more: nothing tells a server that queues from a
# hosted API with long answers until it answers (vLLM served directly, 256 slots, 5-s answers: 20,000 in flight, 54%
# of a 5-minute run's attempts timed out; 14% with a client spending 3.5 ms a send, as LiteLLM does). It costs the
# first answer time of a fast account with long answers (3,000 RPM at 20 s, 10,000 at 6 s; our client's pool is
# sized to Concurrency.hard_max, so the cost is real over HTTP too), until a rate limit refuses the lane: 20,000 RPM with
# 20-s answers 0.64 -> 0.78 of its first 2 minutes. The cost of that: a gateway whose rate limit is far above the
# server it fronts (60,000 RPM before 32 slots of 20-s answers) floods its queue before the first answer (its last
# 2 minutes 0.833 -> 0.630 served, 7.5% -> 37% timed out; at 10,000 RPM 0.812 -> 0.906, 7.7% -> 0%)
EVIDENCE_GAIN = 8.0  # ... and past it, 8x what the answers showed the server holds: a server that queues keeps a
# queue of 7 batches (answers in 8 unloaded answer times: 40 s at 5 s, within the 120-s deadline up to 15 s), while
# a hosted API's answers, showing what the lane sent an answer time ago, let it climb 8x per answer time (2x cost a
# 10,000 RPM account with 20-s answers 0.16 of its first 2 minutes)
UNANSWERED_LATENCY_S = 30.0  # assumed before any answer: long completions take this long (Little's law then)


class InFlightLimit:
    """The in-flight bound of one lane (or a whole job, for the byte budget)."""

    def __init__(self, config: Concurrency, cap: int | None = None) -> None:
        self.config = config
        self.cap = cap  # the user's optional --max-in-flight
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._quantile: float | None = None
        self._unsorted = 0  # answers since the quantile was last computed
        self.ceiling: float | None = None  # learned from a server that said "queue full", or that queued

    def observe_latency(self, seconds: float) -> None:
        self._latencies.append(max(0.0, seconds))
        self._unsorted += 1

    def latency(self) -> float | None:
        """A typical slow answer's latency; None before any answer has come back."""
        if not self._latencies:
            return None
        if self._quantile is None or self._unsorted >= min(RESORT_EVERY, max(1, len(self._latencies) // 16)):
            ordered = sorted(self._latencies)
            self._quantile = ordered[min(len(ordered) - 1, int(self.config.latency_quantile * len(ordered)))]
            self._unsorted = 0
        return self._quantile

    def refused_at(self, in_flight: int) -> None:
        """The server refused with ``in_flight`` requests out: its concurrency is under that."""
        bound = max(float(self.config.min_in_flight), in_flight * self.config.conc_cut)
        self.ceiling = bound if self.ceiling is None else min(self.ceiling, bound)

    def limit(self, rate_per_s: float | None, prompt_bytes: float = 0.0, shown: float | None = None) -> int:
        """The bound now: Little's law (unbounded rate: the hard maximum), what the answers
        have ``shown`` the server holds (:data:`BLIND_IN_FLIGHT` at least; None: no such
        bound, a fixed rate the user set, or a rate limit refused the lane: a server that
        queues refuses nothing, and a limit paces it), the learned ceiling, the byte budget
        at ``prompt_bytes`` per request, the user's cap."""
        cfg = self.config
        latency = self.latency()
        if latency is None:  # no answer yet: allow for long ones (the pacer still bounds the rate)
            latency = UNANSWERED_LATENCY_S
        little = cfg.hard_max if rate_per_s is None else rate_per_s * latency * cfg.headroom
        bound = min(float(cfg.hard_max), max(float(cfg.min_in_flight), math.ceil(little)))
        if shown is not None:
            bound = min(bound, max(float(BLIND_IN_FLIGHT), EVIDENCE_GAIN * shown))
        if self.ceiling is not None:
            bound = min(bound, self.ceiling)
        if prompt_bytes > 0:
            bound = min(bound, max(float(cfg.min_in_flight), cfg.byte_budget / prompt_bytes))
        if self.cap is not None:
            bound = min(bound, float(self.cap))
        return max(1, int(bound))
