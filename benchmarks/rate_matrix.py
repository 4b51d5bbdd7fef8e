"""The provider matrix on the fake clock: the worst of 8 seeds per scenario, against the
issue's goals (tests/core/rate_scenarios.py; the acceptance test asserts the same bounds).

    uv run python benchmarks/rate_matrix.py [NAME-FILTER ...]
"""

from __future__ import annotations

import sys

from common import ROOT  # noqa: F401 - puts the project on sys.path

from tests.core.rate_scenarios import SCENARIOS, fixed_told, run

# Goodput counts answers: with long answers the first seconds of a phase have none, whatever the
# pacing. For these a fixed bucket told the exact limit is printed beside, the bound they show.
BOUND_SHOWN_FOR = ("answers-",)


def main(names: list[str]) -> None:
    for s in SCENARIOS:
        if names and not any(n in s.name for n in names):
            continue
        rows = [run(s, seed) for seed in range(8)]
        goal = s.goal or (s.goodput, s.refused)
        for i in range(len(rows[0])):
            goodput = min(r[i][0] for r in rows)
            refused = max(r[i][1] for r in rows)
            met = goodput >= goal[0] and refused <= goal[1]
            bound = ""
            if s.name.startswith(BOUND_SHOWN_FOR):
                told = min(run(s, seed, fixed_told(1.0, s))[i][0] for seed in range(8))
                bound = f"; a fixed bucket told the limit: {told:.3f} (adaptive/fixed {goodput / told:.3f})"
            print(f"{'met ' if met else 'MISS'} {s.name:38} phase {i + 1}: goodput {goodput:.3f} (goal {goal[0]}), "
                  f"refused {refused:.2%} (goal {goal[1]:.0%}){bound}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
