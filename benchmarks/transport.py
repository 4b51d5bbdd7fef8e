"""Transports: completions/s of the engine with the lean transport and with LiteLLM,
against a bare aiohttp loop, all at the same concurrency against the same instant,
unlimited simulator, measured alternately in one run (each in a fresh process).

    uv run python benchmarks/transport.py --prompts 5000 --concurrency 64 --rounds 3

Prints each measurement and the ratios of the medians: lean/bare (goal >= 0.5) and
litellm/bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

from common import alternate_children, start_simulator


async def bare_loop(path: str, concurrency: int, api_base: str) -> float:
    """The leanest client loop: N workers posting the bodies with one aiohttp session."""
    import aiohttp

    bodies = [json.loads(line)["body"] for line in open(path)]
    queue = iter(bodies)
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            for body in queue:
                async with session.post(f"{api_base}/chat/completions", data=json.dumps(body), headers=headers) as r:
                    await r.read()

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.monotonic() - t0)


async def engine(path: str, concurrency: int, api_base: str, transport: str) -> float:
    from promptforge_dagster.clients.local_storage import LocalStorage
    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.clients.transport import make_provider
    from promptforge_dagster.core.formats import JobDefaults
    from promptforge_dagster.core.job import JobSpec, run_job
    from promptforge_dagster.core.pipeline import PipelineConfig
    from promptforge_dagster.core.rate.config import RateConfig
    from promptforge_dagster.core.rate.controller import AdaptiveController

    provider = make_provider(transport, api_base=api_base, api_key="sk-bench", timeout_s=60,
                             default_provider="openai")
    with tempfile.TemporaryDirectory() as out:
        spec = JobSpec(path, out, JobDefaults("openai/sim-model"), pipeline=PipelineConfig(max_in_flight=concurrency))
        storage = LocalStorage()
        # a hint far above what one process can send keeps the rate engine from binding
        controller = AdaptiveController(RateConfig(rpm_hint=600_000, max_rpm=1e7), now=time.monotonic())
        t0 = time.monotonic()
        result = await run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                               registry=SQLiteRegistry(os.path.join(out, "registry.sqlite3")), controller=controller)
        elapsed = time.monotonic() - t0
        if hasattr(provider, "close"):
            await provider.close()
        assert result.summary["succeeded"] == result.summary["prompts"], result.summary
        return result.summary["prompts"] / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=["bare", "lean", "litellm"])
    ap.add_argument("--input")
    ap.add_argument("--api-base")
    args = ap.parse_args()
    if args.child:
        if args.child == "bare":
            rate = asyncio.run(bare_loop(args.input, args.concurrency, args.api_base))
        else:
            rate = asyncio.run(engine(args.input, args.concurrency, args.api_base, args.child))
        print(json.dumps({"rate": rate}))
        return
    sim, base = start_simulator("--rpm", "0", "--latency-ms", "0")
    modes = ("bare", "lean", "litellm")
    try:
        rates = alternate_children(__file__, modes, args.rounds, args.prompts, args.concurrency, base)
    finally:
        sim.kill()
        sim.wait()
    med = {m: statistics.median(v) for m, v in rates.items()}
    print(f"median bare aiohttp {med['bare']:.0f}/s, engine+lean {med['lean']:.0f}/s, "
          f"engine+litellm {med['litellm']:.0f}/s")
    print(f"ratio lean/bare {med['lean'] / med['bare']:.3f} (goal >= 0.5); "
          f"litellm/bare {med['litellm'] / med['bare']:.3f}; lean/litellm {med['lean'] / med['litellm']:.2f}x")


if __name__ == "__main__":
    main()
