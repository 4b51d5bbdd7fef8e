"""Memory of one lane's rate controller: bounded by its history's horizon, not by the job.

A lane keeps what it sent in 50-ms buckets over ten minutes (the longest span it measures),
and, until a tokens axis opens, a shorter history in each way tokens are counted. This
drives one controller for ``--seconds`` of fake time at ``--rate`` sends a second (every
bucket filled) and prints the memory it holds at 1x, 2x and 4x that time: flat once the
horizon is full, whatever the number of prompts.

    uv run python benchmarks/lane_memory.py [--rate 100] [--seconds 600]
"""

from __future__ import annotations

import argparse
import tracemalloc

from common import ROOT  # noqa: F401 - puts the project on sys.path

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.controller import AdaptiveController


def held_mb(rate: float, seconds: float) -> float:
    tracemalloc.start()
    c = AdaptiveController(RateConfig(window_s=5, rpm_hint=rate * 60 * 100), now=0.0)  # never held back
    step, t = 1.0 / rate, 0.0
    while t < seconds:
        c.acquire(t, est_tokens=300, max_tokens=32)
        t += step
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del c
    return held / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="sends per second (one per 10 ms fills every bucket)")
    ap.add_argument("--seconds", type=float, default=600.0, help="fake seconds: the history's horizon")
    args = ap.parse_args()
    sizes = [held_mb(args.rate, args.seconds * k) for k in (1, 2, 4)]
    print(f"one lane at {args.rate:g} sends/s: {sizes[0]:.2f} MB after {args.seconds:g} s, {sizes[1]:.2f} MB "
          f"after {2 * args.seconds:g} s, {sizes[2]:.2f} MB after {4 * args.seconds:g} s "
          f"(4x/1x {sizes[2] / sizes[0]:.2f})")


if __name__ == "__main__":
    main()
