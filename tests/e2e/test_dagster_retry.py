"""End to end under a real `dagster dev` on loopback: a JSONL file dropped into the local
bucket starts a run through upload_sensor; SIGKILL of its run worker mid-job (its step
process lives on, a zombie) is noticed by run_watchdog, Dagster's run retries start a
new run, the new run takes the lease (fencing the zombie), resumes from the checkpoint,
and the published results.jsonl holds every input line exactly once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop

N = 3000


def proc_cmdlines():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        yield int(pid), raw.replace(b"\x00", b" ").decode(errors="replace")


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def dagster_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    pf_home = tmp_path / "pf"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PROMPTFORGE_HOME": str(pf_home),
           "PROMPTFORGE_SMALL_JOB_PROMPTS": "100",  # this job is "large": a step process apart from the run worker
           "PROMPTFORGE_SIMULATOR_RPM": "9000", "PROMPTFORGE_CHECKPOINT_INTERVAL": "2",
           "PROMPTFORGE_LEASE_TTL": "10", "PROMPTFORGE_HEARTBEAT": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a deployed image would: compiled modules, faster starts
    log = open(tmp_path / "dagster-dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"),
                             "-h", "127.0.0.1", "-p", str(free_port())],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield home, pf_home, proc
    stop(proc)
    for pid, cmd in proc_cmdlines():  # the zombie step process, if it outlived everything
        if str(pf_home) in cmd or str(home) in cmd:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log.close()


def test_sigkill_of_the_run_worker_is_retried_and_resumes_exactly_once(dagster_dev, tmp_path, monkeypatch):
    home, pf_home, dev = dagster_dev
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from dagster import DagsterInstance, DagsterRunStatus

    inputs = pf_home / "bucket" / "inputs"
    # the sensor's first tick creates the registry: from then on the daemon is live
    wait_for(lambda: (pf_home / "registry.sqlite3").exists(), 180, "the first sensor tick")
    inputs.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path / "job.jsonl"
    tmp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"question {i}"}) + "\n" for i in range(N)))
    dropped_at = time.time()
    os.replace(tmp, inputs / "job.jsonl")

    outputs = pf_home / "bucket" / "outputs"

    def parts(prefix=""):
        found = list(outputs.glob(f"*/parts/*/{prefix}*.jsonl"))  # parts/g<generation>/
        return found

    first = wait_for(parts, 180, "the first result part")
    first_result_s = min(p.stat().st_mtime for p in first) - dropped_at

    instance = DagsterInstance.get()
    run = instance.get_runs()[0]
    from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
    from promptforge_dagster.core.job_planning import parse_owner

    registry = SQLiteRegistry(str(pf_home / "registry.sqlite3"))
    owner = wait_for(lambda: [r.owner for r in registry.list(status="running") if r.owner], 30, "the job's owner")[0]
    who = parse_owner(owner)
    worker, step, run_id = who.worker_pid, who.step_pid, who.run_id
    assert run_id == run.run_id and worker != step  # the step runs in a process of its own
    ppid = int(Path(f"/proc/{step}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid == worker  # the step process is the run worker's child: it will outlive the kill
    time.sleep(1.0)
    killed_at = time.time()
    os.kill(worker, signal.SIGKILL)

    retried = wait_for(lambda: [r for r in instance.get_runs() if r.tags.get("dagster/parent_run_id") == run.run_id],
                       120, "the retry run")[0]
    new_part = wait_for(lambda: parts("e000002"), 120, "a result part from the retry")
    kill_to_result_s = min(p.stat().st_mtime for p in new_part) - killed_at

    def finished():
        r = instance.get_run_by_id(retried.run_id)
        return r if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) else None

    final = wait_for(finished, 240, "the retry to finish")
    failures = [e.message or "" for e in instance.all_logs(final.run_id) if e.dagster_event
                and e.dagster_event.is_failure] + [str(getattr(e.dagster_event, "event_specific_data", ""))[:800]
                                                   for e in instance.all_logs(final.run_id)
                                                   if e.dagster_event and e.dagster_event.event_type_value ==
                                                   "STEP_FAILURE"]
    assert final.status == DagsterRunStatus.SUCCESS, failures
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE

    results = list(outputs.glob("*job.jsonl@*/results.jsonl"))
    ids = Counter(json.loads(l)["custom_id"] for l in results[0].read_text().splitlines())
    assert ids == Counter(f"r{i}" for i in range(N))
    summary = json.loads((results[0].parent / "summary.json").read_text())
    assert summary["epoch"] >= 2 and summary["succeeded"] == N

    # a small job (50 prompts, under the threshold of 100: its lines are counted) takes the shared path
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"q {i}"}) + "\n" for i in range(50)))
    dropped_small = time.time()
    os.replace(small, inputs / "small.jsonl")
    small_parts = wait_for(lambda: list(outputs.glob("*small.jsonl@*/parts/*/*.jsonl")), 120, "the small job's first part")
    small_first_s = min(p.stat().st_mtime for p in small_parts) - dropped_small
    small_results = wait_for(lambda: list(outputs.glob("*small.jsonl@*/results.jsonl")), 120, "the small job's results")
    assert len(small_results[0].read_text().splitlines()) == 50
    small_run = [r for r in instance.get_runs() if "small.jsonl" in (r.tags.get("dagster/partition") or "")][0]
    assert small_run.job_name == "promptforge_small_job"

    timings = {"large_drop_to_first_result_s": round(first_result_s, 2),
               "kill_to_first_new_result_s": round(kill_to_result_s, 2),
               "small_drop_to_first_result_s": round(small_first_s, 2), "large_prompts": N, "small_prompts": 100}
    print("\n" + json.dumps(timings))
    (ROOT / ".e2e-timings.json").write_text(json.dumps(timings))
