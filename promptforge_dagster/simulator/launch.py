"""Starting the provider simulator: the ``promptforge simulate`` arguments, serving them, and
launching a simulator in its own process for the demo, local runs and the benchmarks.

Every behaviour of the provider matrix is a flag: how the account counts (``--limiter``
over ``--window-s``, a fixed window begun ``--window-phase-s`` into one), whether refusals
are charged, a concurrency limit, how 429s are worded (``--style``) and which headers come
with them, latency growing with output tokens.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from promptforge_dagster.simulator.styles import STYLES
from promptforge_dagster.simulator.account import TOKEN_BASES

SIMULATOR_KEY = "sk-promptforge-simulator"  # the demo's key: the simulator's, never a real provider's


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--rpm", type=float, default=600.0, help="requests-per-minute limit (0: unlimited)")
    parser.add_argument("--tpm", type=float, default=0.0, help="tokens-per-minute limit (0: unlimited)")
    parser.add_argument("--burst-s", type=float, default=2.0, help="seconds of sustained rate a burst may use")
    parser.add_argument("--schedule", default="", help='limits over time, e.g. "0:900,60:300,120:1200" or "0:600/40000"')
    parser.add_argument("--headers", choices=["full", "none", "retry-after"], default="full",
                        help="rate-limit headers sent: all, none, or retry-after on 429 only")
    parser.add_argument("--style", choices=STYLES, default="openai",
                        help="how refusals (and rate headers) are worded, as that provider does")
    parser.add_argument("--limiter", choices=["bucket", "sliding", "fixed"], default="bucket",
                        help="how the account counts: token bucket, sliding window, or fixed window")
    parser.add_argument("--window-s", type=float, default=60.0,
                        help="the span a sliding or fixed window counts over (Azure OpenAI: 1 or 10 s)")
    parser.add_argument("--window-phase-s", type=float, default=0.0,
                        help="how far into a fixed window the account's clock starts (default: at a window's start)")
    parser.add_argument("--refusals-count", action="store_true",
                        help="refused requests count against the limit too (OpenAI documents this)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="a self-hosted server's batch size: more in flight queue, answered slower (0: none)")
    parser.add_argument("--tokens-basis", choices=TOKEN_BASES, default="admission",
                        help="what --tpm counts: prompt + max_tokens at admission (OpenAI, Azure), the prompt only "
                             "(Anthropic ITPM, Gemini), or max_tokens less what the answer did not use (Anthropic OTPM)")
    parser.add_argument("--pool-refusals", type=float, default=0.0,
                        help="share of requests a busy shared pool refuses whatever the account's use "
                             "(Vertex AI's dynamic shared quota: 429 'Resource exhausted, please try again later')")
    parser.add_argument("--queue", type=int, default=0, help="requests that may wait beyond --concurrency before refusal")
    parser.add_argument("--latency-per-token-ms", type=float, default=0.0,
                        help="extra latency per completion token (long answers take longer)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="median latency (0: answer at once)")
    parser.add_argument("--latency-sigma", type=float, default=0.3)
    parser.add_argument("--refusal-latency-ms", type=float, default=0.0,
                        help="how long a 429 takes to come back, median (a hosted API's: 50-300 ms; 0: at once)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that hang")
    parser.add_argument("--hang-s", type=float, default=300.0)
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--api-key", help="require this bearer key (to test authentication failures)")
    parser.add_argument("--request-log", help="append one JSON line per request received")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="exit when process PID (the run that started the simulator) is gone")


def account_limits(args: argparse.Namespace):
    """The simulated account's limits the ``promptforge simulate`` arguments describe."""
    from promptforge_dagster.simulator.account import AccountLimits, parse_schedule

    return AccountLimits(rpm=args.rpm or None, tpm=args.tpm or None, burst_s=args.burst_s,
                         schedule=parse_schedule(args.schedule), limiter=args.limiter,
                         window_s=args.window_s, window_phase_s=args.window_phase_s,
                         refusals_count=args.refusals_count, concurrency=args.concurrency or None, queue=args.queue,
                         tokens_basis=args.tokens_basis, pool_refusals=args.pool_refusals)


def simulate(args: argparse.Namespace) -> int:
    """Serve the simulator until stopped (``promptforge simulate``)."""
    from promptforge_dagster.simulator.server import SimulatorConfig, run_forever

    limits = account_limits(args)
    config = SimulatorConfig(
        limits=limits, headers=args.headers, style=args.style, latency_ms=args.latency_ms,
        latency_per_token_ms=args.latency_per_token_ms, latency_sigma=args.latency_sigma,
        refusal_latency_ms=args.refusal_latency_ms,
        error_rate=args.error_rate, hang_rate=args.hang_rate, hang_s=args.hang_s,
        completion_tokens=args.completion_tokens, api_key=args.api_key, request_log=args.request_log, seed=args.seed,
    )
    run_forever(config, port=args.port, parent_pid=args.exit_with_parent)
    return 0


def start_simulator(*flags: str) -> tuple[subprocess.Popen, str]:
    """Start the simulator in its own process (it must not share our CPU-bound event
    loop); returns the process and its ``/v1`` base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptforge_dagster.simulator", "--port", "0", "--exit-with-parent",
         str(os.getpid()), *flags],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip() + "/v1"
