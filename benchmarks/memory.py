"""Peak RSS of `promptforge run` on a small and a large job against an unlimited simulator.

    uv run python benchmarks/memory.py --sizes 1000,1000000

Prints the peak RSS of each run, the large/small ratio (goal <= 1.10) and each run's
excess over a process that only imports litellm (goal <= 100 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import run_measured, start_simulator, write_batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--max-in-flight", type=int, default=64)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sim, base = start_simulator("--rpm", "0", "--latency-ms", "0")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            code, base_rss, out = run_measured([sys.executable, "-c", "import litellm"])
            assert code == 0, out
            print(f"baseline (import litellm only): peak RSS {base_rss / 1024:.1f} MiB")
            peaks = {}
            for n in sizes:
                path = f"{tmp}/in-{n}.jsonl"
                write_batch(path, n)
                t0 = time.monotonic()
                code, rss, out = run_measured([
                    sys.executable, "-m", "promptforge_dagster.cli", "run", path, "--output", f"{tmp}/out-{n}",
                    "--model", "openai/sim-model", "--api-base", base, "--max-in-flight", str(args.max_in_flight),
                    "--quiet",
                ])
                wall = time.monotonic() - t0
                if code != 0:
                    raise SystemExit(f"run of {n} failed:\n{out[-2000:]}")
                peaks[n] = rss
                print(f"{n:>9} prompts: peak RSS {rss / 1024:.1f} MiB, {(rss - base_rss) / 1024:+.1f} MiB over "
                      f"baseline, {wall:.0f} s, {n / wall:.0f} prompts/s")
            small, large = min(sizes), max(sizes)
            print(f"ratio peak RSS {large}/{small}: {peaks[large] / peaks[small]:.3f} (goal <= 1.10)")
            print(f"largest excess over baseline: {(max(peaks.values()) - base_rss) / 1024:.1f} MiB (goal <= 100)")
    finally:
        sim.kill()
        sim.wait()


if __name__ == "__main__":
    main()
