"""Self-hosted servers that queue instead of refusing (vLLM, TGI or Ollama served directly), on
the fake clock: batch sizes and answer times beyond the matrix's `vllm-no-gateway-32` (32 slots,
1-s answers). Each runs 300 s from a cold start, the client giving up after 120 s; worst of 4
seeds, as a share of what the server serves (slots / answer time).

    uv run python benchmarks/queue_servers.py
"""

from __future__ import annotations

from common import ROOT  # noqa: F401 - puts the project on sys.path

from promptforge_dagster.simulator.account import AccountLimits
from tests.core.provider_matrix import run_matrix
from tests.core.rate_scenarios import controller

SERVERS = [  # (name, batch slots, answer time at the floor, s)
    ("batch 8, 0.3-s answers", 8, 0.3),
    ("batch 32, 1-s answers", 32, 1.0),
    ("batch 256, 5-s answers", 256, 5.0),
    ("batch 64, 10-s answers", 64, 10.0),
    ("batch 4, 20-s answers (Ollama-like)", 4, 20.0),
]
DURATION_S, DEADLINE_S, SEEDS = 300.0, 120.0, 4


def main() -> None:
    for name, slots, answer_s in SERVERS:
        rows = []
        for seed in range(SEEDS):
            trace = run_matrix(controller(), AccountLimits(rpm=None, concurrency=slots, queue=10**6), DURATION_S,
                               seed=seed, style="vllm", latency_s=answer_s, timeout_s=DEADLINE_S)
            per_minute = slots / answer_s * 60.0
            rows.append((trace.goodput_share(0.0, DURATION_S, per_minute), trace.refused_share(0.0, DURATION_S),
                         trace.goodput_share(180.0, DURATION_S, per_minute), trace.refused_share(180.0, DURATION_S)))
        print(f"{name:36} whole run {min(r[0] for r in rows):.3f} / timed out {max(r[1] for r in rows):.2%};  "
              f"last 2 minutes {min(r[2] for r in rows):.3f} / {max(r[3] for r in rows):.2%}", flush=True)


if __name__ == "__main__":
    main()
