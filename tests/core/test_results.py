"""Invariant: assembly emits each ordinal exactly once (first record wins), refuses to
publish when any input line lacks a record, and the summary counts what it emitted."""

import pytest

from promptforge_dagster.core.results import (
    Envelope, IncompleteResults, LatencyHistogram, assemble, decode_part, encode_part, error_record, record_id,
)


def env(o, err=None, ti=0, to=0, cost=None, lat=None):
    rec = {"id": record_id("j", o), "custom_id": f"c{o}", "response": None,
           "error": {"code": err, "message": "m"} if err else None}
    return Envelope(o, rec, ti, to, cost, lat)


def test_duplicated_parts_yield_each_ordinal_once_and_summary_counts_it_once():
    part_a = encode_part([env(0, ti=10, to=5, cost=0.5, lat=100.0), env(1, "invalid_json")])
    part_b = encode_part([env(0, ti=10, to=5, cost=0.5), env(2, ti=1, to=1)])
    out = []
    summary = assemble([part_a, part_b, part_a], 3, out.append)
    assert len(out) == 3
    d = summary.as_dict()
    assert (d["prompts"], d["succeeded"], d["failed"]) == (3, 2, 1)
    assert d["errors_by_code"] == {"invalid_json": 1}
    assert (d["tokens_in"], d["tokens_out"], d["cost_usd"]) == (11, 6, 0.5)


def test_missing_lines_refuse_publication():
    with pytest.raises(IncompleteResults, match="cover 2 of 4"):
        assemble([encode_part([env(0), env(3)])], 4, lambda _b: None)


def test_cost_is_none_when_no_price_is_known():
    assert assemble([encode_part([env(0)])], 1, lambda _b: None).as_dict()["cost_usd"] is None


def test_part_roundtrip_and_torn_tail_ignored():
    data = encode_part([env(5), env(6)])
    assert [e.ordinal for e in decode_part(data + b'{"o": 7, "r"')] == [5, 6]


def test_error_record_shape_matches_openai_batch_output():
    rec = error_record("job", 3, "line-4", "invalid_json", "f line 4: invalid JSON")
    assert set(rec) == {"id", "custom_id", "response", "error"}
    assert rec["id"].startswith("batch_req_")


def test_latency_quantiles_within_bucket_width():
    h = LatencyHistogram()
    for ms in [10.0] * 90 + [1000.0] * 10:
        h.add(ms)
    assert 9.5 <= h.quantile(0.5) <= 10.5
    assert 950 <= h.quantile(0.99) <= 1050
