"""Rate discovery over real HTTP: the adaptive engine (core/rate/) against the project's
simulator across the provider matrix, plus a latency sweep, beside fixed token buckets told
50%, 100% and 150% of the true limit, all in one run.

    uv run python benchmarks/rate_discovery.py --phase 120 --window 5 [--refusal-latency-ms 150]

Each scenario is one phase from a cold start (the client is never told the limits):
  bucket        1,200 RPM token bucket, refusals free, a bare 429 (no headers, no words)
  charged       the same, but refused requests count against the limit (OpenAI's rule)
  sliding       1,200 RPM over a sliding 60-s window, bare 429
  burst-60s     1,200 RPM token bucket holding a whole minute (Anthropic's "replenished up to your
                maximum"), bare 429: the cold start spends 1,200 at once, then floods
  fixed         600 RPM per fixed minute, worded as Gemini words it (RESOURCE_EXHAUSTED, "limit: N")
  openai        3,000 RPM with OpenAI's headers and messages
  azure         1,200 RPM worded as Azure OpenAI ("retry after N seconds", remaining-* headers)
  anthropic     1,200 RPM with Anthropic's headers and rate_limit_error
  groq          1,200 RPM in OpenAI's words, but x-ratelimit-limit-requests states the requests per day
  tpm           120,000 TPM charged on prompt + max_tokens, mixed prompt sizes, OpenAI's words
  azure-tpm     120,000 TPM in Azure's words ("token rate limit", no value), mixed prompt sizes
  azure-tpm-10s the same, counted over fixed 10-s intervals (20,000 a slice), as Azure counts RPM
  itpm          Anthropic's input tokens per minute: 60,000 on prompts only (mixed sizes, max_tokens
                1,024, 200-token answers), a bucket holding a minute, Anthropic's headers and words
  otpm          Anthropic's output tokens per minute: 16,000, reserved as max_tokens (1,024) and
                settled to the 200-token answer
  vllm          a self-hosted server: concurrency 32, queue 8, ~1 s answers growing with load
  vllm-no-gateway  the same served directly: no queue limit, nothing refused, answers slower the
                more wait; not in the default list: run it with --phase 300, as the client gives
                up on an answer after 120 s (a flood shows as answers no client waited for)
  latency-Xs    3,000 RPM bucket, bare 429, answers taking X s (0.2, 2, 6, 20); goodput counts
                answers, so X s of the phase have none whatever the pacing (a fixed bucket told
                the exact limit shows that bound: latency-6s and latency-20s run beside them)

For each it prints goodput (completed answers as a share of the ceiling; the tokens the limit
counts for `tpm`, `azure-tpm*`, `itpm` and `otpm`;
for `vllm` of what 32 slots serve) and the refused share, over the whole phase (discovery
included) and over its second half, read from the simulator's request log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time

from common import start_simulator

from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job import JobSpec, run_job
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController


def write_input(path: str, n: int, mixed: bool, seed: int = 7, max_tokens: int = 32) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            words = rng.randint(20, 400) if mixed else 30
            f.write(json.dumps({"id": f"p{i}", "prompt": ("word " * words) + str(i), "max_tokens": max_tokens}) + "\n")


class DemandGate(LocalStorage):
    """Input storage whose reads wait while demand is off (bursty scenario): with small
    chunks and read batches, prompts reach the pipeline only during the on-periods."""

    def __init__(self, on_s: float, off_s: float, t0: float) -> None:
        self.on_s, self.off_s, self.t0 = on_s, off_s, t0

    def read_range(self, path, start, length, generation=None):
        while True:
            phase = (time.monotonic() - self.t0) % (self.on_s + self.off_s)
            if phase < self.on_s:
                return super().read_range(path, start, length, generation)
            time.sleep(self.on_s + self.off_s - phase)


async def drive(controller_factory, api_base: str, input_path: str, duration: float, gate=None) -> None:
    with tempfile.TemporaryDirectory() as out:
        small = {"chunk_bytes": 4096} if gate else {}
        spec = JobSpec(input_path, out, JobDefaults("openai/sim-model"), **small,
                       pipeline=PipelineConfig(max_rate_limited=1000, read_batch=8 if gate else 512))
        storage = LocalStorage()
        provider = LiteLLMProvider(api_base=api_base, api_key="sk-bench", timeout_s=120)
        task = asyncio.create_task(run_job(spec, input_storage=gate or storage, output_storage=storage,
                                           provider=provider, controller=controller_factory(api_base),
                                           registry=SQLiteRegistry(os.path.join(out, "registry.sqlite3"))))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=duration)
        except asyncio.TimeoutError:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def read_log(path: str, t0: float) -> list[tuple[float, int]]:
    out = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            out.append((d["t"] - t0, d["status"]))
    return out


def phase_figures(log, start, end, ceiling_per_s):
    ok = sum(1 for t, s in log if start <= t < end and s == 200)
    refused = sum(1 for t, s in log if start <= t < end and s in (429, 503))
    return ok / (ceiling_per_s * (end - start)), refused / max(1, ok + refused)


def run_scenario(name, sim_flags, phases, controller_factory, input_path, gate_args=None, settle=0.0, window=3.0):
    """phases: [(duration_s, ceiling_per_s, unit)] where unit is 'req' or 'tok'.

    With several phases, each is also measured from two windows after its change of
    ceiling (how the issue's fake-clock test counts a drop), after the whole-phase figures."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "requests.jsonl")
        latency = [] if "--latency-ms" in sim_flags else ["--latency-ms", "150"]
        sim, base = start_simulator(*sim_flags, "--request-log", log_path, *latency, "--seed", "3")
        try:
            duration = sum(p[0] for p in phases)
            t0 = time.time()
            t0_mono = time.monotonic()
            gate = DemandGate(*gate_args, t0_mono) if gate_args else None
            asyncio.run(drive(controller_factory, base, input_path, duration, gate))
        finally:
            sim.kill()
            sim.wait()
        log = read_log(log_path, t0)
    results = []
    start = 0.0
    for dur, ceiling, _unit in phases:
        results.append(phase_figures(log, start + settle, start + dur, ceiling))
        start += dur
    if len(phases) > 1:
        start = 0.0
        for dur, ceiling, _unit in phases:
            results.append(phase_figures(log, start + 2 * window, start + dur, ceiling))
            start += dur
    if settle == 0.0 and len(phases) == 1:
        # the same run after discovery: the first half of the phase left out
        dur, ceiling, _unit = phases[0]
        results.append(phase_figures(log, dur / 2, dur, ceiling))
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--phase", type=float, default=120.0)
    ap.add_argument("--scenarios", default="bucket,charged,sliding,burst-60s,fixed,openai,gemini-15,openai-30,azure,azure-10s,azure-1s,anthropic,groq,"
                                           "tpm,azure-tpm,azure-tpm-10s,itpm,otpm,vllm,pool-3pct,pool-3pct-openai,"
                                           "pool-3pct-vertex-quota,azure-peak-3pct,"
                                           "latency-0.2s,latency-2s,latency-6s,latency-20s")
    ap.add_argument("--fixed-on", default="bucket,pool-3pct,latency-6s,latency-20s", help="scenarios also run with fixed buckets")
    ap.add_argument("--hosted", action="store_true",
                    help="the adaptive lanes take the simulator for the provider's own endpoint (a hosted API: no "
                         "blind in-flight bound before answers, core/rate/hosted.py); by default it is what its "
                         "address says, a server of unknown kind")
    ap.add_argument("--refusal-latency-ms", type=float, default=0.0,
                    help="how long the simulator's 429s take to come back (a hosted API's cross the internet: "
                         "50-300 ms); by default at once, as a server on this host")
    args = ap.parse_args()
    P = args.phase
    trip = ["--refusal-latency-ms", str(args.refusal_latency_ms)] if args.refusal_latency_ms else []
    bare = ["--headers", "none", "--style", "bare"]
    with tempfile.TemporaryDirectory() as tmp:
        uniform = os.path.join(tmp, "uniform.jsonl")
        mixed = os.path.join(tmp, "mixed.jsonl")
        write_input(uniform, 200_000, mixed=False)
        write_input(mixed, 200_000, mixed=True)
        budgeted = os.path.join(tmp, "budgeted.jsonl")
        write_input(budgeted, 100_000, mixed=True, max_tokens=1024)
        anthropic_tokens = ["--rpm", "0", "--style", "anthropic", "--burst-s", "60", "--completion-tokens", "200",
                            "--latency-per-token-ms", "5"]
        scenarios = {  # name: (simulator flags, ceiling per s, input, true rpm, true tpm)
            "bucket": (["--rpm", "1200", *bare], 20.0, uniform, 1200.0, None),
            "charged": (["--rpm", "1200", "--refusals-count", *bare], 20.0, uniform, 1200.0, None),
            "sliding": (["--rpm", "1200", "--limiter", "sliding", *bare], 20.0, uniform, 1200.0, None),
            "burst-60s": (["--rpm", "1200", "--burst-s", "60", *bare], 20.0, uniform, 1200.0, None),
            # (twentieth session) a bucket that holds a minute and charges refusals, stating nothing
            "burst-60s-charged": (["--rpm", "1000", "--burst-s", "60", "--refusals-count", *bare], 1000 / 60.0,
                                  uniform, 1000.0, None),
            "fixed": (["--rpm", "600", "--limiter", "fixed", "--headers", "none", "--style", "gemini"], 10.0,
                      uniform, 600.0, None),
            "openai": (["--rpm", "3000", "--style", "openai"], 50.0, uniform, 3000.0, None),
            # (twenty-first session) a fixed minute that charges refusals, in Anthropic's words without headers; a
            # 10-s window counter whose refusals state the minute's limit in OpenAI's words
            "fixed-charged": (["--rpm", "300", "--limiter", "fixed", "--refusals-count", "--headers", "none", "--style",
                               "anthropic"], 5.0, uniform, 300.0, None),
            "fixed-10s-stated": (["--rpm", "6000", "--limiter", "fixed", "--window-s", "10", "--headers", "none",
                                  "--style", "openai"], 100.0, uniform, 6000.0, None),
            # small accounts, under the 60 RPM a lane starts at: Gemini's free tier (15 RPM, a minute's quota, its
            # words stating the limit and the retry), and a first tier stating 30 RPM in OpenAI's headers
            "gemini-15": (["--rpm", "15", "--limiter", "fixed", "--headers", "none", "--style", "gemini"], 0.25,
                          uniform, 15.0, None),
            "openai-30": (["--rpm", "30", "--style", "openai"], 0.5, uniform, 30.0, None),
            "azure": (["--rpm", "1200", "--style", "azure"], 20.0, uniform, 1200.0, None),
            # Azure evaluates RPM over 1- or 10-s intervals: 200 per 10 s here
            "azure-10s": (["--rpm", "1200", "--style", "azure", "--limiter", "fixed", "--window-s", "10"], 20.0,
                          uniform, 1200.0, None),
            # ... and 1-s intervals (OpenAI too may enforce its limits per second: "quantized")
            "azure-1s": (["--rpm", "1200", "--style", "azure", "--limiter", "fixed", "--window-s", "1"], 20.0,
                         uniform, 1200.0, None),
            "anthropic": (["--rpm", "1200", "--style", "anthropic"], 20.0, uniform, 1200.0, None),
            "groq": (["--rpm", "1200", "--style", "groq"], 20.0, uniform, 1200.0, None),
            "tpm": (["--rpm", "0", "--tpm", "120000", "--headers", "none", "--style", "openai"], 2000.0, mixed,
                    None, 120000.0),
            "azure-tpm": (["--rpm", "0", "--tpm", "120000", "--style", "azure"], 2000.0, mixed, None, 120000.0),
            "azure-tpm-10s": (["--rpm", "0", "--tpm", "120000", "--style", "azure", "--limiter", "fixed",
                               "--window-s", "10"], 2000.0, mixed, None, 120000.0),
            "itpm": ([*anthropic_tokens, "--tpm", "60000", "--tokens-basis", "input"], 1000.0, budgeted, None, 60000.0),
            "otpm": ([*anthropic_tokens, "--tpm", "16000", "--tokens-basis", "output"], 16000 / 60.0, budgeted, None,
                     16000.0),
            # a busy shared pool refuses 3% whatever the rate (Vertex AI's dynamic shared quota), on a 1,200 RPM bucket
            "pool-3pct": (["--rpm", "1200", "--pool-refusals", "0.03", "--style", "vertex"], 20.0,
                          uniform, 1200.0, None),
            # ... behind OpenAI's headers, which show the room left when the pool refuses
            "pool-3pct-openai": (["--rpm", "1200", "--pool-refusals", "0.03", "--style", "openai"], 20.0,
                                 uniform, 1200.0, None),
            # (twenty-sixth session) ... on a Vertex AI project's quota, whose 429 names its metric
            "pool-3pct-vertex-quota": (["--rpm", "1200", "--pool-refusals", "0.03", "--style", "vertex-quota"], 20.0,
                                       uniform, 1200.0, None),
            # (sixteenth session) a busy Azure region: 3% refused in its peak-load words, whatever the rate
            "azure-peak-3pct": (["--rpm", "1200", "--pool-refusals", "0.03", "--style", "azure"], 20.0,
                                uniform, 1200.0, None),
            "vllm": (["--rpm", "0", "--concurrency", "32", "--queue", "8", "--style", "vllm", "--latency-ms", "1000",
                      "--latency-sigma", "0.1"], 32.0, uniform, None, None),
            "vllm-no-gateway": (["--rpm", "0", "--concurrency", "32", "--queue", "1000000", "--style", "vllm",
                                 "--latency-ms", "1000", "--latency-sigma", "0.1"], 32.0, uniform, None, None),
        }
        for seconds in (0.2, 2, 6, 20):
            scenarios[f"latency-{seconds}s"] = (["--rpm", "3000", *bare, "--latency-ms", str(seconds * 1000),
                                                 "--latency-sigma", "0.1"], 50.0, uniform, 3000.0, None)
        # (twenty-eighth session) a fast account with a reasoning model's answers: refused before any answer
        scenarios["latency-20s-10000"] = (["--rpm", "10000", *bare, "--latency-ms", "20000", "--latency-sigma", "0.1"],
                                          10000 / 60.0, uniform, 10000.0, None)
        for name in args.scenarios.split(","):
            flags, ceiling, path, true_rpm, true_tpm = scenarios[name]
            flags = [*flags, *trip]
            print(f"== {name}: {' '.join(flags)}", flush=True)
            controllers = ["adaptive"] + (["fixed50", "fixed100", "fixed150"] if name in args.fixed_on.split(",")
                                          else [])
            for cname in controllers:
                made: list = []  # the adaptive run's lanes, to tell whether they took refusals for a busy pool's
                if cname == "adaptive":
                    cfg = RateConfig(window_s=args.window)

                    def factory(api_base, cfg=cfg):  # (the simulator's base: a server of unknown kind, unless --hosted)
                        made.append(RateLanes.adaptive(cfg, key_hash="bench", clock=time.monotonic,
                                                       api_base=None if args.hosted else api_base))
                        return made[-1]
                else:
                    share = int(cname[5:]) / 100.0

                    def factory(_api_base, share=share):
                        return FixedRateController(true_rpm * share if true_rpm else None, now=time.monotonic(),
                                                   tpm=true_tpm * share if true_tpm else None)
                if name in TOKEN_COUNTS:
                    res = run_tpm(flags, [(P, ceiling, "tok")], factory, path, TOKEN_COUNTS[name])
                else:
                    res = run_scenario(name, flags, [(P, ceiling, "req")], factory, path, window=args.window)
                figures = "  ".join(f"{label}: goodput {g:.3f} refused {r:.2%}"
                                    for label, (g, r) in zip(["whole phase", "second half"], res))
                pool = [c.snapshot().get("background_refused_share") for lanes in made for _, c in lanes.items()]
                told = f"  (a busy pool's share found: {max(p for p in pool if p):.2%})" if any(pool) else ""
                # attempts the lane sent: beyond what the server answered, they failed in the client (a request
                # waiting in the connection pool past --timeout never reaches the server's log)
                sent = sum(c.snapshot().get("sent") or 0 for lanes in made for _, c in lanes.items())
                served = round(res[0][0] * ceiling * P) if name.startswith("vllm") else None
                attempts = f"  (sent {sent:,}, answered {served:,})" if made and served is not None else ""
                print(f"  {cname:>9}: {figures}{told}{attempts}", flush=True)


TOKEN_COUNTS = {  # what each token limit counts of a line, as the simulator counts it (prompt chars / 4 + 1)
    "tpm": lambda d: len(d["prompt"]) // 4 + 1 + d["max_tokens"],  # prompt + max_tokens at admission
    "itpm": lambda d: len(d["prompt"]) // 4 + 1,  # the prompt only
    "otpm": lambda d: min(d["max_tokens"], 200),  # the answer (--completion-tokens 200)
}
TOKEN_COUNTS |= {"azure-tpm": TOKEN_COUNTS["tpm"], "azure-tpm-10s": TOKEN_COUNTS["tpm"]}  # Azure counts as OpenAI


def run_tpm(flags, phases, factory, path, count):
    """TPM goodput: what the account's token limit counted of the answered requests."""
    sizes = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            sizes[d["id"]] = count(d)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "requests.jsonl")
        sim, base = start_simulator(*flags, "--request-log", log_path, "--latency-ms", "150", "--seed", "3")
        try:
            t0 = time.time()
            asyncio.run(drive(factory, base, path, phases[0][0]))
        finally:
            sim.kill()
            sim.wait()
        entries = []
        with open(log_path) as f:
            for line in f:
                d = json.loads(line)
                entries.append((d["t"] - t0, d["status"], sizes.get(d["custom_id"], 0)))
    duration, tokens_per_s = phases[0][0], phases[0][1]

    def figures(start, end):
        ok = [tok for t, st, tok in entries if start <= t < end and st == 200]
        refused = sum(1 for t, st, _ in entries if start <= t < end and st in (429, 503))
        return sum(ok) / (tokens_per_s * (end - start)), refused / max(1, len(ok) + refused)

    return [figures(0.0, duration), figures(duration / 2, duration)]


if __name__ == "__main__":
    main()
