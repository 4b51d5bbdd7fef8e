"""Exactly-once under SIGKILL, with real processes: `promptforge run` against the
simulator is killed at a random moment and rerun with the same output. Every input id
appears exactly once in results.jsonl, and the prompts sent again (counted from the
simulator's request log) are at most those in flight plus two seconds of work. Two
attempts on one job at once: the older one loses its lease, stops, and never publishes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import ROOT
from tests.test_cli import batch_file

PROMPTFORGE = [sys.executable, "-m", "promptforge_dagster.cli"]
MAX_IN_FLIGHT = 16


def start(args, env=None):
    full_env = {**os.environ, "OPENAI_API_KEY": "sk-test", **(env or {})}
    return subprocess.Popen([*PROMPTFORGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=ROOT, start_new_session=True)


def run_args(inp, out, sim, *extra):
    hint = [] if "--rpm" in extra else ["--rpm-hint", "20000"]  # a fixed --rpm and a hint contradict
    return ["run", str(inp), "--output", str(out), "--model", "openai/gpt-4o-mini", "--api-base", sim.api_base,
            "--max-in-flight", str(MAX_IN_FLIGHT), *hint, "--quiet", *extra]


def wait_for_progress(out, proc, timeout=60.0):
    """Until the first part is written (the job is really running) or the process ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "parts").exists() and any((out / "parts").rglob("*.jsonl")):
            return True
        time.sleep(0.05)
    return False


def log_entries(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def check_exactly_once(out, n):
    ids = [json.loads(l)["custom_id"] for l in (out / "results.jsonl").read_text().splitlines()]
    assert len(ids) == n and Counter(ids) == Counter(f"r{i}" for i in range(n))


@pytest.mark.parametrize("trial", range(10))
def test_sigkill_at_a_random_moment_then_rerun_is_exactly_once(trial, tmp_path, simulator_factory):
    rng = random.Random(trial)
    n = 1000
    inp, out, log = tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "requests.jsonl"
    batch_file(inp, n)
    sim = simulator_factory("--rpm", "0", "--latency-ms", "20", "--request-log", str(log))
    interval = rng.choice(["0.5", "1", "3", "30"])
    first = start(run_args(inp, out, sim, "--checkpoint-interval", interval))
    assert wait_for_progress(out, first), first.communicate()
    time.sleep(rng.uniform(0.0, 2.5))
    try:
        os.killpg(first.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it finished first: the rerun must then send nothing
    first.wait(timeout=10)
    before = log_entries(log)
    ok_before = [e for e in before if e["status"] == 200]

    second = start(run_args(inp, out, sim, "--checkpoint-interval", interval))
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    check_exactly_once(out, n)

    after = log_entries(log)[len(before):]
    resent = {e["custom_id"] for e in after if e["status"] == 200} & {e["custom_id"] for e in ok_before}
    # work per second of the killed run, from its own request log
    span = max(1e-3, ok_before[-1]["t"] - ok_before[0]["t"]) if len(ok_before) > 1 else 1.0
    two_seconds_of_work = len(ok_before) / span * 2.0
    assert len(resent) <= MAX_IN_FLIGHT + two_seconds_of_work, (len(resent), len(ok_before), span)
    assert json.loads((out / "summary.json").read_text())["succeeded"] == n


def test_two_attempts_at_once_the_older_stops_and_only_the_newer_publishes(tmp_path, simulator_factory):
    n = 400
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    batch_file(inp, n)
    sim = simulator_factory("--rpm", "1500", "--headers", "full", "--latency-ms", "20")
    args = run_args(inp, out, sim, "--checkpoint-interval", "0.5", "--rpm", "1500")
    older = start(args)
    assert wait_for_progress(out, older)
    newer = start(args)  # a retry beside a zombie: it takes the lease over
    _, older_err = older.communicate(timeout=120)
    _, newer_err = newer.communicate(timeout=300)
    assert older.returncode == 1 and "another attempt" in older_err or "superseded" in older_err, older_err
    assert newer.returncode == 0, newer_err
    check_exactly_once(out, n)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epoch"] == 2  # published by the newer attempt
    older_parts = [p.name for p in (out / "parts").rglob("*.jsonl") if p.name.startswith("e000001-")]
    assert older_parts  # the zombie's work was kept (once), not thrown away
