"""The provider matrix with a refusal's real round trip and a real client, on the fake clock.

The matrix answers a refusal in 10-30 ms, as a server on the same host does, and its client
sends as fast as it is told. A hosted API's 429 crosses the internet and the provider's
gateway (50-300 ms), and one process sends at most ~285 requests a second (LiteLLM's ~3.5 ms
of CPU a call). Whatever a lane sends between a request's refusal and the moment it hears of
it is refused too, so a refusal's trip multiplies every flood: this runs the scenarios of
the steady goal at each trip given, with that client, and prints the worst of the seeds
against the goal (the pools' refusals include their share). Scenarios of several phases, and
those that set their own trip, are left out.

    uv run python benchmarks/refusal_trip.py [--trips 0.02,0.1,0.2] [--client-s 0.0035] [--seeds 8] [NAME ...]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from common import ROOT  # noqa: F401 - puts the project on sys.path

from tests.core.rate_scenarios import LITELLM_CPU_S, SCENARIOS, STEADY_GOAL, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trips", default="0.02,0.1,0.2", help="refusal round trips, seconds, comma-separated")
    ap.add_argument("--client-s", type=float, default=LITELLM_CPU_S, help="client CPU per send, seconds")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("names", nargs="*", help="scenario name filters (default: every single-phase scenario)")
    args = ap.parse_args()
    trips = [float(t) for t in args.trips.split(",")]
    missed = {t: 0 for t in trips}
    for s in SCENARIOS:
        if s.phases or "refusal_s" in s.kw or (args.names and not any(n in s.name for n in args.names)):
            continue  # (one that sets its own trip is one of these rows already)
        goal = s.goal or (s.goodput, s.refused)
        line = f"{s.name:40}"
        for trip in trips:
            kw = {"client_s_per_request": args.client_s, **s.kw, "refusal_s": trip}
            rows = [run(replace(s, kw=kw), seed)[0] for seed in range(args.seeds)]
            goodput, refused = min(r[0] for r in rows), max(r[1] for r in rows)
            met = goodput >= goal[0] and refused <= goal[1]
            missed[trip] += not met
            line += f" | {trip * 1000:4.0f} ms: {goodput:.3f} / {refused:6.2%} {'met ' if met else 'MISS'}"
        print(line, flush=True)
    print("missed: " + ", ".join(f"{n} at {t * 1000:.0f} ms" for t, n in missed.items())
          + f" (goal {STEADY_GOAL[0]} / {STEADY_GOAL[1]:.0%} unless a scenario says otherwise)", flush=True)


if __name__ == "__main__":
    main()
