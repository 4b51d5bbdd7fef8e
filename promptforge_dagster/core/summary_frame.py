"""Column summaries of a ``results.jsonl`` (OpenAI Batch output lines) with polars.

polars is passed in, so this module imports nothing heavy and stays pure; it memory-maps
the file, which is what column work wants (streaming is the engine's job, not this).
"""

from __future__ import annotations

from typing import Any


def summarize_results(pl: Any, path: str) -> dict[str, Any]:
    """Counts by error type and token percentiles.

    >>> import polars, tempfile, json
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    >>> _ = f.write(json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": 10, "completion_tokens": 3}}}, "error": None}) + "\\n")
    >>> _ = f.write(json.dumps({"custom_id": "b", "response": None, "error": {"code": "invalid_json", "message": "x"}}) + "\\n")
    >>> f.close()
    >>> s = summarize_results(polars, f.name)
    >>> s["lines"], s["errors_by_type"], s["prompt_tokens_p50"]
    (2, {'invalid_json': 1}, 10.0)
    """
    schema = {
        "custom_id": pl.Utf8,
        "response": pl.Struct({"status_code": pl.Int64, "body": pl.Struct({"usage": pl.Struct(
            {"prompt_tokens": pl.Int64, "completion_tokens": pl.Int64})})}),
        "error": pl.Struct({"code": pl.Utf8}),
    }
    df = pl.read_ndjson(path, schema=schema)
    errors = (df.filter(pl.col("error").is_not_null())
              .group_by(pl.col("error").struct.field("code").alias("code")).len()
              .sort("code"))
    usage = df.select(
        pl.col("response").struct.field("body").struct.field("usage").struct.field("prompt_tokens").alias("p"),
        pl.col("response").struct.field("body").struct.field("usage").struct.field("completion_tokens").alias("c"),
    ).drop_nulls()

    def q(col: str, quant: float) -> float | None:
        if usage.height == 0:
            return None
        v = usage.select(pl.col(col).quantile(quant, interpolation="nearest")).item()
        return None if v is None else float(v)

    return {
        "lines": df.height,
        "errors_by_type": {row["code"] or "unknown": row["len"] for row in errors.iter_rows(named=True)},
        "prompt_tokens_p50": q("p", 0.5), "prompt_tokens_p95": q("p", 0.95),
        "completion_tokens_p50": q("c", 0.5), "completion_tokens_p95": q("c", 0.95),
    }
