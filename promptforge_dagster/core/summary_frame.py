"""Column summaries of a ``results.jsonl`` (OpenAI Batch output lines) with polars, streamed.

polars is passed in, so this module imports nothing heavy and stays pure. The file comes
in blocks of whole lines (:func:`blocks_of_lines`); each block is one small polars frame,
and only counters survive it: counts by error code and a histogram of token counts (one
entry per distinct value), from which the percentiles are exact. Memory is one block plus
the histograms, whatever the number of lines.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any, Iterable

# Lines are handed to polars in blocks of about this many bytes (one frame each).
BLOCK_BYTES = 8 * 1024 * 1024


def blocks_of_lines(lines: Iterable[bytes], block_bytes: int = BLOCK_BYTES) -> Iterable[bytes]:
    """Join lines into newline-terminated blocks of about ``block_bytes``.

    >>> list(blocks_of_lines([b"a", b"b", b"c"], block_bytes=4))
    [b'a\\nb\\n', b'c\\n']
    """
    block: list[bytes] = []
    size = 0
    for line in lines:
        block.append(line)
        size += len(line) + 1
        if size >= block_bytes:
            yield b"\n".join(block) + b"\n"
            block, size = [], 0
    if block:
        yield b"\n".join(block) + b"\n"


def nearest_quantile(histogram: Counter, q: float) -> float | None:
    """The ``q`` quantile of the values a histogram counts, by polars' "nearest" rule.

    >>> nearest_quantile(Counter({10: 1, 20: 2, 30: 1}), 0.5), nearest_quantile(Counter(), 0.5)
    (20.0, None)
    """
    n = sum(histogram.values())
    if n == 0:
        return None
    target = int(round(q * (n - 1)))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > target:
            return float(value)
    return float(max(histogram))


def summarize_blocks(pl: Any, blocks: Iterable[bytes]) -> dict[str, Any]:
    """Counts by error type and token percentiles, one block at a time.

    >>> import polars, json
    >>> ok = json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": 10, "completion_tokens": 3}}}, "error": None})
    >>> bad = json.dumps({"custom_id": "b", "response": None, "error": {"code": "invalid_json", "message": "x"}})
    >>> s = summarize_blocks(polars, [(ok + "\\n").encode(), (bad + "\\n").encode()])
    >>> s["lines"], s["errors_by_type"], s["prompt_tokens_p50"]
    (2, {'invalid_json': 1}, 10.0)
    """
    schema = {
        "custom_id": pl.Utf8,
        "response": pl.Struct({"status_code": pl.Int64, "body": pl.Struct({"usage": pl.Struct(
            {"prompt_tokens": pl.Int64, "completion_tokens": pl.Int64})})}),
        "error": pl.Struct({"code": pl.Utf8}),
    }
    lines = 0
    errors: Counter = Counter()
    prompt: Counter = Counter()
    completion: Counter = Counter()
    for block in blocks:
        df = pl.read_ndjson(io.BytesIO(block), schema=schema)
        lines += df.height
        codes = (df.filter(pl.col("error").is_not_null())
                 .group_by(pl.col("error").struct.field("code").alias("code")).len())
        for row in codes.iter_rows(named=True):
            errors[row["code"] or "unknown"] += row["len"]
        usage = df.select(
            pl.col("response").struct.field("body").struct.field("usage").struct.field("prompt_tokens").alias("p"),
            pl.col("response").struct.field("body").struct.field("usage").struct.field("completion_tokens").alias("c"),
        ).drop_nulls()
        for col, hist in (("p", prompt), ("c", completion)):
            for row in usage.group_by(col).len().iter_rows():
                hist[row[0]] += row[1]
    return {
        "lines": lines,
        "errors_by_type": dict(sorted(errors.items())),
        "prompt_tokens_p50": nearest_quantile(prompt, 0.5), "prompt_tokens_p95": nearest_quantile(prompt, 0.95),
        "completion_tokens_p50": nearest_quantile(completion, 0.5),
        "completion_tokens_p95": nearest_quantile(completion, 0.95),
    }
