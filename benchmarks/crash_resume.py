"""Crash and resume: SIGKILL `promptforge run` at random moments; and restart latency.

    uv run python benchmarks/crash_resume.py --trials 50
    uv run python benchmarks/crash_resume.py --trials 0 --resume-prompts 1000000

Part 1, for each trial: run a job against the simulator (request log on), SIGKILL it at
a random moment, rerun it to completion with the same output, then count from
results.jsonl and the request log: lost ids (in the input, not in the results),
duplicated ids (more than one line), and re-sent prompts (answered 200 before the kill
and sent again after). The bound the design promises is in flight + 2 s of work.

Part 2: a 1M-prompt job killed at 90% (its output made by the real commit code: parts
of 1000 results, a checkpoint committed 30 s before the kill, and 30 s of parts written
after it, which the resume must reconcile), then resumed: prints the time from the
engine starting (``run_job`` called in a warm process) to the first new request reaching
the simulator, and from exec'ing `promptforge run` (interpreter and imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

from common import ROOT, child_env, start_simulator, write_batch

MAX_IN_FLIGHT = 16


def run_cmd(inp: str, out: str, api_base: str, interval: str, registry: str) -> list[str]:
    return [sys.executable, "-m", "promptforge_dagster.cli", "run", inp, "--output", out,
            "--model", "openai/sim-model", "--api-base", api_base, "--max-in-flight", str(MAX_IN_FLIGHT),
            "--rpm-hint", "20000", "--checkpoint-interval", interval, "--registry", registry, "--quiet"]


def read_log(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def trial(i: int, n: int, tmp: str) -> dict:
    rng = random.Random(1000 + i)
    d = os.path.join(tmp, f"t{i}")
    os.makedirs(d)
    inp, out, log = os.path.join(d, "in.jsonl"), os.path.join(d, "out"), os.path.join(d, "requests.jsonl")
    write_batch(inp, n)
    sim, api_base = start_simulator("--rpm", "0", "--latency-ms", "20", "--request-log", log)
    registry = f"sqlite://{os.path.join(d, 'registry.sqlite3')}"
    interval = rng.choice(["0.5", "1", "3", "30"])
    try:
        cmd = run_cmd(inp, out, api_base, interval, registry)
        first = subprocess.Popen(cmd, env=child_env(), cwd=ROOT, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        parts = os.path.join(out, "parts")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None and not (
                any(n.endswith(".jsonl") for _root, _dirs, names in os.walk(parts) for n in names)):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 2.0))
        completed_first = first.poll() is not None
        if not completed_first:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        before = read_log(log)
        second = subprocess.run(cmd, env=child_env(), cwd=ROOT, capture_output=True, text=True)
        if second.returncode != 0:
            raise RuntimeError(f"trial {i}: rerun failed: {second.stderr[-500:]}")
        after = read_log(log)[len(before):]
        with open(os.path.join(out, "results.jsonl")) as f:
            ids = Counter(json.loads(line)["custom_id"] for line in f)
        expected = {f"r{k}" for k in range(n)}
        ok_before = [e for e in before if e["status"] == 200]
        resent = {e["custom_id"] for e in after if e["status"] == 200} & {e["custom_id"] for e in ok_before}
        span = (ok_before[-1]["t"] - ok_before[0]["t"]) if len(ok_before) > 1 else 0.0
        rate = len(ok_before) / span if span > 0 else 0.0
        return {"lost": len(expected - set(ids)), "duplicated": sum(1 for c in ids.values() if c > 1),
                "extra": len(set(ids) - expected), "resent": len(resent), "done_before": len(ok_before),
                "bound": MAX_IN_FLIGHT + 2.0 * rate, "interval": interval, "completed_first": completed_first}
    finally:
        sim.kill()
        sim.wait()


def make_killed_state(inp: str, out: str, n: int, done_share: float, rate: float, interval_s: float) -> None:
    """The output of a job killed at ``done_share``, written by the real commit code."""
    sys.path.insert(0, ROOT)
    from promptforge_dagster.clients.local_storage import LocalStorage
    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.core.commit import JobCommitter
    from promptforge_dagster.core.input_scan import scan_input
    from promptforge_dagster.core.job import default_job_id
    from promptforge_dagster.core.job.layout import OutputLayout
    from promptforge_dagster.core.reader import PromptReader, ReadPosition
    from promptforge_dagster.core.results import Envelope

    storage = LocalStorage()
    info = storage.stat(inp)

    def lines(position=ReadPosition()):
        return PromptReader(lambda s, k: storage.read_range(inp, s, k, info.generation), info.size, start=position)

    index = scan_input(lines, 2 * 1024 * 1024, input_generation=info.generation)
    storage.write_bytes(OutputLayout(out).scan, index.encode())  # what an attempt's prepare() saves
    registry = SQLiteRegistry(os.path.join(os.path.dirname(out), "registry.sqlite3"))
    job_id = default_job_id(inp, info.generation, out)
    c = JobCommitter(job_id, out, storage, registry, owner="killed", attempt_tag="0-1",
                     input_generation=info.generation)
    c.open(now=time.time())
    done = int(n * done_share)
    after_ck = int(rate * interval_s)  # results written after the last checkpoint
    position = ReadPosition()
    for line in lines():
        if line.ordinal == done - after_ck:
            position = ReadPosition(line.offset, line.ordinal, line.line_no)
            break
    for start in range(0, done, 1000):
        stop = min(done, start + 1000)
        c.write_part([Envelope(o, {"id": f"batch_req_{o}", "custom_id": f"r{o}", "response": {"status_code": 200},
                                   "error": None}, 10, 2, 0.0, 5.0) for o in range(start, stop)])
        if stop == done - after_ck:
            c.commit(time.time(), position)


def engine_to_first_request(inp: str, out: str, api_base: str, registry_path: str, log: str) -> float:
    """In this process (imports done): from calling run_job to the first request arriving."""
    import asyncio

    sys.path.insert(0, ROOT)
    from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
    from promptforge_dagster.clients.local_storage import LocalStorage
    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.core.rate.config import RateConfig
    from promptforge_dagster.core.rate.controller import AdaptiveController
    from promptforge_dagster.core.formats import JobDefaults
    from promptforge_dagster.core.job import JobSpec, run_job
    from promptforge_dagster.core.pipeline import PipelineConfig

    async def go() -> float:
        storage = LocalStorage()
        spec = JobSpec(inp, out, JobDefaults("openai/sim-model"), pipeline=PipelineConfig(max_in_flight=MAX_IN_FLIGHT))
        started = time.time()
        task = asyncio.create_task(run_job(
            spec, input_storage=storage, output_storage=storage,
            provider=LiteLLMProvider(api_base=api_base, api_key="sk-bench", timeout_s=30),
            controller=AdaptiveController(RateConfig(rpm_hint=20000), now=time.monotonic()),
            registry=SQLiteRegistry(registry_path)))
        first = None
        while first is None and time.time() - started < 120:
            await asyncio.sleep(0.005)
            if os.path.exists(log):
                with open(log) as f:
                    line = f.readline()
                if line.strip():
                    first = json.loads(line)["t"]
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        if first is None:
            raise RuntimeError("no request within 120 s")
        return first - started

    return asyncio.run(go())


def restart_latency(n: int, tmp: str) -> dict:
    d = os.path.join(tmp, "resume")
    os.makedirs(d)
    inp = os.path.join(d, "in.jsonl")
    write_batch(inp, n)
    out_a, out_b = os.path.join(d, "out-a"), os.path.join(d, "out-b")
    t0 = time.monotonic()
    make_killed_state(inp, out_a, n, 0.9, rate=200.0, interval_s=30.0)
    make_killed_state(inp, out_b, n, 0.9, rate=200.0, interval_s=30.0)
    setup_s = time.monotonic() - t0
    registry_path = os.path.join(d, "registry.sqlite3")
    log_a, log_b = os.path.join(d, "requests-a.jsonl"), os.path.join(d, "requests-b.jsonl")
    sim, api_base = start_simulator("--rpm", "0", "--latency-ms", "20", "--request-log", log_a)
    try:
        # the whole process: interpreter, imports, engine
        cmd = run_cmd(inp, out_a, api_base, "30", f"sqlite://{registry_path}")
        started = time.time()
        proc = subprocess.Popen(cmd, env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        first = None
        while first is None and time.time() - started < 120:
            if os.path.exists(log_a):
                entries = read_log(log_a)
                if entries:
                    first = entries[0]["t"]
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        first_id = read_log(log_a)[0]["custom_id"]
    finally:
        sim.kill()
        sim.wait()
    sim, api_base = start_simulator("--rpm", "0", "--latency-ms", "20", "--request-log", log_b)
    try:
        engine_s = engine_to_first_request(inp, out_b, api_base, registry_path, log_b)
    finally:
        sim.kill()
        sim.wait()
    return {"prompts": n, "setup_s": setup_s, "process_to_first_request_s": first - started,
            "engine_to_first_request_s": engine_s, "first_id": first_id}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--prompts", type=int, default=1500)
    ap.add_argument("--resume-prompts", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for i in range(args.trials):
            r = trial(i, args.prompts, tmp)
            results.append(r)
            print(f"trial {i:2d}: interval {r['interval']:>3}s  done before kill {r['done_before']:4d}  "
                  f"lost {r['lost']}  duplicated {r['duplicated']}  re-sent {r['resent']:3d} "
                  f"(bound {r['bound']:.0f}){'  [finished before the kill]' if r['completed_first'] else ''}",
                  flush=True)
        if results:
            clean = sum(1 for r in results if r["lost"] == 0 and r["duplicated"] == 0 and r["extra"] == 0)
            within = sum(1 for r in results if r["resent"] <= r["bound"])
            print(f"\n{clean} of {len(results)} trials with zero lost and zero duplicated lines; "
                  f"{within} of {len(results)} with re-sent <= in-flight + 2 s of work; "
                  f"re-sent max {max(r['resent'] for r in results)}, "
                  f"mean {sum(r['resent'] for r in results) / len(results):.1f}; "
                  f"re-sent / bound max {max(r['resent'] / r['bound'] for r in results):.2f}")
        if args.resume_prompts:
            r = restart_latency(args.resume_prompts, tmp)
            print(f"\nresume of a {r['prompts']:,}-prompt job killed at 90%: first new request "
                  f"{r['engine_to_first_request_s']:.2f} s after the engine started (run_job called, imports done); "
                  f"{r['process_to_first_request_s']:.2f} s after `promptforge run` was exec'd, interpreter and "
                  f"imports included (first id sent: {r['first_id']}, the first not done)")


if __name__ == "__main__":
    main()
