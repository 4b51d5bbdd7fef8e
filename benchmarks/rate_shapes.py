"""Account shapes outside the goals' matrix, on the fake clock: is the engine right only where
it was tuned? Each is a real provider's documented behaviour or a plausible variant of one
(../shared/PROVIDERS.md): per-second quantization (OpenAI "60,000 RPM may be enforced as
1,000 requests/second"; Azure OpenAI's 1- and 10-s intervals), buckets holding far less or
far more than the simulator's 2-s default (up to a whole minute), a sliding window shorter
than a minute.

Prints the mean and the worst of 8 seeds per shape over 2 minutes from a cold start (a fixed
window begins anywhere before the first request, spread over the seeds), against
the steady goal (>= 0.95 of the ceiling, <= 1% refused), or the TPM goal for token limits
(>= 0.90 of the tokens the limit counts, <= 2% refused).

    uv run python benchmarks/rate_shapes.py [NAME-FILTER ...]
"""

from __future__ import annotations

import sys

from common import ROOT  # noqa: F401 - puts the project on sys.path

from promptforge_dagster.simulator.account import AccountLimits
from tests.core.rate_scenarios import (LITELLM_CPU_S, SHIFT_GOAL, STEADY_GOAL, Scenario, budgeted_answers,
                                      mixed_sizes, run)

SHAPES = [
    Scenario("openai-600-per-second-headers", AccountLimits(rpm=600, limiter="fixed", window_s=1.0), 0.0, 1.0,
             {"style": "openai", "headers": True}),
    Scenario("openai-3000-per-second-message-only", AccountLimits(rpm=3000, limiter="fixed", window_s=1.0), 0.0, 1.0,
             {"style": "openai"}),
    Scenario("anthropic-600-per-second-headers", AccountLimits(rpm=600, limiter="fixed", window_s=1.0), 0.0, 1.0,
             {"style": "anthropic", "headers": True}),
    Scenario("azure-600-1s-window", AccountLimits(rpm=600, limiter="fixed", window_s=1.0), 0.0, 1.0,
             {"style": "azure", "headers": True}),
    Scenario("bare-1200-1s-window", AccountLimits(rpm=1200, limiter="fixed", window_s=1.0), 0.0, 1.0,
             {"style": "bare"}),
    Scenario("bare-600-1s-window-charged", AccountLimits(rpm=600, limiter="fixed", window_s=1.0, refusals_count=True),
             0.0, 1.0, {"style": "bare"}),
    Scenario("azure-600-10s-window", AccountLimits(rpm=600, limiter="fixed", window_s=10.0), 0.0, 1.0,
             {"style": "azure", "headers": True}),
    Scenario("azure-6000-10s-no-headers", AccountLimits(rpm=6000, limiter="fixed", window_s=10.0), 0.0, 1.0,
             {"style": "azure"}),
    Scenario("azure-1200-sliding-10s-no-headers", AccountLimits(rpm=1200, limiter="sliding", window_s=10.0), 0.0, 1.0,
             {"style": "azure"}),
    Scenario("gemini-1200-sliding-10s", AccountLimits(rpm=1200, limiter="sliding", window_s=10.0), 0.0, 1.0,
             {"style": "gemini"}),
    Scenario("bare-1200-bucket-0.2s-burst", AccountLimits(rpm=1200, burst_s=0.2), 0.0, 1.0, {"style": "bare"}),
    Scenario("bare-1200-bucket-10s-burst", AccountLimits(rpm=1200, burst_s=10.0), 0.0, 1.0, {"style": "bare"}),
    # a bucket holding a whole minute (Anthropic: "continuously replenished up to your maximum limit")
    # without its headers (a gateway in between): the cold start spends it at once, then floods. The
    # flood is the rate reached times a refusal's round trip, and the fake client has no speed limit...
    Scenario("bare-300-bucket-60s-burst", AccountLimits(rpm=300, burst_s=60.0), 0.0, 1.0, {"style": "bare"}),
    Scenario("bare-1200-bucket-60s-burst", AccountLimits(rpm=1200, burst_s=60.0), 0.0, 1.0, {"style": "bare"}),
    # ... a real one does: LiteLLM costs about 3.5 ms of CPU per call (~285 sends/s at most)
    Scenario("bare-1200-bucket-60s-burst-3.5ms-client", AccountLimits(rpm=1200, burst_s=60.0), 0.0, 1.0,
             {"style": "bare", "client_s_per_request": LITELLM_CPU_S}),
    Scenario("bare-1200-sliding-minute-3.5ms-client", AccountLimits(rpm=1200, limiter="sliding"), 0.0, 1.0,
             {"style": "bare", "client_s_per_request": LITELLM_CPU_S}),
    # token limits by what they count, in the shapes above (judged on the TPM goal: >= 0.90, <= 2%)
    Scenario("azure-tpm-120k", AccountLimits(rpm=None, tpm=120_000), 0.0, 1.0,
             {"style": "azure", "headers": True, "request": mixed_sizes}, measure="tokens", goal=SHIFT_GOAL),
    Scenario("azure-tpm-120k-10s-window", AccountLimits(rpm=None, tpm=120_000, limiter="fixed", window_s=10.0),
             0.0, 1.0, {"style": "azure", "headers": True, "request": mixed_sizes}, measure="tokens", goal=SHIFT_GOAL),
    Scenario("vertex-tpm-input-120k", AccountLimits(rpm=None, tpm=120_000, tokens_basis="input"), 0.0, 1.0,
             {"style": "vertex", "request": budgeted_answers}, measure="tokens", goal=SHIFT_GOAL),
    Scenario("anthropic-itpm-60k-sliding-minute", AccountLimits(rpm=None, tpm=60_000, tokens_basis="input",
                                                                limiter="sliding"), 0.0, 1.0,
             {"style": "anthropic", "headers": True, "request": budgeted_answers, "s_per_token": 0.005},
             measure="tokens", goal=SHIFT_GOAL),
    # a small TPM quota (Azure deployments are often given 30,000) under batch requests of ~1,100-1,600 tokens
    # at admission (max_tokens 1,024): ~25 requests a minute, each refusal ~2% of them; message only, no
    # headers; a bucket holding 10 s (at the default 2 s, 1,000 tokens, smaller than any one request)
    Scenario("azure-tpm-30k-budgeted-message-only", AccountLimits(rpm=None, tpm=30_000, burst_s=10.0), 0.0, 1.0,
             {"style": "azure", "headers": False, "request": budgeted_answers, "s_per_token": 0.005},
             measure="tokens", goal=SHIFT_GOAL),
    Scenario("openai-tpm-30k-budgeted-message-only", AccountLimits(rpm=None, tpm=30_000, burst_s=10.0), 0.0, 1.0,
             {"style": "openai", "headers": False, "request": budgeted_answers, "s_per_token": 0.005},
             measure="tokens", goal=SHIFT_GOAL),
    # Anthropic's OTPM behind a gateway that drops its words: the refusals do not say what is counted
    Scenario("bare-otpm-16k-minute-bucket", AccountLimits(rpm=None, tpm=16_000, tokens_basis="output", burst_s=60.0),
             0.0, 1.0, {"style": "bare", "request": budgeted_answers, "s_per_token": 0.005}, measure="tokens",
             goal=SHIFT_GOAL),
    # (twelfth session) a busy shared pool behind Anthropic's headers, which show the room left when it refuses
    # (the goal on refusals: the pool's 2% and the steady 1%)
    Scenario("anthropic-1000-headers-pool-2pct", AccountLimits(rpm=1000, pool_refusals=0.02), 0.0, 1.0,
             {"style": "anthropic", "headers": True}, goal=(0.95, 0.03)),
    # window counters elsewhere than the matrix's 1,200 RPM: a fast account over half-second answers, a slow one
    Scenario("vertex-6000-sliding-minute-0.5s", AccountLimits(rpm=6000, limiter="sliding"), 0.0, 1.0,
             {"style": "vertex", "latency_s": 0.5}),
    Scenario("bare-300-sliding-minute", AccountLimits(rpm=300, limiter="sliding"), 0.0, 1.0, {"style": "bare"}),
    Scenario("bare-600-sliding-minute-charged", AccountLimits(rpm=600, limiter="sliding", refusals_count=True),
             0.0, 1.0, {"style": "bare"}),
    Scenario("gemini-60-fixed-minute", AccountLimits(rpm=60, limiter="fixed"), 0.0, 1.0, {"style": "gemini"}),
    Scenario("azure-3000-10s-window-2s-answers", AccountLimits(rpm=3000, limiter="fixed", window_s=10.0), 0.0, 1.0,
             {"style": "azure", "headers": True, "latency_s": 2.0}),
]


def report(s: Scenario, seeds: int = 8) -> bool:
    """Print the mean and the worst of ``seeds`` seeds of ``s`` against its goal (the steady
    goal when it names none); return whether it was met."""
    rows = [run(s, seed)[0] for seed in range(seeds)]
    goodput, refused = [r[0] for r in rows], [r[1] for r in rows]
    goal = s.goal or STEADY_GOAL
    met = min(goodput) >= goal[0] and max(refused) <= goal[1]
    print(f"{'met ' if met else 'MISS'} {s.name:38} goodput mean {sum(goodput) / seeds:.3f} worst {min(goodput):.3f}, "
          f"refused mean {sum(refused) / seeds:.2%} worst {max(refused):.2%}", flush=True)
    return met


def main(names: list[str]) -> None:
    for s in SHAPES:
        if not names or any(n in s.name for n in names):
            report(s)


if __name__ == "__main__":
    main(sys.argv[1:])
