"""Every request-limit behaviour of the matrix at ceilings from 60 to 20,000 RPM, on the fake clock.

    uv run python benchmarks/rate_sweep.py [NAME-FILTER ...] [--seeds N]

The matrix (``rate_matrix.py``) tries each behaviour at one or two ceilings; the issue's goal
holds "at ceilings from 60 to 20,000 RPM". This crosses them: a token bucket, a sliding
minute and a fixed minute (begun anywhere before the first request, spread over the seeds),
refused requests free or charged, worded five ways (a bare 429; OpenAI with its headers; OpenAI's
message alone, which states the limit; Anthropic with its headers; Gemini's words, which state
nothing), at 60, 300, 3,000 and 20,000 RPM (answers in 40 ms from 3,000 up: the simulator's
default latency caps what a lane can have in flight). Prints the worst and the mean of N seeds
(8 by default) of 2 minutes from a cold start against the steady goal (>= 0.95 of the
ceiling, <= 1% refused). A fixed minute can give more than its ceiling over 2 minutes: two
quotas and part of a third.
"""

from __future__ import annotations

import sys

from common import ROOT  # noqa: F401 - puts the project on sys.path

from promptforge_dagster.simulator.account import AccountLimits
from tests.core.rate_scenarios import STEADY_GOAL, Scenario, run

CEILINGS_RPM = (60, 300, 3000, 20000)
FAST_FROM_RPM = 3000  # from here answers take 40 ms (as the matrix's fast buckets)
LIMITERS = ("bucket", "sliding", "fixed")
WORDINGS = (("bare", False), ("openai", True), ("openai", False), ("anthropic", True), ("gemini", False))


def scenarios() -> list[Scenario]:
    out = []
    for rpm in CEILINGS_RPM:
        for limiter in LIMITERS:
            for charged in (False, True):
                for style, headers in WORDINGS:
                    if charged and style == "anthropic":  # Anthropic documents a bucket that refusals do not drain
                        continue
                    kw = {"style": style, **({"headers": True} if headers else {}),
                          **({"latency_s": 0.04} if rpm >= FAST_FROM_RPM else {})}
                    limits = AccountLimits(rpm=rpm, refusals_count=charged,
                                           **({} if limiter == "bucket" else {"limiter": limiter}))
                    name = f"{style}{'-headers' if headers else ''}-{rpm}-{limiter}{'-charged' if charged else ''}"
                    out.append(Scenario(name, limits, *STEADY_GOAL, kw))
    return out


def main(names: list[str], seeds: int) -> None:
    missed = 0
    for s in scenarios():
        if names and not any(n in s.name for n in names):
            continue
        rows = [run(s, seed)[0] for seed in range(seeds)]
        goodput, refused = [r[0] for r in rows], [r[1] for r in rows]
        met = min(goodput) >= STEADY_GOAL[0] and max(refused) <= STEADY_GOAL[1]
        missed += not met
        print(f"{'met ' if met else 'MISS'} {s.name:36} goodput worst {min(goodput):.3f} mean "
              f"{sum(goodput) / seeds:.3f}, refused worst {max(refused):.2%} mean {sum(refused) / seeds:.2%}",
              flush=True)
    print(f"{missed} missed")


if __name__ == "__main__":
    args = sys.argv[1:]
    n = 8
    if "--seeds" in args:
        i = args.index("--seeds")
        n = int(args[i + 1])
        del args[i:i + 2]
    main(args, n)
