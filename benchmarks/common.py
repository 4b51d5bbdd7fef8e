"""Helpers shared by the benchmark scripts: inputs, the simulator, child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from promptforge_dagster.simulator.launch import start_simulator  # noqa: E402

__all__ = ["ROOT", "start_simulator", "write_batch", "run_measured", "child_env", "alternate_children"]


def write_batch(path: str, n: int) -> None:
    """A Batch API file of ``n`` short prompts, written in big blocks."""
    with open(path, "w") as f:
        block = []
        for i in range(n):
            block.append(json.dumps({
                "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "sim-model", "max_tokens": 16,
                         "messages": [{"role": "user", "content": f"Summarise item number {i} briefly."}]},
            }))
            if len(block) >= 10_000:
                f.write("\n".join(block) + "\n")
                block = []
        if block:
            f.write("\n".join(block) + "\n")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["OPENAI_API_KEY"] = "sk-bench"
    return env


def run_measured(cmd: list[str], **kw) -> tuple[int, int, str]:
    """Run ``cmd``; return (exit code, peak RSS in KiB of that process alone, its output)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=child_env(), **kw)
        _pid, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to get its own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        return proc.returncode, usage.ru_maxrss, log.read()


def alternate_children(script: str, modes: tuple[str, ...], rounds: int, prompts: int, concurrency: int,
                       base: str) -> dict[str, list[float]]:
    """Run ``script --child MODE`` for each mode in turn, ``rounds`` times, each in a fresh
    process on one shared input; each child prints ``{"rate": ...}`` last. Returns the rates."""
    import tempfile

    rates: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/in.jsonl"
        write_batch(path, prompts)
        for r in range(rounds):
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, script, "--child", mode, "--input", path, "--api-base", base,
                     "--concurrency", str(concurrency)],
                    capture_output=True, text=True, env=child_env(), check=True,
                ).stdout
                rate = json.loads(out.strip().splitlines()[-1])["rate"]
                rates[mode].append(rate)
                print(f"round {r + 1} {mode:>7}: {rate:.0f} completions/s", flush=True)
    return rates
