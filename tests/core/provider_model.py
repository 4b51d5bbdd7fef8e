"""A discrete-event model of a client and a token-bucket provider on a fake clock.

Drives any RateController against SimulatedAccount with latency, headers or none, and
demand that is unlimited or comes in bursts. Nothing sleeps: time is a number.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.core.rate.headers import parse_rate_headers
from promptforge_dagster.simulator.account import AccountLimits, SimulatedAccount


@dataclass
class Trace:
    """Per-second counts of what the provider did."""

    ok: dict[int, int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)
    ok_tokens: dict[int, int] = field(default_factory=dict)

    def between(self, t0: float, t1: float) -> tuple[int, int, int]:
        keys = range(int(t0), int(t1))
        return (sum(self.ok.get(k, 0) for k in keys), sum(self.refused.get(k, 0) for k in keys),
                sum(self.ok_tokens.get(k, 0) for k in keys))

    def goodput_share(self, t0: float, t1: float, ceiling_per_min: float) -> float:
        ok, _, _ = self.between(t0, t1)
        return ok / (ceiling_per_min / 60.0 * (t1 - t0))

    def token_share(self, t0: float, t1: float, tpm: float) -> float:
        return self.between(t0, t1)[2] / (tpm / 60.0 * (t1 - t0))

    def refused_share(self, t0: float, t1: float) -> float:
        ok, refused, _ = self.between(t0, t1)
        return refused / max(1, ok + refused)


def run_model(
    controller,
    limits: AccountLimits,
    duration: float,
    *,
    seed: int = 0,
    latency: float = 0.3,
    headers: bool = False,
    says_limit: bool = True,
    max_in_flight: int = 512,
    tokens: Callable[[random.Random], int] = lambda rng: 100,
    demand: Callable[[float], bool] = lambda t: True,
) -> Trace:
    """Run ``duration`` seconds; ``demand(t)`` says whether the client has work at t.

    ``headers``: the provider sends x-ratelimit-* and retry-after; ``says_limit``: its 429
    message names the limit hit ("tokens per min"), as OpenAI's does even without headers.
    """
    rng = random.Random(seed)
    account = SimulatedAccount(limits, now=0.0)
    trace = Trace()
    events: list = []
    seq = 0
    now = 0.0
    in_flight = 0
    wake_at = 0.0

    def push(t, kind, payload=None):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    push(0.0, "wake")
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now > duration:
            break
        if kind == "done":
            in_flight -= 1
            sent_at, adm, tok = payload
            sec = int(now)
            if adm.ok:
                trace.ok[sec] = trace.ok.get(sec, 0) + 1
                trace.ok_tokens[sec] = trace.ok_tokens.get(sec, 0) + tok
                outcome_kind = OutcomeKind.SUCCESS
            else:
                trace.refused[sec] = trace.refused.get(sec, 0) + 1
                outcome_kind = OutcomeKind.RATE_LIMITED
            hdrs = dict(adm.headers) if headers else {}
            if headers and not adm.ok:
                hdrs["retry-after-ms"] = str(max(1, int(adm.retry_after_s * 1000)))
            controller.record(RateSample(sent_at, now, outcome_kind, tok, tok, parse_rate_headers(hdrs),
                                         limit=(adm.limit if headers or says_limit else None)))
        elif kind == "wake" and now < wake_at - 1e-12:
            continue
        # send as much as the controller allows
        while in_flight < max_in_flight and demand(now):
            tok = tokens(rng)
            wait = controller.acquire(now, tok)
            if wait > 0:
                wake_at = now + max(wait, 1e-6)
                push(wake_at, "wake")
                break
            adm = account.admit(now, tok)
            in_flight += 1
            # refusals come back at once, completions after the model's latency, as with real providers
            delay = latency * rng.uniform(0.7, 1.5) if adm.ok else 0.02 * rng.uniform(0.5, 1.5)
            push(now + delay, "done", (now, adm, tok))
        else:
            if not demand(now):
                wake_at = now + 0.1
                push(wake_at, "wake")
    return trace
