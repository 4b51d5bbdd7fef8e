"""Engine overhead: completions/s of the PromptForge engine versus a bare
`litellm.acompletion` loop at the same concurrency, against an instant, unlimited
simulator, measured alternately in one run.

    uv run python benchmarks/overhead.py --prompts 3000 --concurrency 64 --rounds 3

Prints each measurement and the ratio engine/bare of the medians (goal >= 0.85).
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
    import litellm

    bodies = [json.loads(line)["body"] for line in open(path)]
    queue = iter(bodies)

    async def worker():  # N workers pulling from one iterator: the leanest loop at N in flight
        for body in queue:
            await litellm.acompletion(model="openai/" + body["model"], messages=body["messages"],
                                      max_tokens=body["max_tokens"], api_base=api_base, api_key="sk-bench",
                                      num_retries=0, max_retries=0, timeout=60)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies) / (time.monotonic() - t0)


async def engine(path: str, concurrency: int, api_base: str, telemetry: bool = False) -> float:
    from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
    from promptforge_dagster.clients.local_storage import LocalStorage
    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.core.formats import JobDefaults
    from promptforge_dagster.core.job import JobSpec, run_job
    from promptforge_dagster.core.pipeline import PipelineConfig
    from promptforge_dagster.core.rate.config import RateConfig
    from promptforge_dagster.core.rate.controller import AdaptiveController

    extra = {}
    provider = None
    if telemetry:
        # what a job with metrics on pays: the per-request histogram, and the observable
        # callbacks collected and serialised every second (10 times the default rate)
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

        from promptforge_dagster.core.pipeline import JobStats
        from promptforge_dagster.telemetry import JobTelemetry, meter_provider

        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=open(os.devnull, "w")),
                                               export_interval_millis=1000)
        provider = meter_provider([reader], env={})
        extra["stats"] = JobStats()
    with tempfile.TemporaryDirectory() as out:
        spec = JobSpec(path, out, JobDefaults("openai/sim-model"), pipeline=PipelineConfig(max_in_flight=concurrency))
        storage = LocalStorage()
        t0 = time.monotonic()
        controller = AdaptiveController(RateConfig(rpm_hint=600_000, max_rpm=1e7), now=time.monotonic())
        if telemetry:
            from promptforge_dagster.core.rate_lanes import RateLanes

            controller = RateLanes.single(controller)
            tel = JobTelemetry(provider.get_meter("bench"), "bench", extra["stats"], controller)
            from promptforge_dagster.core.job import JobHooks

            extra["hooks"] = JobHooks(on_success=tel.record_latency)
        result = await run_job(spec, input_storage=storage, output_storage=storage, **extra,
                               registry=SQLiteRegistry(os.path.join(out, "registry.sqlite3")),
                               provider=LiteLLMProvider(api_base=api_base, api_key="sk-bench", timeout_s=60),
                               # the adaptive controller's bookkeeping is part of the engine's cost;
                               # a hint far above what one process can send keeps it from binding
                               controller=controller)
        elapsed = time.monotonic() - t0
        if provider is not None:
            provider.shutdown()
        assert result.summary["succeeded"] == result.summary["prompts"]
        return result.summary["prompts"] / elapsed


def child(mode: str, path: str, concurrency: int, api_base: str) -> None:
    if mode == "bare":
        rate = asyncio.run(bare_loop(path, concurrency, api_base))
    else:
        rate = asyncio.run(engine(path, concurrency, api_base, telemetry=mode == "metrics"))
    print(json.dumps({"rate": rate}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=["bare", "engine", "metrics"])
    ap.add_argument("--metrics", action="store_true", help="also run the engine with metrics and the rate plot on")
    ap.add_argument("--input")
    ap.add_argument("--api-base")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.input, args.concurrency, args.api_base)
        return
    sim, base = start_simulator("--rpm", "0", "--latency-ms", "0")
    modes = ("bare", "engine", "metrics") if args.metrics else ("bare", "engine")
    try:
        rates = alternate_children(__file__, modes, args.rounds, args.prompts, args.concurrency, base)
    finally:
        sim.kill()
        sim.wait()
    bare, eng = statistics.median(rates["bare"]), statistics.median(rates["engine"])
    print(f"median bare {bare:.0f}/s, engine {eng:.0f}/s; ratio engine/bare {eng / bare:.3f} (goal >= 0.85)")
    if args.metrics:
        from promptforge_dagster.core.rate_history import RateHistory, RatePoint
        from promptforge_dagster.rate_plot import render_png

        history = RateHistory(type("S", (), {"succeeded": 0, "rate_limited": 0})(), dict, start=0.0)
        history.points = [RatePoint(float(i), 1000.0, 990.0, i % 7, 1000.0, None) for i in range(2000)]
        render_png(history)  # the import, once per process
        t0 = time.monotonic()
        render_png(history)
        print(f"rate plot: {time.monotonic() - t0:.2f} s to render 2,000 points (once per checkpoint, "
              f"default every 30 s: {100 * (time.monotonic() - t0) / 30:.1f}% of one core)")
        met = statistics.median(rates["metrics"])
        print(f"median engine with metrics {met:.0f}/s; ratio metrics/engine {met / eng:.3f} "
              f"(cost of metrics {100 * (1 - met / eng):.1f}%, goal < 5%)")


if __name__ == "__main__":
    main()
