"""The provider matrix on a fake clock: any rate controller against any provider behaviour.

Each behaviour is a switch and they combine: how the account counts (``limiter``: token
bucket, sliding 60-s window, fixed minute), whether refused requests are charged
(``refusals_count``), a concurrency limit with a queue (a self-hosted vLLM/TGI server,
``concurrency``/``queue`` in :class:`AccountLimits`), how refusals are worded (``style``:
openai, azure, anthropic, gemini, vertex, vllm, bare; ``headers`` on or off), what TPM counts
(``tokens_basis``: prompt plus ``max_tokens`` at admission, the prompt only, or the answer's
tokens reserved as ``max_tokens``), refusals of a busy shared pool whatever the rate
(``pool_refusals``), and latency that grows with the answer's
length (``latency_s + s_per_token x completion tokens``) and with a server's load. A refusal
comes back after ``refusal_s`` (the network's round trip and the provider's gateway: 10-30 ms
by default, as from a server on the same host; a hosted API over the internet takes 50-300 ms).
The client can be made slow (``client_s_per_request``: CPU per send). Refusals and answers go
through the same parsing as production (``classify``, ``parse_signal``). Nothing sleeps.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable

from promptforge_dagster.core.outcome import OutcomeKind, classify
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.simulator.account import AccountLimits, SimulatedAccount
from promptforge_dagster.simulator.styles import message_of, refusal, success_headers

EPOCH = 1_790_000_000.0  # wall-clock seconds at fake time 0 (Anthropic's resets are timestamps)
REFUSAL_S = 0.02  # a refusal's round trip (uniform over 0.5-1.5x of it): a server on the same host, the
# simulator's over loopback; a hosted API's 429 crosses the internet and its gateway, 50-300 ms
WAKE_LATE_S = 0.002  # a client told to wait wakes up to this late (uniform): an event loop's timers fire
# ~1 ms late on average, as measured over real HTTP (a pacer that lost it ran 2.4% under its rate)


@dataclass(frozen=True)
class Request:
    prompt_tokens: int = 100
    max_tokens: int = 64
    completion_tokens: int = 32

    @property
    def charged(self) -> int:  # what OpenAI counts against TPM at admission
        return self.prompt_tokens + self.max_tokens


@dataclass
class Trace:
    """Per-second counts of what the provider did, and the controller's allowance."""

    ok: dict[int, int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)
    ok_tokens: dict[int, int] = field(default_factory=dict)
    timed_out: dict[int, int] = field(default_factory=dict)  # admitted, no answer within the client's deadline
    max_in_flight: int = 0

    def _add(self, table: dict[int, int], t: float, n: int = 1) -> None:
        table[int(t)] = table.get(int(t), 0) + n

    def between(self, t0: float, t1: float) -> tuple[int, int, int]:
        keys = range(int(t0), int(t1))
        return (sum(self.ok.get(k, 0) for k in keys), sum(self.refused.get(k, 0) for k in keys),
                sum(self.ok_tokens.get(k, 0) for k in keys))

    def goodput_share(self, t0: float, t1: float, per_minute: float) -> float:
        return self.between(t0, t1)[0] / (per_minute / 60.0 * (t1 - t0))

    def token_share(self, t0: float, t1: float, tpm: float) -> float:
        return self.between(t0, t1)[2] / (tpm / 60.0 * (t1 - t0))

    def refused_share(self, t0: float, t1: float) -> float:
        """Refused (and timed-out: failed as surely) over all answers between t0 and t1."""
        ok, refused, _ = self.between(t0, t1)
        refused += sum(self.timed_out.get(k, 0) for k in range(int(t0), int(t1)))
        return refused / max(1, ok + refused)


def run_matrix(
    controller,
    limits: AccountLimits,
    duration: float,
    *,
    seed: int = 0,
    style: str = "bare",
    headers: bool = False,
    latency_s: float = 0.3,
    s_per_token: float = 0.0,
    request: Callable[[random.Random], Request] = lambda rng: Request(),
    demand: Callable[[float], bool] = lambda t: True,
    client_s_per_request: float = 0.0,
    max_in_flight: int | None = None,
    wake_late_s: float = WAKE_LATE_S,
    prompt_estimate: float = 1.0,
    timeout_s: float | None = None,
    slowdown: Callable[[float], float] = lambda t: 1.0,
    refusal_s: float = REFUSAL_S,
) -> Trace:
    """Run ``duration`` fake seconds; ``demand(t)`` says whether the client has work at t.
    ``prompt_estimate``: the client's estimate of a prompt's tokens over the provider's count
    (characters / 4 reads CJK text or code low, padded prose high). ``timeout_s``: the client's deadline
    for an answer (``--timeout``); past it the request fails as transient and the server drops it.
    ``slowdown(t)``: how many times longer than ``latency_s`` the model answers at t (a hosted API's
    slow spell, whatever the lane sends). ``refusal_s``: how long a refusal takes to come back."""

    def estimate(req: Request) -> int:  # what the client believes a request costs: its prompt estimate + max_tokens
        return max(1, round(req.prompt_tokens * prompt_estimate)) + req.max_tokens

    rng = random.Random(seed)
    late = random.Random(seed + 1_000)  # its own stream: the requests and answers stay those of the seed
    account = SimulatedAccount(limits, now=0.0, seed=seed)
    trace = Trace()
    events: list = []
    seq = 0
    in_flight = 0
    wake_at = 0.0
    client_free_at = 0.0

    def push(t, kind, payload=None):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    def limit() -> int:
        bound = controller.in_flight_limit() if hasattr(controller, "in_flight_limit") else 10_000
        return min(bound, max_in_flight) if max_in_flight else bound

    push(0.0, "wake")
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now > duration:
            break
        if kind == "done":
            in_flight -= 1
            sent_at, adm, req, flying, gave_up = payload
            epoch = EPOCH + now
            if adm.ok and gave_up:  # the client's deadline passed first: it gave up, and the server dropped it
                account.release(now, 0)
                trace._add(trace.timed_out, now)
                status, message, hdrs = None, "", {}
            elif adm.ok:
                account.release(now, limits.token_refund(req.max_tokens, req.completion_tokens))
                trace._add(trace.ok, now)
                used = (limits.token_charge(req.prompt_tokens, req.max_tokens)  # what the TPM limit counted
                        - limits.token_refund(req.max_tokens, req.completion_tokens))
                trace._add(trace.ok_tokens, now, used)
                status, message = 200, ""
                hdrs = (success_headers(style, adm.headers, epoch, limits.tokens_basis, requests_today=account.admitted)
                        if headers else {})
            else:
                trace._add(trace.refused, now)
                status, body, hdrs = refusal(style, adm, now_epoch=epoch, headers=headers,
                                             tokens_basis=limits.tokens_basis, requests_today=account.admitted)
                message = message_of(body)
            outcome = classify(status, message) if status != 200 else OutcomeKind.SUCCESS
            signal = parse_signal(status, message, hdrs, epoch)
            controller.record(RateSample(sent_at, now, outcome, estimate(req), estimate(req),
                                         signal.headers, signal=signal, in_flight=flying, max_tokens=req.max_tokens,
                                         usage=(req.prompt_tokens, req.completion_tokens)
                                         if adm.ok and not gave_up else None))
        elif kind == "wake" and now < wake_at - 1e-12:
            continue
        while demand(now) and in_flight < limit():
            if now < client_free_at:  # the client is still busy with its previous send
                wake_at = client_free_at
                push(wake_at, "wake")
                break
            req = request(rng)
            wait = controller.acquire(now, estimate(req), req.max_tokens)
            if wait > 0:
                wake_at = now + max(wait, 1e-6) + late.uniform(0.0, wake_late_s)
                push(wake_at, "wake")
                break
            adm = account.admit(now, limits.token_charge(req.prompt_tokens, req.max_tokens))
            in_flight += 1
            trace.max_in_flight = max(trace.max_in_flight, in_flight)
            client_free_at = now + client_s_per_request
            if adm.ok:  # answers take the model's time, longer under a busy server's load
                delay = (latency_s + s_per_token * req.completion_tokens) * rng.uniform(0.8, 1.25) * slowdown(now)
                delay *= max(1.0, account.load())
            else:  # refusals come back after the round trip: no model runs for them
                delay = refusal_s * rng.uniform(0.5, 1.5)
            gave_up = timeout_s is not None and delay > timeout_s
            push(now + (timeout_s if gave_up else delay), "done", (now, adm, req, in_flight, gave_up))
        else:
            if not demand(now):
                wake_at = now + 0.1
                push(wake_at, "wake")
    return trace
