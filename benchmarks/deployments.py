"""Two deployments of one model with different hidden ceilings, against the sum of them.

    uv run python benchmarks/deployments.py --rpm-a 1200 --rpm-b 3000 --duration 120 --window 5

Two simulators (two accounts, no rate-limit headers, bare 429s) serve one model through a
``--deployments`` file; one `promptforge run` gets enough prompts for ``--duration`` seconds
at the sum of the ceilings. From each simulator's request log: goodput as a share of the
sum (whole run, discovery included, and second half) and the refused share. Goal (issue
16): >= 0.90 of the sum with <= 2% refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import ROOT, child_env, start_simulator, write_batch
from shared_lanes import read_log


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpm-a", type=float, default=1200.0)
    ap.add_argument("--rpm-b", type=float, default=3000.0)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of work at the sum of the ceilings")
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    args = ap.parse_args()
    total_rpm = args.rpm_a + args.rpm_b
    prompts = int(total_rpm * args.duration / 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        logs = [os.path.join(tmp, "a.log"), os.path.join(tmp, "b.log")]
        sims = [start_simulator("--rpm", str(rpm), "--headers", "none", "--style", "bare", "--latency-ms",
                                str(args.latency_ms), "--request-log", log)
                for rpm, log in ((args.rpm_a, logs[0]), (args.rpm_b, logs[1]))]
        try:
            with open(os.path.join(tmp, "deployments.json"), "w") as f:
                json.dump({"model_list": [
                    {"model_name": "sim-model", "litellm_params": {"model": "openai/sim-model", "api_base": base,
                                                                   "api_key": f"os.environ/{var}"},
                     "model_info": {"id": name}}
                    for (_p, base), var, name in zip(sims, ("KEY_A", "KEY_B"), ("a", "b"))]}, f)
            write_batch(os.path.join(tmp, "in.jsonl"), prompts)
            env = {**child_env(), "KEY_A": "sk-a", "KEY_B": "sk-b"}
            t0 = time.time()
            p = subprocess.run([sys.executable, "-m", "promptforge_dagster.cli", "run", os.path.join(tmp, "in.jsonl"),
                                "--output", os.path.join(tmp, "out"), "--model", "openai/sim-model",
                                "--deployments", os.path.join(tmp, "deployments.json"),
                                "--rate-window", str(args.window), "--quiet"],
                               capture_output=True, text=True, env=env, cwd=ROOT)
            t1 = time.time()
        finally:
            for proc, _base in sims:
                proc.kill()
                proc.wait()
        if p.returncode != 0:
            raise SystemExit(f"the run failed: {p.stderr[-2000:]}")
        entries = [e for log in logs for e in read_log(log)]
        per = {name: read_log(log) for name, log in zip(("a", "b"), logs)}
        end = max(e["t"] for e in entries)
        mid = t0 + (end - t0) / 2
        rows = []
        for label, lo in (("whole run", t0), ("second half", mid)):
            window = [e for e in entries if lo <= e["t"] <= end]
            ok = sum(e["status"] == 200 for e in window)
            refused = sum(e["status"] == 429 for e in window)
            share = ok / (total_rpm / 60.0 * (end - lo))
            rows.append((label, share, refused / max(1, ok + refused)))
        print(f"deployments a={args.rpm_a:g} RPM, b={args.rpm_b:g} RPM (sum {total_rpm:g}), {prompts} prompts, "
              f"answers {args.latency_ms:g} ms, --rate-window {args.window:g}; run took {t1 - t0:.1f} s")
        for name, es in per.items():
            ok = sum(e["status"] == 200 for e in es)
            span = (max(e["t"] for e in es) - t0) if es else 1.0
            print(f"  deployment {name}: {ok} answered, {sum(e['status'] == 429 for e in es)} refused, "
                  f"{ok / span * 60:.0f} RPM over its span")
        for label, share, refused in rows:
            met = "met " if share >= 0.90 and refused <= 0.02 else "MISS"
            print(f"{met} {label:12}: goodput {share:.3f} of the sum of ceilings (goal 0.90), "
                  f"refused {refused:.2%} (goal 2%)")
        print(p.stdout.strip().splitlines()[1] if len(p.stdout.strip().splitlines()) > 1 else p.stdout)


if __name__ == "__main__":
    main()
