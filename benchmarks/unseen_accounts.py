"""Accounts the matrix does not name: random combinations of its switches, on the fake clock.

The matrix (tests/core/rate_scenarios.py) names the combinations a session thought of; a
hidden provider is another. Each account here draws a ceiling (60-20,000 RPM, log-uniform),
how it counts (bucket, sliding minute, fixed window of 1, 10 or 60 s), whether refusals are
charged, a provider's words (and headers, where that provider sends them), an answer time
and a bucket's burst. Printed: the worst of 2 seeds over 2 minutes from a cold start, against
the steady goal (0.95 of the ceiling, or of what a fixed bucket told the limit gets when
answers are long; 1% refused), with the fixed bucket beside. The draw is seeded: the same
accounts each run, so two commits' lists can be compared line by line.

    uv run python benchmarks/unseen_accounts.py [--draw 7] [--accounts 40]
"""

from __future__ import annotations

import argparse
import random

from common import ROOT  # noqa: F401 - puts the project on sys.path

from promptforge_dagster.simulator.account import AccountLimits
from tests.core.rate_scenarios import STEADY_GOAL, Scenario, fixed_told, run

STYLES = ("bare", "openai", "azure", "anthropic", "gemini", "vertex", "mistral", "bedrock")
WITH_HEADERS = ("openai", "azure", "anthropic", "mistral")  # those that send rate headers (some accounts strip them)
TOLD_SHARE = 0.98  # a fixed bucket told the limit gets this much of it from a cold start with short answers: the
# goal is scaled by what it gets over this, where long answers delay the first of them


def draw(rng: random.Random, i: int) -> Scenario:
    rpm = round(10 ** rng.uniform(1.78, 4.3))  # 60 to 20,000 RPM
    limiter = rng.choice(["bucket", "bucket", "sliding", "fixed"])
    window_s = rng.choice([60.0, 60.0, 10.0, 1.0]) if limiter == "fixed" else 60.0
    charged = rng.random() < 0.4
    style = rng.choice(STYLES)
    headers = rng.random() < 0.4 and style in WITH_HEADERS
    latency = rng.choice([0.2, 0.3, 1.0, 2.0, 6.0])
    burst_s = rng.choice([1.0, 2.0, 2.0, 10.0, 60.0])
    limits = AccountLimits(rpm=rpm, limiter=limiter, window_s=window_s, refusals_count=charged, burst_s=burst_s)
    name = (f"{i:3} rpm {rpm:6} {limiter:7} w{window_s:<4} charged {charged!s:5} {style:9} headers {headers!s:5} "
            f"answers {latency:>3} s burst {burst_s:>4} s")
    return Scenario(name, limits, 0.0, 0.0, {"style": style, "headers": headers, "latency_s": latency})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draw", type=int, default=7)
    ap.add_argument("--accounts", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    rng = random.Random(args.draw)
    missed = 0
    for i in range(args.accounts):
        s = draw(rng, i)
        rows = [run(s, seed)[0] for seed in range(args.seeds)]
        told = min(run(s, seed, fixed_told(1.0, s))[0][0] for seed in range(args.seeds))
        goodput, refused = min(r[0] for r in rows), max(r[1] for r in rows)
        met = goodput >= STEADY_GOAL[0] * min(1.0, told / TOLD_SHARE) and refused <= STEADY_GOAL[1]
        missed += not met
        print(f"{'met ' if met else 'MISS'} {s.name}: {goodput:.3f} / {refused:.2%} (a fixed bucket told the "
              f"limit: {told:.3f})", flush=True)
    print(f"{missed} of {args.accounts} missed", flush=True)


if __name__ == "__main__":
    main()
