"""Rate discovery over real HTTP: the adaptive controller against the project's simulator,
beside fixed-limit token buckets told 50%, 100% and 150% of the true limit, in one run.

    uv run python benchmarks/rate_discovery.py --window 3 --phase 60

Scenarios (windows compressed by --window; the client is never told the limits):
  steady    1200 RPM, no rate-limit headers
  shifting  1800 -> 600 -> 2400 RPM, no headers (fixed buckets are told the first phase's limit)
  tpm       120,000 TPM, no RPM limit, no headers, prompts of mixed sizes (about 40-540 tokens)
  bursty    1200 RPM with a 10 s burst allowance; demand comes in 15 s bursts with 15 s gaps

For each phase it prints goodput as a share of the true ceiling (tokens for `tpm`) and
the refused share (429s / answered), read from the simulator's request log. Goodput
counts from the start of the phase: discovery time is included. For `shifting` each phase
is printed a second time counted from two windows after its change of ceiling, as the
fake-clock test of a drop counts.
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
from promptforge_dagster.core.adaptive_rate import AdaptiveConfig, AdaptiveRateController
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job import JobSpec, run_job
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController


def write_input(path: str, n: int, mixed: bool, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            words = rng.randint(20, 400) if mixed else 30
            f.write(json.dumps({"id": f"p{i}", "prompt": ("word " * words) + str(i), "max_tokens": 32}) + "\n")


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
                       pipeline=PipelineConfig(max_in_flight=128, max_rate_limited=1000,
                                               read_batch=8 if gate else 512))
        storage = LocalStorage()
        provider = LiteLLMProvider(api_base=api_base, api_key="sk-bench", timeout_s=30)
        task = asyncio.create_task(run_job(spec, input_storage=gate or storage, output_storage=storage,
                                           provider=provider, controller=controller_factory(),
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
    refused = sum(1 for t, s in log if start <= t < end and s == 429)
    return ok / (ceiling_per_s * (end - start)), refused / max(1, ok + refused)


def run_scenario(name, sim_flags, phases, controller_factory, input_path, gate_args=None, settle=0.0, window=3.0):
    """phases: [(duration_s, ceiling_per_s, unit)] where unit is 'req' or 'tok'.

    With several phases, each is also measured from two windows after its change of
    ceiling (how the issue's fake-clock test counts a drop), after the whole-phase figures."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "requests.jsonl")
        sim, base = start_simulator(*sim_flags, "--request-log", log_path, "--latency-ms", "150", "--seed", "3")
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
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--phase", type=float, default=60.0)
    ap.add_argument("--scenarios", default="steady,shifting,tpm,bursty")
    ap.add_argument("--controllers", default="adaptive,fixed50,fixed100,fixed150")
    args = ap.parse_args()
    P = args.phase
    with tempfile.TemporaryDirectory() as tmp:
        uniform = os.path.join(tmp, "uniform.jsonl")
        mixed = os.path.join(tmp, "mixed.jsonl")
        write_input(uniform, 60_000, mixed=False)
        write_input(mixed, 60_000, mixed=True)
        # tokens per request as the simulator counts them (prompt chars/4 + max_tokens), for the TPM figures
        scenarios = {
            "steady": (["--rpm", "1200", "--headers", "none"], [(2 * P, 20.0, "req")], uniform, None, 1200.0, None),
            "shifting": (["--rpm", "1800", "--headers", "none", "--schedule", f"0:1800,{P}:600,{2 * P}:2400"],
                         [(P, 30.0, "req"), (P, 10.0, "req"), (P, 40.0, "req")], uniform, None, 1800.0, None),
            "tpm": (["--rpm", "0", "--tpm", "120000", "--headers", "none"], [(2 * P, 2000.0, "tok")], mixed, None,
                    None, 120000.0),
            "bursty": (["--rpm", "1200", "--burst-s", "10", "--headers", "none"], [(2 * P, 20.0, "req")], uniform,
                       (15.0, 15.0), 1200.0, None),
        }
        for name in args.scenarios.split(","):
            flags, phases, path, gate_args, true_rpm, true_tpm = scenarios[name]
            print(f"== {name}: {' '.join(flags)}", flush=True)
            for cname in args.controllers.split(","):
                if cname == "adaptive":
                    cfg = AdaptiveConfig(window_s=args.window)

                    def factory(cfg=cfg):
                        return AdaptiveRateController(cfg, now=time.monotonic())
                else:
                    share = int(cname[5:]) / 100.0

                    def factory(share=share):
                        return FixedRateController(true_rpm * share if true_rpm else None, now=time.monotonic(),
                                                   tpm=true_tpm * share if true_tpm else None)
                if name == "tpm":
                    res = run_tpm(flags, phases, factory, path)
                else:
                    res = run_scenario(name, flags, phases, factory, path, gate_args, window=args.window)
                labels = [f"phase {i + 1}" for i in range(len(phases))]
                labels += [f"phase {i + 1} from 2 windows" for i in range(len(phases))] if len(phases) > 1 else ["second half"]
                figures = "  ".join(f"{labels[i]}: goodput {g:.3f} refused {r:.3%}" for i, (g, r) in enumerate(res))
                print(f"  {cname:>9}: {figures}", flush=True)


def run_tpm(flags, phases, factory, path):
    """TPM goodput: the simulator charges prompt chars/4 + max_tokens per request."""
    sizes = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            sizes[d["id"]] = len(d["prompt"]) // 4 + 1 + d["max_tokens"]
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
        refused = sum(1 for t, st, _ in entries if start <= t < end and st == 429)
        return sum(ok) / (tokens_per_s * (end - start)), refused / max(1, len(ok) + refused)

    return [figures(0.0, duration), figures(duration / 2, duration)]


if __name__ == "__main__":
    main()
