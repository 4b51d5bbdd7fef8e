"""The ``promptforge`` command: ``run`` a job, ``simulate`` a provider, ``demo`` both.

    promptforge run INPUT --output OUTPUT --model MODEL [--api-base URL] ...
    promptforge simulate --port 8099 --rpm 600 --tpm 90000
    promptforge demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import JobFailed, JobHooks, JobSpec, clear_output
from promptforge_dagster.core.job.errors import RETRYABLE_ERROR_CODES
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.simulator.launch import add_simulate_arguments, simulate


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


EXIT_CODES = """exit codes:
  0    the job finished (results.jsonl and summary.json are written)
  1    the job failed or cannot start: one line says why (no API key, missing input, ...);
       what is done is kept, rerun with the same --output to resume
  2    the command line is wrong (a flag, a value, contradictory flags)
  130  interrupted (Ctrl-C or SIGTERM): progress is saved, rerun with the same --output to resume"""

RUN_EPILOG = f"""examples:
  promptforge run prompts.jsonl --output out/ --model openai/gpt-4o-mini
  promptforge run prompts.jsonl --output out/ --model openai/gpt-4o-mini --dry-run
  promptforge run gs://bucket/in/prompts.jsonl --output gs://bucket/out/job1 --model openai/gpt-4o-mini
  promptforge run prompts.jsonl --output out/ --model hosted_vllm/llama --api-base http://localhost:8000/v1
  promptforge run prompts.jsonl --output out/ --model openai/gpt-4o-mini --deployments deployments.yaml
  promptforge status out/

environment:
  OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, ...   each provider's key, by its standard name
  PROMPTFORGE_HOME       where the local job registry lives (default ~/.promptforge)
  GOOGLE_APPLICATION_CREDENTIALS   for gs:// paths (or gcloud auth application-default login)
  every variable: promptforge_dagster/settings.py

{EXIT_CODES}"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown; examples and tables kept as written."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("promptforge-dagster")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptforge", formatter_class=_HelpFormatter, epilog=EXIT_CODES,
        description="Run LLM batch jobs of any size: a JSONL file of prompts in, results.jsonl (OpenAI Batch "
                    "output format) out, at the fastest rate the provider account allows, resumable after any crash.")
    parser.add_argument("--version", action="version", version=f"promptforge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) one batch job", formatter_class=_HelpFormatter,
                         epilog=RUN_EPILOG, description="Run (or resume) one batch job.")
    run.add_argument("input", help="JSONL of prompts (.jsonl or .jsonl.gz): a local path or gs://bucket/object")
    run.add_argument("--output", required=True, help="output folder: a local path or gs://bucket/prefix")
    run.add_argument("--model", required=True, help="model for lines that name none, e.g. openai/gpt-4o-mini")
    run.add_argument("--dry-run", action="store_true",
                     help="read and check every line, estimate tokens, cost and time; send nothing, write nothing")
    prov = run.add_argument_group("provider")
    prov.add_argument("--api-base", help="provider base URL (any OpenAI-compatible server)")
    prov.add_argument("--allow-model", action="append", default=[], metavar="PATTERN",
                      help="let lines name models of another provider matching this pattern, e.g. 'anthropic/*' "
                           "(that provider's own key is used); repeatable; by default the job's provider only")
    prov.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                      help="job-level default body parameter (JSON value), e.g. max_tokens=256; repeatable")
    prov.add_argument("--api-version", metavar="VERSION",
                      help="Azure OpenAI's api-version, e.g. 2024-10-21 (with an azure/DEPLOYMENT model and "
                           "--api-base https://RESOURCE.openai.azure.com)")
    prov.add_argument("--deployments", metavar="FILE",
                      help="several deployments (keys, base URLs, regions) for a model, in LiteLLM Router's "
                           "model_list format (JSON or YAML, keys as os.environ/VARIABLE); each deployment is "
                           "paced as its own lane and requests go to whichever has allowance")
    prov.add_argument("--transport", choices=("auto", "lean", "litellm"), default="auto",
                      help="how requests are sent: auto uses a lean HTTP client for openai/ models and any "
                           "OpenAI-compatible --api-base, LiteLLM for other providers")
    prov.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                      help="deadline for one whole request")
    pace = run.add_argument_group("pacing (adaptive by default: nothing to configure)")
    pace.add_argument("--max-in-flight", type=int, default=None,
                      help="cap on requests in flight (by default the bound follows rate x latency)")
    pace.add_argument("--rpm-hint", type=float, help="where the adaptive controller starts (RPM); not a cap")
    pace.add_argument("--tpm-hint", type=float, help="where the adaptive controller starts (TPM); not a cap")
    pace.add_argument("--rate-window", type=float, default=30.0, metavar="SECONDS",
                      help="the adaptive controller's window")
    pace.add_argument("--rpm", type=float, help="a fixed requests-per-minute limit instead of adaptive pacing")
    pace.add_argument("--tpm", type=float, help="a fixed tokens-per-minute limit instead of adaptive pacing")
    pace.add_argument("--no-share-lanes", action="store_true",
                      help="do not share learned limits with other jobs on the same provider, model and key")
    pace.add_argument("--max-cost", type=float, default=None, metavar="USD",
                      help="stop cleanly once this run has spent this much (LiteLLM's price map); "
                           "a rerun resumes")
    retry = run.add_argument_group("retries and input")
    retry.add_argument("--max-attempts", type=int, default=5, help="attempts per prompt on transient errors")
    retry.add_argument("--max-line-bytes", type=int, default=2 * 1024 * 1024,
                       help="longer lines become line_too_long error records")
    state = run.add_argument_group("state")
    state.add_argument("--restart", action="store_true", help="discard earlier progress in OUTPUT and start over")
    state.add_argument("--checkpoint-interval", type=float, default=30.0, metavar="SECONDS",
                       help="how often progress is committed (also at the end)")
    state.add_argument("--registry", default=None,
                       help="job registry: sqlite:///PATH (default $PROMPTFORGE_HOME/registry.sqlite3) or "
                            "firestore://PROJECT[/DATABASE]")
    state.add_argument("--job-id", help="the job's id in the registry (default: INPUT#generation->OUTPUT)")
    state.add_argument("--rerun-failed", action="store_true",
                       help="send again only prompts whose results are retryable failures; the new results "
                            "replace them (the job must have published)")
    out = run.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress output")

    rerun = sub.add_parser("rerun-failed", formatter_class=_HelpFormatter, epilog=EXIT_CODES,
                           help="send again only the prompts of a finished job whose results are retryable "
                                "failures (rate_limited, retries_exhausted); the new results replace them")
    rerun.add_argument("output", help="the job's output folder")
    rerun.add_argument("--api-base", help="provider base URL, as the job was run with")
    rerun.add_argument("--quiet", action="store_true", help="no progress output")

    export = sub.add_parser("export", formatter_class=_HelpFormatter, epilog=EXIT_CODES,
                            help="write a job's results as a Parquet or CSV table")
    export.add_argument("output", help="the job's output folder")
    export.add_argument("--to", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--dest", help="where to write (default results.parquet or results.csv here)")
    export.add_argument("--input-order", action="store_true",
                        help="rows in input line order (read from the job's parts) instead of completion order")

    status = sub.add_parser("status", help="show a job's progress from its OUTPUT folder (sends nothing)",
                            formatter_class=_HelpFormatter, epilog=EXIT_CODES)
    status.add_argument("output", help="the job's output folder (a local path or gs://bucket/prefix)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    sim = sub.add_parser("simulate", help="serve an OpenAI-compatible provider simulator on 127.0.0.1")
    add_simulate_arguments(sim)

    demo = sub.add_parser("demo", help="simulator + sample file + run, no setup, no cloud, no key")
    demo.add_argument("--dir", default="promptforge-demo", help="where the sample input and the output go")
    demo.add_argument("--prompts", type=int, default=2000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return simulate(args)
    if args.command == "demo":
        from promptforge_dagster.demo import demo
        return demo(args, run=lambda argv: _run(build_parser().parse_args(argv)))
    if args.command == "status":
        from promptforge_dagster.job_commands import status

        return status(args)
    if args.command == "export":
        from promptforge_dagster.export import export

        return export(args)
    if args.command == "rerun-failed":
        from promptforge_dagster.job_commands import rerun_argv

        rerun = rerun_argv(args)
        if isinstance(rerun, int):
            return rerun
        args = parser.parse_args(rerun)
    for fixed, hint in (("rpm", "rpm_hint"), ("tpm", "tpm_hint")):
        if getattr(args, fixed) and getattr(args, hint):
            parser.error(f"--{fixed} (a fixed limit) and --{hint.replace('_', '-')} (where adaptive pacing starts) "
                         "contradict each other: give one")
    _sigterm_interrupts()
    return _run(args)


def _sigterm_interrupts() -> None:
    """SIGTERM (a pod being stopped, ``kill``) ends a run as Ctrl-C does: progress kept, exit 130."""
    import signal

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (tests calling main() from a worker)
        pass


def _run(args: argparse.Namespace) -> int:
    from promptforge_dagster.core.request_policy import KEY_VARIABLES, job_credentials, key_variable, provider_of

    # What a user can get wrong is checked before anything slow is imported or sent.
    api_key, other_keys, policy = job_credentials(args.model, args.api_base, tuple(args.allow_model), os.environ)
    groups = _load_deployments(args.deployments) if args.deployments else {}
    if isinstance(groups, int):
        return groups
    if args.dry_run:
        if "://" not in args.input and not os.path.isfile(args.input):
            print(f"promptforge: error: input {args.input} does not exist or is not a file", file=sys.stderr)
            return 1
        from promptforge_dagster.clients.storage_for import storage_for
        from promptforge_dagster.dry_run import run_dry

        return run_dry(args, policy, storage_for(args.input))
    from promptforge_dagster.core.deployments import group_for

    if api_key is None and provider_of(args.model) in KEY_VARIABLES and not group_for(groups, args.model):
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
        config = PipelineConfig(max_in_flight=args.max_in_flight, max_attempts=args.max_attempts,
                                max_cost_usd=args.max_cost)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    if args.checkpoint_interval <= 0:
        print("promptforge: error: --checkpoint-interval must be positive", file=sys.stderr)
        return 2
    spec = JobSpec(args.input, args.output.rstrip("/"), JobDefaults(args.model, dict(args.param)),
                   job_id=args.job_id, max_line_bytes=args.max_line_bytes, pipeline=config,
                   checkpoint_interval_s=args.checkpoint_interval, policy=policy,
                   share_lanes=not args.no_share_lanes,
                   rerun_codes=RETRYABLE_ERROR_CODES if args.rerun_failed else ())
    try:
        registry = registry_for(args.registry)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    from promptforge_dagster.clients.transport import make_provider, with_deployments

    try:
        provider = make_provider(args.transport, api_base=args.api_base, api_key=api_key, timeout_s=args.timeout,
                                 default_provider=provider_of(args.model), provider_keys=other_keys,
                                 api_version=args.api_version)
        provider = with_deployments(provider, groups, transport=args.transport, timeout_s=args.timeout)
    except ValueError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 2
    output_storage = storage_for(spec.output_uri)
    if args.restart:
        clear_output(output_storage, spec.output_uri)
    try:
        lanes = build_lanes(args, key_hash(api_key))
        lanes.groups = groups
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
        from promptforge_dagster.core.job import JobRejected

        advice = "" if isinstance(exc, JobRejected) else "; rerun with the same --output to resume"
        print(f"promptforge: job failed: {exc}{advice}", file=sys.stderr)
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
        + "".join(f"deployment {d} of {name} dropped: {why}\n"
                  for name, g in (s.get("deployments") or {}).items() for d, why in g["dropped"].items())
        + f"results: {result.results_uri}\nsummary: {result.summary_uri}"
        + (f"\nrate plot: {s['rate_plot']}" if s.get("rate_plot") else "")
        + (f"\n{s['rate_chart']}" if s.get("rate_chart") else "")
    )
    return 0


def _load_deployments(path: str):
    """The deployment groups of ``--deployments``, or an exit code after one line saying why
    (1: a key variable it names is not set, as for any missing key; 2: the file is wrong)."""
    from promptforge_dagster.core.deployments import DeploymentConfigError, load_model_list

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        print(f"promptforge: error: --deployments {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        return load_model_list(text, env=os.environ, source=path)
    except DeploymentConfigError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 1 if exc.missing_variable else 2


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
        pool = snap.get("background_refused_share")
        capacity = snap.get("capacity_refused")
        queued = snap.get("concurrency_ceiling") if snap.get("concurrency_source") == "answers slowed" else None
        parts.append(f"{lane}: {snap.get('controller')} {snap.get('phase', '')}, allowed {snap.get('allowed_rpm')} RPM"
                     + (f", learned ceiling {learned} RPM{source}" if learned else "")
                     + (f", client-bound at {bound:.0f} RPM" if bound else "")
                     + (f", the server queues: {queued:.0f} in flight" if queued else "")
                     + f", {snap.get('rate_limited', 0)} refused"
                     + (f" (about {pool:.1%} of requests by a busy shared pool: retried, not a limit)" if pool else "")
                     + (f" ({capacity} for the provider's capacity, not a limit: retried)" if capacity else ""))
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
                                  clock=time.monotonic, api_base=args.api_base)
    return RateLanes(factory, key_hash=key_hash, default_provider=provider_of(args.model))


if __name__ == "__main__":
    raise SystemExit(main())

