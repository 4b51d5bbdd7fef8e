"""``promptforge demo``: a sample Batch API file, a simulated 4,800 RPM account that states no
limit, and a job run on them: no setup, no cloud, no key.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable

from promptforge_dagster.simulator.launch import SIMULATOR_KEY, start_simulator


def write_demo_input(path: str, prompts: int) -> None:
    """A sample Batch API file with a few deliberately bad lines, to show error records."""
    topics = ["tides", "volcanoes", "honeybees", "compilers", "glaciers", "jazz", "bridges", "comets"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(prompts):
            if i == 10:
                f.write('{"custom_id": "broken", "method": "POST", "url": \n')  # invalid JSON
            elif i == 20:
                f.write(json.dumps({"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"messages": [{"role": "user", "content": "duplicate"}]}}) + "\n")
            f.write(json.dumps({
                "custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "sim-model", "max_tokens": 32,
                         "messages": [{"role": "user", "content": f"Explain {topics[i % len(topics)]} in one line (#{i})."}]},
            }) + "\n")


def demo(args: argparse.Namespace, run: Callable[[list[str]], int]) -> int:
    """``promptforge demo``: write the sample, start a simulator, ``run`` the job on it (argv)."""
    os.makedirs(args.dir, exist_ok=True)
    input_path = os.path.join(args.dir, "input.jsonl")
    output = os.path.join(args.dir, "output")
    write_demo_input(input_path, args.prompts)
    print(f"demo: wrote {args.prompts} prompts (plus 2 bad lines) to {input_path}")
    proc, base = start_simulator("--rpm", "4800", "--latency-ms", "40", "--headers", "none")
    print(f"demo: provider simulator at {base}: a 4800 RPM account that sends no rate-limit headers;")
    print("demo: PromptForge is not told the limit and learns it (3-second windows for the demo)")
    try:
        os.environ["OPENAI_API_KEY"] = SIMULATOR_KEY
        return run(["run", input_path, "--output", output, "--model", "openai/sim-model", "--api-base", base,
                    "--restart", "--rate-window", "3"])
    finally:
        proc.kill()
        proc.wait()
