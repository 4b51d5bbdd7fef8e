"""Memory of `promptforge run` as a job grows: peak RSS and the RSS slope over the second
half of each run, against an unlimited simulator.

    uv run python benchmarks/memory.py --sizes 20000,1000000

RSS is sampled every half second from /proc while the run goes; the slope over the second
half (least squares, in bytes per prompt) says whether anything still grows once warm-up is
over. Prints each run's peak, slope, wall time and rate, and the ratio of peaks
(goal: the largest job's peak <= 1.03x the smallest's, slope ~0, 1M in under 15 minutes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import child_env, start_simulator, write_batch

SAMPLE_S = 0.5


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def measure(cmd: list[str]) -> tuple[int, list[tuple[float, int]], float, int]:
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=child_env())
        samples: list[tuple[float, int]] = []
        while proc.poll() is None:
            rss = rss_kib(proc.pid)
            if rss is not None:
                samples.append((time.monotonic() - t0, rss))
            time.sleep(SAMPLE_S)
        wall = time.monotonic() - t0
        log.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"run failed:\n{log.read()[-2000:]}")
        return proc.returncode, samples, wall, max((r for _, r in samples), default=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,1000000")
    ap.add_argument("--transport", default="auto")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sim, base = start_simulator("--rpm", "0", "--latency-ms", "0")
    peaks = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                path = f"{tmp}/in-{n}.jsonl"
                write_batch(path, n)
                cmd = [sys.executable, "-m", "promptforge_dagster.cli", "run", path, "--output", f"{tmp}/out-{n}",
                       "--model", "openai/sim-model", "--api-base", base, "--transport", args.transport, "--quiet"]
                _code, samples, wall, peak = measure(cmd)
                second = [(t, r * 1024.0) for t, r in samples if t >= wall / 2]
                per_prompt = slope(second) * wall / n  # bytes per second -> bytes per prompt
                peaks[n] = peak
                print(f"{n:>9} prompts: {wall:.0f} s ({n / wall:.0f} prompts/s), peak RSS {peak / 1024:.1f} MiB, "
                      f"second-half slope {per_prompt:+.2f} bytes/prompt "
                      f"({slope(second) / 1024:+.1f} KiB/s over {len(second)} samples)", flush=True)
                os.remove(path)
        small, large = min(sizes), max(sizes)
        print(f"ratio peak RSS {large}/{small}: {peaks[large] / peaks[small]:.3f} (goal <= 1.03)")
    finally:
        sim.kill()
        sim.wait()


if __name__ == "__main__":
    main()
