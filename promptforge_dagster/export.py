"""``promptforge export OUTPUT --to parquet|csv [--input-order]``: results as a table.

One row per input line: ``custom_id``, ``status_code``, ``content`` (the first choice's
message, or a response's output text), ``finish_reason``, ``embedding`` (an embeddings
line's vectors, as JSON), token counts, ``error_code``, ``error_message`` and ``carried``
(the line's own fields, as JSON). Rows come
in completion order from ``results.jsonl``; with ``--input-order`` they are read from the
job's parts (which carry each line's position; newest record per line, as the publish
does) and sorted by input line. The table is built in memory by polars (columnar: about
100 bytes per row plus the answers' text).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

import msgspec
from pyroaring import BitMap

_decoder = msgspec.json.Decoder()


def row_of(record: dict[str, Any]) -> dict[str, Any]:
    """A results.jsonl record as one flat row.

    >>> row_of({"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message":
    ...     {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}},
    ...     "error": None})["content"]
    'hi'
    """
    from promptforge_dagster.core.outcome import usage_tokens

    response = record.get("response") or {}
    body = response.get("body") or {}
    result = record.get("result")
    if isinstance(result, dict) and isinstance(result.get("message"), dict):  # a Message Batches result
        m = result["message"]
        texts = [b.get("text") for b in m.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
        body = {"choices": [{"message": {"content": "".join(t for t in texts if isinstance(t, str))},
                             "finish_reason": m.get("stop_reason")}], "usage": m.get("usage")}
        response = {"status_code": 200, "body": body}
    choices = body.get("choices") or [{}]
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message") or {}
    error = record.get("error") or {}
    content = message.get("content")
    if content is None and isinstance(body.get("output"), list):  # a responses answer: its output text
        texts = [part.get("text") for item in body["output"] if isinstance(item, dict)
                 for part in (item.get("content") or []) if isinstance(part, dict) and part.get("type") == "output_text"]
        content = "".join(t for t in texts if isinstance(t, str)) or None
    data = body.get("data")
    vectors = [d.get("embedding") for d in data if isinstance(d, dict)] if isinstance(data, list) else None
    tokens_in, tokens_out = usage_tokens(body.get("usage")) if response else (None, None)
    carried = {k: v for k, v in record.items() if k not in ("id", "custom_id", "response", "error", "result")}
    return {
        "custom_id": record.get("custom_id"),
        "status_code": response.get("status_code"),
        "content": content if isinstance(content, str) else (json.dumps(content) if content is not None else None),
        "finish_reason": first.get("finish_reason"),
        "embedding": json.dumps(vectors) if vectors else None,
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "carried": json.dumps(carried) if carried else None,
    }


def rows_from_parts(part_bytes: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """Newest part first, the first record of each line (as the publish keeps), with its position."""
    from promptforge_dagster.core.results import decode_part

    seen = BitMap()
    for data in part_bytes:
        for env in decode_part(data):
            if env.ordinal in seen:
                continue
            seen.add(env.ordinal)
            yield {"line": env.ordinal + 1, **row_of(env.record)}


def export(args) -> int:
    import polars as pl

    from promptforge_dagster.clients.storage_for import storage_for
    from promptforge_dagster.core.checkpoint import PartName
    from promptforge_dagster.core.job.layout import OutputLayout

    layout = OutputLayout(args.output.rstrip("/"))
    storage = storage_for(layout.output_uri)
    if storage.stat(layout.summary) is None or storage.stat(layout.results) is None:
        print(f"promptforge: error: {layout.output_uri} has no published results yet (results.jsonl and "
              "summary.json); finish the job first", file=sys.stderr)
        return 1
    summary = _decoder.decode(storage.read_bytes(layout.summary))
    if args.input_order:
        prefix = layout.parts(summary.get("input_generation"))
        paths = [p for p in storage.list(prefix) if PartName.parse(p) is not None]
        if not paths:
            print(f"promptforge: error: the parts under {prefix} are gone (working state is kept 30 days after "
                  "publishing); export without --input-order", file=sys.stderr)
            return 1
        rows = list(rows_from_parts(storage.read_bytes(p) for p in reversed(paths)))
        frame = pl.DataFrame(rows, infer_schema_length=None).sort("line")
    else:
        from promptforge_dagster.core.reader import PromptReader

        info = storage.stat(layout.results)
        reader = PromptReader(lambda s, n: storage.read_range(layout.results, s, n, info.generation), info.size,
                              max_line_bytes=64 * 1024 * 1024)
        frame = pl.DataFrame([row_of(_decoder.decode(line.data)) for line in reader], infer_schema_length=None)
    dest = args.dest or f"results.{args.to}"
    if args.to == "parquet":
        frame.write_parquet(dest)
    else:
        frame.write_csv(dest)
    print(f"wrote {frame.height} rows to {dest}")
    return 0
