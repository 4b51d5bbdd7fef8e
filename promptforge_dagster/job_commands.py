"""The commands about a job that already ran: ``promptforge status OUTPUT`` (its progress,
read from the output folder and the registry) and ``promptforge rerun-failed OUTPUT``
(the ``run`` command line of the published job, with ``--rerun-failed``). Neither sends
a request or writes a file."""

from __future__ import annotations

import argparse
import json
import sys
import time


def rerun_argv(args: argparse.Namespace) -> list[str] | int:
    """``rerun-failed OUTPUT``: the ``run`` command line of the published job, with --rerun-failed."""
    from promptforge_dagster.clients.storage_for import storage_for
    from promptforge_dagster.core.job.layout import OutputLayout

    layout = OutputLayout(args.output.rstrip("/"))
    try:
        summary = json.loads(storage_for(layout.output_uri).read_bytes(layout.summary))
    except (OSError, ValueError, KeyError) as exc:
        print(f"promptforge: error: {layout.summary} cannot be read ({type(exc).__name__}); "
              "rerun-failed needs a published job", file=sys.stderr)
        return 1
    argv = ["run", summary["input"], "--output", layout.output_uri, "--model", summary["model"],
            "--job-id", summary["job_id"], "--rerun-failed"]
    if args.api_base:
        argv += ["--api-base", args.api_base]
    if args.quiet:
        argv.append("--quiet")
    return argv


def status(args: argparse.Namespace) -> int:
    """A job's progress from its OUTPUT folder and the registry; sends nothing, writes nothing."""
    from promptforge_dagster.clients.storage_for import storage_for
    from promptforge_dagster.core.checkpoint import BitsetCheckpoint, CorruptCheckpoint
    from promptforge_dagster.core.input_scan import InputIndex
    from promptforge_dagster.core.job.layout import OutputLayout

    layout = OutputLayout(args.output.rstrip("/"))
    try:
        storage = storage_for(layout.output_uri)
        ck_info = storage.stat(layout.checkpoint)
    except Exception as exc:  # noqa: BLE001 - credentials, network: one line
        print(f"promptforge: error: cannot read {layout.output_uri}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if ck_info is None:
        print(f"promptforge: error: {layout.output_uri} holds no job (no {layout.checkpoint})", file=sys.stderr)
        return 1
    try:
        ck = BitsetCheckpoint.decode(storage.read_bytes(layout.checkpoint))
    except CorruptCheckpoint as exc:
        print(f"promptforge: error: {layout.checkpoint} is damaged ({exc}); a rerun rebuilds it from the parts",
              file=sys.stderr)
        return 1
    total = None
    if storage.stat(layout.scan) is not None:
        try:
            index = InputIndex.decode(storage.read_bytes(layout.scan))
            total = index.prompt_lines if index.input_generation in (None, ck.input_generation) else None
        except Exception:  # noqa: BLE001 - an unreadable scan only hides the total
            total = None
    summary = None
    if ck.status == "published" and storage.stat(layout.summary) is not None:
        summary = json.loads(storage.read_bytes(layout.summary))
    record = None
    try:
        from promptforge_dagster.clients.registry_for import registry_for

        record = registry_for(None).get(ck.job_id) if "://" not in layout.output_uri else None
    except Exception:  # noqa: BLE001 - the registry is optional here
        record = None
    done = len(ck.done)
    age = time.time() - ck.committed_at if ck.committed_at else None
    doc = {"job_id": ck.job_id, "epoch": ck.epoch, "input_generation": ck.input_generation, "status": ck.status,
           "done": done, "total": total, "last_commit_s_ago": round(age, 1) if age is not None else None,
           "counters": ck.counters, "registry_status": record.status if record else None,
           "registry_message": record.message if record else None,
           "results": layout.results if summary else None, "summary": summary}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    share = f" ({100 * done / total:.1f}%)" if total else ""
    print(f"job {ck.job_id} (epoch {ck.epoch}, input generation {ck.input_generation})")
    print(f"  checkpoint: {ck.status}" + (f", last commit {age:.0f} s ago" if age is not None else ""))
    print(f"  progress: {done:,} of {total:,} prompts done{share}" if total is not None
          else f"  progress: {done:,} prompts done")
    if record is not None:
        print(f"  registry: {record.status}" + (f": {record.message}" if record.message else ""))
    if summary:
        print(f"  results: {layout.results} ({summary.get('succeeded')} succeeded, {summary.get('failed')} failed)")
    elif ck.status != "published":
        print("  rerun the same command (same --output) to resume it")
    return 0
