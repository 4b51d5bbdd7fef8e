"""Shared lanes: 3 concurrent `promptforge run` jobs on one account, sharing on and off.

    uv run python benchmarks/shared_lanes.py --rpm 1800 --duration 90 --window 3

One simulator (one account: --rpm, no rate-limit headers, 429s worded as --style), one API key, so all three
jobs pace on the same lane; they start --stagger seconds apart, so each joins a lane the
others are already using. With sharing, their learned limits meet in one job registry
(SQLite); without (`--no-share-lanes`), each learns alone. From the simulator's request
log: aggregate goodput as a share of the ceiling and the refused share, over the whole
run and over its second half. Then a warm start: a job on the lane a finished job has
learned, with its goodput in its first window.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from common import ROOT, child_env, start_simulator, write_batch


def read_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def figures(entries: list[dict], t0: float, t1: float, ceiling_rps: float) -> tuple[float, float]:
    window = [e for e in entries if t0 <= e["t"] < t1]
    ok = sum(1 for e in window if e["status"] == 200)
    refused = sum(1 for e in window if e["status"] == 429)
    return ok / (ceiling_rps * (t1 - t0)), refused / max(1, ok + refused)


def run_jobs(tmp: str, name: str, n_jobs: int, args, share: bool) -> dict:
    d = os.path.join(tmp, name)
    os.makedirs(d)
    log = os.path.join(d, "requests.jsonl")
    sim, api_base = start_simulator("--rpm", str(args.rpm), "--headers", "none", "--latency-ms", "100",
                                    "--style", args.style, "--request-log", log)
    registry = f"sqlite://{os.path.join(d, 'registry.sqlite3')}"
    procs = []
    try:
        for j in range(n_jobs):
            inp = os.path.join(d, f"in{j}.jsonl")
            write_batch(inp, int(args.rpm * args.duration / 60) + 1000)
            cmd = [sys.executable, "-m", "promptforge_dagster.cli", "run", inp, "--output", os.path.join(d, f"out{j}"),
                   "--model", "openai/sim-model", "--api-base", api_base, "--rate-window", str(args.window),
                   "--registry", registry, "--quiet", "--max-in-flight", "64"]
            if not share:
                cmd.append("--no-share-lanes")
            procs.append(subprocess.Popen(cmd, env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
            if j < n_jobs - 1:
                time.sleep(args.stagger)  # jobs join a lane others are already pacing on
        start = None
        while start is None:
            entries = read_log(log)
            start = entries[0]["t"] if entries else None
            time.sleep(0.2)
        time.sleep(max(0.0, start + args.duration - time.time()))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        sim.kill()
        sim.wait()
    entries = read_log(log)
    rps = args.rpm / 60.0
    whole = figures(entries, start, start + args.duration, rps)
    half = figures(entries, start + args.duration / 2, start + args.duration, rps)
    return {"whole": whole, "second_half": half}


def warm_start(tmp: str, args) -> dict:
    """A job learns the lane and finishes; a second job starts on it."""
    d = os.path.join(tmp, "warm")
    os.makedirs(d)
    log = os.path.join(d, "requests.jsonl")
    sim, api_base = start_simulator("--rpm", str(args.rpm), "--headers", "none", "--latency-ms", "100",
                                    "--style", args.style, "--request-log", log)
    registry = f"sqlite://{os.path.join(d, 'registry.sqlite3')}"
    try:
        def job(i: int, prompts: int) -> subprocess.CompletedProcess:
            inp = os.path.join(d, f"in{i}.jsonl")
            write_batch(inp, prompts)
            return subprocess.run([sys.executable, "-m", "promptforge_dagster.cli", "run", inp, "--output",
                                   os.path.join(d, f"out{i}"), "--model", "openai/sim-model", "--api-base", api_base,
                                   "--rate-window", str(args.window), "--registry", registry, "--quiet"],
                                  env=child_env(), cwd=ROOT, capture_output=True, text=True)

        first = job(0, int(args.rpm / 60 * 40))  # about 40 s of work at the ceiling
        n_first = len(read_log(log))
        second_started = time.time()
        second = job(1, int(args.rpm / 60 * 10))
        if first.returncode or second.returncode:
            raise RuntimeError(first.stderr[-300:] + second.stderr[-300:])
    finally:
        sim.kill()
        sim.wait()
    entries = read_log(log)[n_first:]
    t0 = entries[0]["t"]
    goodput, refused = figures(entries, t0, t0 + args.window, args.rpm / 60.0)
    return {"first_window_goodput": goodput, "first_window_refused": refused,
            "start_to_first_request_s": t0 - second_started}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpm", type=float, default=1800.0)
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--stagger", type=float, default=15.0, help="seconds between job starts")
    ap.add_argument("--style", default="openai", help="how the simulator words its 429s: openai (\"Limit N\"), "
                                                      "vertex or bare (no limit named), ...")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for share in (True, False):
            r = run_jobs(tmp, "shared" if share else "alone", args.jobs, args, share)
            print(f"{args.jobs} jobs, sharing {'on ' if share else 'off'}: aggregate goodput "
                  f"{r['whole'][0]:.3f} of the ceiling, {100 * r['whole'][1]:.2f}% refused; second half "
                  f"{r['second_half'][0]:.3f}, {100 * r['second_half'][1]:.2f}% refused", flush=True)
        w = warm_start(tmp, args)
        print(f"warm start (a job on a lane another job learned): first window ({args.window:.0f} s) goodput "
              f"{w['first_window_goodput']:.3f} of the ceiling, {100 * w['first_window_refused']:.2f}% refused")


if __name__ == "__main__":
    main()
