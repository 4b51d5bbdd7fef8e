"""The ``promptforge`` command: ``run`` a job, ``simulate`` a provider, ``demo`` both.

    promptforge run INPUT --output OUTPUT --model MODEL [--api-base URL] ...
    promptforge simulate --port 8099 --rpm 600 --tpm 90000
    promptforge demo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Sequence

from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import JobFailed, JobHooks, JobSpec, clear_output
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.core.rate_lanes import RateLanes

SIMULATOR_KEY = "sk-promptforge-simulator"


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptforge", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) one batch job")
    run.add_argument("input", help="JSONL of prompts: a local path or gs://bucket/object")
    run.add_argument("--output", required=True, help="output folder: a local path or gs://bucket/prefix")
    run.add_argument("--model", required=True, help="LiteLLM model for lines that name none, e.g. openai/gpt-4o-mini")
    run.add_argument("--api-base", help="provider base URL (any OpenAI-compatible server)")
    run.add_argument("--allow-model", action="append", default=[], metavar="PATTERN",
                     help="let lines name models of another provider matching this pattern, e.g. 'anthropic/*' "
                          "(that provider's own key is used); repeatable. Default: the job's provider only")
    run.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                     help="job-level default body parameter (JSON value), e.g. max_tokens=256; repeatable")
    run.add_argument("--max-in-flight", type=int, default=None,
                     help="cap on requests in flight (default: none; the bound follows rate x latency)")
    run.add_argument("--rpm-hint", type=float, help="where the adaptive controller starts (RPM); not a cap")
    run.add_argument("--tpm-hint", type=float, help="where the adaptive controller starts (TPM); not a cap")
    run.add_argument("--rate-window", type=float, default=30.0, metavar="SECONDS",
                     help="the adaptive controller's window (default 30)")
    run.add_argument("--rpm", type=float, help="fixed requests-per-minute limit instead of adaptive pacing")
    run.add_argument("--tpm", type=float, help="fixed tokens-per-minute limit instead of adaptive pacing")
    run.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    run.add_argument("--transport", choices=("auto", "lean", "litellm"), default="auto",
                     help="how requests are sent: auto (default) uses a lean HTTP client for openai/ models "
                          "and any OpenAI-compatible --api-base, LiteLLM for other providers")
    run.add_argument("--max-attempts", type=int, default=5, help="attempts per prompt on transient errors")
    run.add_argument("--max-line-bytes", type=int, default=2 * 1024 * 1024)
    run.add_argument("--restart", action="store_true", help="discard earlier progress in OUTPUT and start over")
    run.add_argument("--checkpoint-interval", type=float, default=30.0, metavar="SECONDS",
                     help="how often progress is committed (default 30; also at the end)")
    run.add_argument("--registry", default=None,
                     help="job registry: sqlite:///PATH (default $PROMPTFORGE_HOME/registry.sqlite3, "
                          "PROMPTFORGE_HOME defaulting to ~/.promptforge) or firestore://PROJECT[/DATABASE]")
    run.add_argument("--job-id", help="the job's id in the registry (default: INPUT#generation)")
    run.add_argument("--no-share-lanes", action="store_true",
                     help="do not share learned limits with other jobs on the same provider, model and key")
    run.add_argument("--quiet", action="store_true", help="no progress output")

    sim = sub.add_parser("simulate", help="serve an OpenAI-compatible provider simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    sim.add_argument("--rpm", type=float, default=600.0, help="requests-per-minute limit (0: unlimited)")
    sim.add_argument("--tpm", type=float, default=0.0, help="tokens-per-minute limit (0: unlimited)")
    sim.add_argument("--burst-s", type=float, default=2.0, help="seconds of sustained rate a burst may use")
    sim.add_argument("--schedule", default="", help='limits over time, e.g. "0:900,60:300,120:1200" or "0:600/40000"')
    sim.add_argument("--headers", choices=["full", "none", "retry-after"], default="full",
                     help="rate-limit headers sent: all, none, or retry-after on 429 only")
    sim.add_argument("--style", choices=["openai", "azure", "anthropic", "gemini", "vertex", "vllm", "bare"],
                     default="openai", help="how refusals (and rate headers) are worded, as that provider does")
    sim.add_argument("--limiter", choices=["bucket", "sliding", "fixed"], default="bucket",
                     help="how the account counts: token bucket, sliding 60-s window, or fixed per-minute window")
    sim.add_argument("--refusals-count", action="store_true",
                     help="refused requests count against the limit too (OpenAI documents this)")
    sim.add_argument("--concurrency", type=int, default=0,
                     help="a self-hosted server's batch size: more in flight queue, answered slower (0: none)")
    sim.add_argument("--queue", type=int, default=0, help="requests that may wait beyond --concurrency before refusal")
    sim.add_argument("--latency-per-token-ms", type=float, default=0.0,
                     help="extra latency per completion token (long answers take longer)")
    sim.add_argument("--latency-ms", type=float, default=50.0, help="median latency (0: answer at once)")
    sim.add_argument("--latency-sigma", type=float, default=0.3)
    sim.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    sim.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that hang")
    sim.add_argument("--hang-s", type=float, default=300.0)
    sim.add_argument("--completion-tokens", type=int, default=16)
    sim.add_argument("--api-key", help="require this bearer key (to test authentication failures)")
    sim.add_argument("--request-log", help="append one JSON line per request received")
    sim.add_argument("--seed", type=int)

    demo = sub.add_parser("demo", help="simulator + sample file + run, no setup, no cloud, no key")
    demo.add_argument("--dir", default="promptforge-demo", help="where the sample input and the output go")
    demo.add_argument("--prompts", type=int, default=2000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "demo":
        return _demo(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from promptforge_dagster.core.request_policy import KEY_VARIABLES, job_credentials, key_variable, provider_of

    # What a user can get wrong is checked before anything slow is imported or sent.
    api_key, other_keys, policy = job_credentials(args.model, args.api_base, tuple(args.allow_model), os.environ)
    if api_key is None and provider_of(args.model) in KEY_VARIABLES:
        print(f"promptforge: error: no API key for {args.model}: set {key_variable(provider_of(args.model))}",
              file=sys.stderr)
        return 1
    if "://" not in args.input and not os.path.isfile(args.input):
        print(f"promptforge: error: input {args.input} does not exist or is not a file", file=sys.stderr)
        return 1

    from promptforge_dagster.clients.litellm_provider import key_hash
    from promptforge_dagster.clients.registry_for import registry_for
    from promptforge_dagster.clients.storage_for import storage_for

    try:
        config = PipelineConfig(max_in_flight=args.max_in_flight, max_attempts=args.max_attempts)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    if args.checkpoint_interval <= 0:
        print("promptforge: error: --checkpoint-interval must be positive", file=sys.stderr)
        return 2
    spec = JobSpec(args.input, args.output.rstrip("/"), JobDefaults(args.model, dict(args.param)),
                   job_id=args.job_id, max_line_bytes=args.max_line_bytes, pipeline=config,
                   checkpoint_interval_s=args.checkpoint_interval, policy=policy,
                   share_lanes=not args.no_share_lanes)
    try:
        registry = registry_for(args.registry)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    from promptforge_dagster.clients.transport import make_provider

    try:
        provider = make_provider(args.transport, api_base=args.api_base, api_key=api_key, timeout_s=args.timeout,
                                 default_provider=provider_of(args.model), provider_keys=other_keys)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    output_storage = storage_for(spec.output_uri)
    if args.restart:
        clear_output(output_storage, spec.output_uri)
    try:
        lanes = build_lanes(args, key_hash(api_key))
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    from promptforge_dagster import runner

    hooks = JobHooks(log=lambda m: print(f"promptforge: {m}", file=sys.stderr, flush=True),
                     on_resume=None if args.quiet else _say_resumed)
    try:
        result = runner.run(spec, input_storage=storage_for(spec.input_uri), output_storage=output_storage,
                            provider=provider, lanes=lanes, registry=registry, hooks=hooks,
                            progress=runner.Progress(sys.stderr, enabled=not args.quiet))
    except JobFailed as exc:
        print(f"promptforge: job failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("promptforge: cancelled; what is done is kept (rerun with the same --output to resume)",
              file=sys.stderr)
        return 130
    s = result.summary
    print(
        f"done: {s['prompts']} prompts, {s['succeeded']} succeeded, {s['failed']} failed, "
        f"{s['skipped_as_done']} skipped as already done; {s['achieved_rpm']} RPM\n"
        f"{_lanes_line(s['rate_lanes'])}"
        f"results: {result.results_uri}\nsummary: {result.summary_uri}"
        + (f"\nrate plot: {s['rate_plot']}" if s.get("rate_plot") else "")
    )
    return 0


def _say_resumed(resume) -> None:
    if resume.checkpoint is None and not resume.reconciled_parts:
        return
    print(f"resuming: {len(resume.done)} prompts already done (checkpoint epoch "
          f"{resume.checkpoint.epoch if resume.checkpoint else '-'}, {resume.reconciled_parts} later parts "
          f"reconciled); reading from line {resume.position.line_no}", file=sys.stderr, flush=True)


def _lanes_line(lanes: dict) -> str:
    parts = []
    for lane, snap in lanes.items():
        learned = snap.get("learned_rpm_ceiling")
        source = " (stated by the provider)" if snap.get("rpm_limit_source") == "stated" else ""
        bound = snap.get("client_bound_rpm")
        parts.append(f"{lane}: {snap.get('controller')} {snap.get('phase', '')}, allowed {snap.get('allowed_rpm')} RPM"
                     + (f", learned ceiling {learned} RPM{source}" if learned else "")
                     + (f", client-bound at {bound:.0f} RPM" if bound else "")
                     + f", {snap.get('rate_limited', 0)} refused")
    return "rate: " + "; ".join(parts) + "\n" if parts else ""


def build_lanes(args: argparse.Namespace, key_hash: str) -> RateLanes:
    """Fixed limits when --rpm/--tpm are given (the common practice), else adaptive pacing."""
    from promptforge_dagster.clients.litellm_provider import provider_of

    if args.rpm or args.tpm:
        def factory(_lane: str):
            return FixedRateController(args.rpm, now=time.monotonic(), tpm=args.tpm)
    else:
        config = RateConfig(window_s=args.rate_window, rpm_hint=args.rpm_hint, tpm_hint=args.tpm_hint,
                            max_in_flight=args.max_in_flight)
        return RateLanes.adaptive(config, key_hash=key_hash, default_provider=provider_of(args.model),
                                  clock=time.monotonic)
    return RateLanes(factory, key_hash=key_hash, default_provider=provider_of(args.model))


def _simulate(args: argparse.Namespace) -> int:
    from promptforge_dagster.simulator.account import AccountLimits, parse_schedule
    from promptforge_dagster.simulator.server import SimulatorConfig, run_forever

    limits = AccountLimits(rpm=args.rpm or None, tpm=args.tpm or None, burst_s=args.burst_s,
                           schedule=parse_schedule(args.schedule), limiter=args.limiter,
                           refusals_count=args.refusals_count, concurrency=args.concurrency or None,
                           queue=args.queue)
    config = SimulatorConfig(
        limits=limits, headers=args.headers, style=args.style, latency_ms=args.latency_ms,
        latency_per_token_ms=args.latency_per_token_ms, latency_sigma=args.latency_sigma,
        error_rate=args.error_rate, hang_rate=args.hang_rate, hang_s=args.hang_s,
        completion_tokens=args.completion_tokens, api_key=args.api_key, request_log=args.request_log, seed=args.seed,
    )
    run_forever(config, port=args.port)
    return 0


def start_simulator(*flags: str) -> tuple[subprocess.Popen, str]:
    """Start the simulator in its own process (it must not share our CPU-bound event
    loop); returns the process and its ``/v1`` base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptforge_dagster.simulator", "--port", "0", *flags],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip() + "/v1"


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


def _demo(args: argparse.Namespace) -> int:
    os.makedirs(args.dir, exist_ok=True)
    input_path = os.path.join(args.dir, "input.jsonl")
    output = os.path.join(args.dir, "output")
    write_demo_input(input_path, args.prompts)
    print(f"demo: wrote {args.prompts} prompts (plus 2 bad lines) to {input_path}")
    proc, base = start_simulator("--rpm", "4800", "--latency-ms", "40", "--headers", "none")
    print(f"demo: provider simulator at {base}: a 4800 RPM account that sends no rate-limit headers;")
    print("demo: PromptForge is not told the limit and learns it (3-second windows for the demo)")
    try:
        os.environ.pop("OPENAI_API_KEY", None)
        os.environ["OPENAI_API_KEY"] = SIMULATOR_KEY
        return _run(build_parser().parse_args(
            ["run", input_path, "--output", output, "--model", "openai/sim-model", "--api-base", base, "--restart",
             "--rate-window", "3"]
        ))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
