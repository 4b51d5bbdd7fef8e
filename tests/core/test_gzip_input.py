"""Invariant: a ``.jsonl.gz`` input is read as a stream and resumes like a plain one: a job
stopped part-way over a gzip file sends, when run again, only the prompts not yet done;
concatenated members are one input; a truncated upload fails the job with a clear line."""

import asyncio
import gzip
import json

import pytest

from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.gzip_source import GzipSource, TruncatedGzip
from promptforge_dagster.core.job import JobFailed, JobSpec, run_job
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController
from tests.core.test_job import CountingProvider


def lines(n, start=0):
    return b"".join(b'{"id": "r%d", "prompt": "p"}\n' % i for i in range(start, start + n))


def run(tmp_path, provider, name="in.jsonl.gz", **kw):
    spec = JobSpec(str(tmp_path / name), str(tmp_path / "out"), JobDefaults("openai/m"),
                   pipeline=PipelineConfig(max_in_flight=1, buffer_records=5), checkpoint_interval_s=0.01, **kw)
    storage = LocalStorage()
    return asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=provider,
                               controller=FixedRateController(None, now=0.0),
                               registry=SQLiteRegistry(str(tmp_path / "registry.sqlite3"))))


def test_a_gzip_job_stopped_part_way_resumes_sending_only_the_rest(tmp_path):
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(lines(40)))
    first = CountingProvider(fatal_on="r25")
    with pytest.raises(JobFailed):
        run(tmp_path, first)
    done_before = {json.loads(x)["r"]["custom_id"] for p in (tmp_path / "out" / "parts").rglob("*.jsonl")
                   for x in p.read_text().splitlines()}
    assert "r0" in done_before and "r25" not in done_before
    second = CountingProvider()
    result = run(tmp_path, second)
    assert result.summary["prompts"] == 40 and result.summary["succeeded"] == 40
    assert set(second.calls).isdisjoint(done_before) and len(second.calls) == 40 - len(done_before)
    out = [json.loads(x)["custom_id"] for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(out) == sorted(f"r{i}" for i in range(40))


def test_concatenated_gzip_members_are_one_input(tmp_path):
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(lines(3)) + gzip.compress(lines(4, start=3)))
    result = run(tmp_path, CountingProvider())
    assert result.summary["prompts"] == 7 and result.summary["succeeded"] == 7


def test_a_truncated_gzip_upload_fails_with_one_clear_line(tmp_path):
    data = gzip.compress(lines(2000))
    (tmp_path / "in.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(JobFailed, match="in.jsonl.gz.*gzip stream ends mid-way"):
        run(tmp_path, CountingProvider())


def test_the_gzip_source_reads_forward_in_bounded_memory_and_seeks_back_by_restarting():
    plain = lines(5000)
    data = gzip.compress(plain)
    reads = []

    def read(start, n):
        reads.append((start, n))
        return data[start:start + n]

    src = GzipSource(read, len(data), chunk_bytes=512)
    assert src.read_range(100_000, 50) == plain[100_000:100_050]
    assert src.read_range(10, 5) == plain[10:15]  # backwards: starts over from the top
    assert sum(n for s, n in reads if s == 0) >= 1024 and reads.count((0, 512)) == 2
    assert src.read_range(len(plain) - 3, 10) == plain[-3:]
    with pytest.raises(TruncatedGzip):
        GzipSource(lambda s, n: data[:len(data) - 20][s:s + n], len(data) - 20).read_range(0, len(plain))
