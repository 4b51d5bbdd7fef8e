"""Invariants of a whole job on local storage: results.jsonl holds exactly one line per
input line; an empty file completes with zero prompts; a non-JSONL file fails at once;
a fatal stop keeps what is done and a rerun sends only the rest."""

import asyncio
import json
import os

import pytest

from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import JobFailed, JobSpec, run_job
from promptforge_dagster.core.outcome import Outcome, OutcomeKind
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController


class CountingProvider:
    def __init__(self, fatal_on=None):
        self.calls = []
        self.fatal_on = fatal_on

    async def complete(self, request):
        self.calls.append(request.custom_id)
        await asyncio.sleep(0)
        if request.custom_id == self.fatal_on:
            return Outcome(OutcomeKind.FATAL, 401, message="Incorrect API key provided")
        return Outcome(OutcomeKind.SUCCESS, 200, body={"ok": True}, tokens_in=2, tokens_out=1, cost=0.001)


def run(tmp_path, data: bytes, provider, name="in.jsonl", **spec_kw):
    src = tmp_path / name
    if not src.exists() or src.read_bytes() != data:  # the same input again keeps its generation
        src.write_bytes(data)
    spec = JobSpec(str(src), str(tmp_path / "out"), JobDefaults("openai/m"),
                   pipeline=PipelineConfig(max_in_flight=4, buffer_records=7), **spec_kw)
    storage = LocalStorage()
    return asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                               controller=FixedRateController(None, now=0.0),
                            registry=SQLiteRegistry(str(tmp_path / "registry.sqlite3"))))


def result_lines(tmp_path):
    return [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]


def test_one_result_line_per_input_line_including_every_bad_case(tmp_path):
    lines = [
        b'\xef\xbb\xbf{"id": "a", "prompt": "one"}\r',
        b'{"id": "b", "prompt": "two"}\r',
        b'{"id": "c", "prompt": ',  # invalid JSON
        b'{"id": "d", "prompt": "\xff"}',  # invalid UTF-8
        b'{"prompt": "no id"}',  # missing id
        b'{"id": "a", "prompt": "dup"}',  # duplicate id
        b'{"custom_id": "e", "method": "POST", "url": "/v1/nope", "body": {}}',  # unknown url
        b'{"id": "f", "prompt": "' + b"x" * 300 + b'"}',  # over the cap
        b"",
        b'{"custom_id": "g", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}',
    ]
    provider = CountingProvider()
    result = run(tmp_path, b"\n".join(lines) + b"\n", provider, max_line_bytes=200)
    out = result_lines(tmp_path)
    assert len(out) == 9  # the blank line is not an input line
    by_id = {r["custom_id"]: r for r in out}
    assert len(by_id) == 9
    assert {k for k, r in by_id.items() if r["error"] is None} == {"a", "b", "g"}
    codes = sorted(r["error"]["code"] for r in out if r["error"])
    assert codes == ["duplicate_id", "invalid_json", "invalid_utf8", "line_too_long", "missing_id", "unknown_url"]
    assert by_id["line-6"]["error"]["code"] == "duplicate_id"
    assert "in.jsonl line 3: invalid JSON" in by_id["line-3"]["error"]["message"]
    assert sorted(provider.calls) == ["a", "b", "g"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["prompts"], summary["succeeded"], summary["failed"]) == (9, 3, 6)
    assert summary["tokens_in"] == 6 and summary["cost_usd"] == pytest.approx(0.003)
    assert summary == {**summary, "input_errors": 6}
    assert result.summary["achieved_rpm"] > 0


def test_empty_file_is_a_completed_job_with_zero_prompts(tmp_path):
    result = run(tmp_path, b"", CountingProvider())
    assert result_lines(tmp_path) == []
    assert result.summary["prompts"] == 0


def test_pdf_fails_at_once_without_sending_anything(tmp_path):
    provider = CountingProvider()
    with pytest.raises(JobFailed, match="report.pdf is not JSONL: it looks like a PDF"):
        run(tmp_path, b"%PDF-1.4\n1 0 obj\n", provider, name="report.pdf")
    assert provider.calls == []


def test_fatal_stop_keeps_progress_and_rerun_sends_only_the_rest(tmp_path):
    data = b"".join(b'{"id": "p%d", "prompt": "q"}\n' % i for i in range(40))
    first = CountingProvider(fatal_on="p25")
    with pytest.raises(JobFailed, match="Incorrect API key provided.*done and kept; a rerun of this job resumes"):
        run(tmp_path, data, first)
    assert not (tmp_path / "out" / "results.jsonl").exists()
    done_before = {json.loads(l)["r"]["custom_id"] for p in (tmp_path / "out" / "parts").rglob("*.jsonl")
                   for l in p.read_text().splitlines()}
    assert "p0" in done_before and "p25" not in done_before
    second = CountingProvider()
    result = run(tmp_path, data, second)
    assert set(second.calls).isdisjoint(done_before)
    assert len(second.calls) == 40 - len(done_before)
    out = result_lines(tmp_path)
    assert sorted(r["custom_id"] for r in out) == sorted(f"p{i}" for i in range(40))
    assert result.summary["skipped_as_done"] == len(done_before)


def test_missing_input_is_a_clear_failure(tmp_path):
    storage = LocalStorage()
    spec = JobSpec(str(tmp_path / "nope.jsonl"), str(tmp_path / "out"), JobDefaults("m"))
    with pytest.raises(JobFailed, match="nope.jsonl does not exist"):
        asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=CountingProvider(),
                            controller=FixedRateController(None, now=0.0),
                            registry=SQLiteRegistry(str(tmp_path / "registry.sqlite3"))))
    assert not os.path.exists(tmp_path / "out" / "results.jsonl")


def test_input_replaced_mid_job_fails_clearly_and_never_mixes_versions(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"id": "p%d", "prompt": "q"}\n' % i for i in range(200)))

    class Replacer(CountingProvider):
        async def complete(self, request):
            if not self.calls:
                src.write_bytes(b'{"id": "new", "prompt": "other version"}\n' * 300)
            return await super().complete(request)

    provider = Replacer()
    storage = LocalStorage()
    spec = JobSpec(str(src), str(tmp_path / "out"), JobDefaults("m"), chunk_bytes=256,
                   pipeline=PipelineConfig(max_in_flight=2, read_batch=4))
    with pytest.raises(JobFailed, match="was replaced while the job ran"):
        asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                            controller=FixedRateController(None, now=0.0),
                            registry=SQLiteRegistry(str(tmp_path / "registry.sqlite3"))))
    assert "new" not in provider.calls


def test_a_resume_position_past_unwritten_prompts_is_caught_by_the_sweep(tmp_path):
    """Should a checkpoint's read position ever lie past prompts that were not written,
    the job re-reads from the start and still publishes every line exactly once."""
    from pyroaring import BitMap

    from promptforge_dagster.core.commit import JobCommitter
    from promptforge_dagster.core.reader import ReadPosition
    from promptforge_dagster.core.results import Envelope

    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"id": "r%d", "prompt": "p"}\n' % i for i in range(10)))
    storage = LocalStorage()
    registry = SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    gen = storage.stat(str(src)).generation
    from promptforge_dagster.core.job import default_job_id

    c = JobCommitter(default_job_id(str(src), gen, str(tmp_path / "out")), str(tmp_path / "out"), storage, registry,
                     owner="old", input_generation=gen)
    c.open(now=0.0)
    c.write_part([Envelope(o, {"custom_id": f"r{o}", "response": {"status_code": 200}, "error": None})
                  for o in (0, 1, 2)])
    line5 = src.read_bytes().split(b"\n")
    offset = sum(len(l) + 1 for l in line5[:5])
    c.commit(now=1.0, position=ReadPosition(offset, 5, 6))
    assert BitMap(c.done) == BitMap([0, 1, 2])
    provider = CountingProvider()
    result = run(tmp_path, src.read_bytes(), provider)
    assert sorted(provider.calls) == sorted(f"r{i}" for i in range(3, 10))
    assert sorted(l["custom_id"] for l in result_lines(tmp_path)) == sorted(f"r{i}" for i in range(10))
    assert result.summary["succeeded"] == 10


class FlakyOnce:
    """Fails the named prompts with 503 until ``heal()``; then succeeds."""

    def __init__(self, failing):
        self.failing, self.healed, self.calls = set(failing), False, []

    def heal(self):
        self.healed = True

    async def complete(self, request):
        self.calls.append(request.custom_id)
        await asyncio.sleep(0)
        if request.custom_id in self.failing and not self.healed:
            return Outcome(OutcomeKind.TRANSIENT, 503, message="overloaded upstream")
        return Outcome(OutcomeKind.SUCCESS, 200, body={"ok": True}, tokens_in=2, tokens_out=1)


def test_rerun_of_failed_prompts_sends_only_those_and_replaces_their_lines(tmp_path):
    """A finished job with retryable failures is re-run: only the failed prompts are sent,
    and results.jsonl still has one line per input line, the failures replaced."""
    from promptforge_dagster.core.job.errors import RETRYABLE_ERROR_CODES

    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"id": "r%d", "prompt": "p"}\n' % i for i in range(12)))
    storage = LocalStorage()
    registry = SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    provider = FlakyOnce({"r3", "r7"})
    spec = JobSpec(str(src), str(tmp_path / "out"), JobDefaults("openai/m"),
                   pipeline=PipelineConfig(max_in_flight=4, max_attempts=2, backoff_base_s=0.001,
                                           backoff_cap_s=0.002))

    def go(rerun_codes=()):
        spec.rerun_codes = rerun_codes
        return asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                                   controller=FixedRateController(None, now=0.0), registry=registry))

    first = go()
    assert first.summary["failed"] == 2 and first.summary["errors_by_code"] == {"retries_exhausted": 2}
    job = registry.list(status="succeeded")[0]
    assert job.counters["retryable_failed"] == 2
    provider.heal()
    provider.calls.clear()
    second = go(rerun_codes=RETRYABLE_ERROR_CODES)
    assert sorted(provider.calls) == ["r3", "r7"]
    lines = result_lines(tmp_path)
    assert len(lines) == 12 and sorted(l["custom_id"] for l in lines) == sorted(f"r{i}" for i in range(12))
    assert all(l["error"] is None for l in lines)
    assert second.summary["failed"] == 0 and registry.list(status="succeeded")[0].counters["retryable_failed"] == 0


def test_a_replaced_input_never_mixes_two_versions_results(tmp_path):
    """Killed mid-way, the input replaced, rerun with the same OUTPUT: results hold exactly the
    new version's lines (old parts are set aside by input generation, never read as done)."""
    import time as _time

    src = tmp_path / "in.jsonl"
    old = b"".join(b'{"id": "old-%d", "prompt": "q"}\n' % i for i in range(40))
    with pytest.raises(JobFailed):
        run(tmp_path, old, CountingProvider(fatal_on="old-20"))
    _time.sleep(0.01)  # a new mtime: a new generation of the local file
    new = b"".join(b'{"id": "new-%d", "prompt": "q"}\n' % i for i in range(40))
    provider = CountingProvider()
    result = run(tmp_path, new, provider)
    ids = sorted(r["custom_id"] for r in result_lines(tmp_path))
    assert ids == sorted(f"new-{i}" for i in range(40)) and len(provider.calls) == 40
    assert result.summary["succeeded"] == 40 and src.read_bytes() == new


def test_a_job_pinned_to_a_generation_fails_clearly_when_the_input_was_replaced(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "a", "prompt": "q"}\n')
    with pytest.raises(JobFailed, match="was replaced: this job is for generation 1"):
        run(tmp_path, src.read_bytes(), CountingProvider(), input_generation=1)


def test_max_cost_stops_cleanly_and_a_rerun_resumes(tmp_path):
    """--max-cost: the run stops once it has spent the cap (in flight at most beyond it);
    what is done is kept, and a rerun without the cap sends only the rest."""
    data = b"".join(b'{"id": "c%d", "prompt": "q"}\n' % i for i in range(200))
    first = CountingProvider()  # 0.001 USD per success
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    storage = LocalStorage()
    registry = SQLiteRegistry(str(tmp_path / "registry.sqlite3"))

    def go(provider, cap):
        spec = JobSpec(str(src), str(tmp_path / "out"), JobDefaults("openai/m"),
                       pipeline=PipelineConfig(max_in_flight=4, buffer_records=7, max_cost_usd=cap))
        return asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                                   controller=FixedRateController(None, now=0.0), registry=registry))

    with pytest.raises(JobFailed, match=r"--max-cost \$0.02 reached"):
        go(first, 0.02)
    assert 20 <= len(first.calls) <= 20 + 4  # the cap, plus what was in flight
    second = CountingProvider()
    result = go(second, None)
    assert set(second.calls).isdisjoint(first.calls) and len(first.calls) + len(second.calls) == 200
    assert result.summary["succeeded"] == 200
