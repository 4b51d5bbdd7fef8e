"""Chaos under a real `dagster dev`: jobs dropped into the local bucket, their run worker
(and, in some trials, its step process too) SIGKILLed at a random moment of the scan,
the sending or the publish. Every job must end exactly once: results.jsonl holds one
line per input line, every prompt's id once, and the job's registry record ends
``succeeded``; no job is left ``queued`` or ``running`` and no run is left active.

Trials: PROMPTFORGE_CHAOS_TRIALS (default 6: each phase x {run worker, worker and step}).
`PROMPTFORGE_CHAOS_TRIALS=50 uv run pytest tests/e2e/test_chaos.py -s` is the long run
recorded in docs/BENCHMARKS.md."""

import json
import os
import random
import signal
import time
from collections import Counter

from promptforge_dagster.core.checkpoint import BitsetCheckpoint, CorruptCheckpoint
from tests.e2e.test_dagster_retry import dagster_dev, wait_for  # noqa: F401 - the fixture

PROMPTS = 400  # real prompts per job: sent to the simulator
FILLER = 60_000  # lines with no prompt (each its own error record): a scan and a publish long enough to hit
PHASES = ("scan", "sending", "publish")
TARGETS = ("worker", "worker+step")


def job_input(name: str) -> bytes:
    real = [json.dumps({"id": f"{name}-r{i}", "prompt": f"q {i}"}).encode() for i in range(PROMPTS)]
    filler = [b'{"id": "%s-f%d"}' % (name.encode(), i) for i in range(FILLER)]  # no prompt: invalid_request
    lines = real[:PROMPTS // 2] + filler + real[PROMPTS // 2:]
    return b"\n".join(lines) + b"\n"


def checkpoint_status(out_dir) -> str | None:
    path = out_dir / "checkpoint.pfck"
    try:
        return BitsetCheckpoint.decode(path.read_bytes()).status
    except (OSError, CorruptCheckpoint, ValueError):
        return None


def phase_now(out_dir, record) -> str | None:
    """Which phase the job is in, as seen from outside."""
    if record is None or record.status != "running" or not record.owner:
        return None
    if not (out_dir / "scan.json").exists():
        return "scan"
    status = checkpoint_status(out_dir)
    if status == "publishing":
        return "publish"
    if status == "running" and any(out_dir.glob("parts/*/*.part.jsonl")):
        return "sending"
    return None


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_sigkill_at_random_moments_ends_every_job_exactly_once(dagster_dev, tmp_path, monkeypatch):
    home, pf_home, _dev = dagster_dev
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from dagster import DagsterInstance, DagsterRunStatus

    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.core.job_planning import parse_owner

    trials = int(os.environ.get("PROMPTFORGE_CHAOS_TRIALS", "6"))
    rng = random.Random(int(os.environ.get("PROMPTFORGE_CHAOS_SEED", "7")))
    plan = [(PHASES[i % 3], TARGETS[(i // 3) % 2]) for i in range(trials)]
    wait_for(lambda: (pf_home / "registry.sqlite3").exists(), 180, "the first sensor tick")
    registry = SQLiteRegistry(str(pf_home / "registry.sqlite3"))
    instance = DagsterInstance.get()
    inputs, outputs = pf_home / "bucket" / "inputs", pf_home / "bucket" / "outputs"
    inputs.mkdir(parents=True, exist_ok=True)
    report = []
    for trial, (phase, target) in enumerate(plan):
        name = f"chaos{trial:02d}"
        staged = tmp_path / f"{name}.jsonl"
        staged.write_bytes(job_input(name))
        os.replace(staged, inputs / f"{name}.jsonl")

        def record():
            found = [r for r in registry.list(limit=10_000) if r.input_uri.endswith(f"/{name}.jsonl")]
            return found[0] if found else None

        rec = wait_for(record, 120, f"{name}'s job record")
        out_dir = next(iter(outputs.glob(f"*{name}.jsonl@*")), None) or (outputs / "?")
        deadline, hit, killed = time.monotonic() + 240, None, []
        while time.monotonic() < deadline and hit is None:
            rec = record()
            if rec.status in ("succeeded", "failed", "rejected", "cancelled"):
                break  # too late for this phase: the trial still checks the ending
            out_dir = next(iter(outputs.glob(f"*{name}.jsonl@*")), out_dir)
            seen = phase_now(out_dir, rec)
            if seen == phase or (seen is not None and PHASES.index(seen) > PHASES.index(phase)):
                time.sleep(rng.uniform(0.0, 0.05 if phase != "sending" else 1.0))
                who = parse_owner(rec.owner)
                hit = phase_now(out_dir, record()) or seen
                kill(who.worker_pid)
                killed.append("worker")
                if target == "worker+step" and who.step_pid:
                    kill(who.step_pid)
                    killed.append("step")
            else:
                time.sleep(0.01)

        def ended():
            r = record()
            runs = instance.get_runs(filters=None)
            active = [x for x in runs if x.tags.get("dagster/partition") == r.job_id and x.status in (
                DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                DagsterRunStatus.STARTED)]
            return r if r.status == "succeeded" and not active else None

        rec = wait_for(ended, 400, f"{name} to succeed after a kill in {phase}")
        out_dir = next(iter(outputs.glob(f"*{name}.jsonl@*")))
        lines = (out_dir / "results.jsonl").read_bytes().splitlines()
        ids = Counter(json.loads(line)["custom_id"] for line in lines)
        assert len(lines) == PROMPTS + FILLER, (name, phase, len(lines))
        assert all(count == 1 for count in ids.values()), (name, phase, ids.most_common(3))
        real = {f"{name}-r{i}" for i in range(PROMPTS)}
        answered = {json.loads(line)["custom_id"] for line in lines if json.loads(line)["error"] is None}
        assert real <= answered, (name, phase, len(real - answered))
        summary = json.loads((out_dir / "summary.json").read_text())
        assert summary["prompts"] == PROMPTS + FILLER and summary["succeeded"] == PROMPTS
        report.append({"trial": trial, "asked": phase, "hit": hit, "killed": killed, "epoch": summary["epoch"]})

    # nothing is left queued or running, no run left active, in the registry or in Dagster
    assert not registry.list(status="queued") and not registry.list(status="running")
    active = [r for r in instance.get_runs() if r.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING,
                                                            DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED)]
    assert not active, [(r.run_id, r.status) for r in active]
    killed_trials = [r for r in report if r["killed"]]
    print("\n" + json.dumps({"trials": len(report), "killed": len(killed_trials),
                             "hit": Counter(r["hit"] for r in killed_trials), "report": report}))
    assert len(killed_trials) >= max(1, trials // 2)  # most trials did kill something mid-job
