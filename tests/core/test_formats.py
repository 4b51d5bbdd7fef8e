"""Invariant: every input line becomes a sendable request or an error record naming the
file, the line and the reason; the two input formats map to the same chat body."""

import pytest

from promptforge_dagster.core import formats as f
from promptforge_dagster.core.formats import BadLine, JobDefaults, LineParser, PromptRequest

DEFAULTS = JobDefaults(model="openai/default-model", params={"max_tokens": 64, "temperature": 0})


def parse(raw: bytes, parser: LineParser | None = None, **kw):
    parser = parser or LineParser(DEFAULTS, source="in.jsonl")
    return parser.parse(raw, ordinal=4, line_no=5, offset=100, **kw)


def test_batch_line_body_is_sent_unchanged_with_defaults_only_filling_gaps():
    req = parse(b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
                b'"body": {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}}')
    assert isinstance(req, PromptRequest)
    assert req.custom_id == "r1"
    assert req.body == {"model": "gpt-4o", "max_tokens": 5, "temperature": 0,
                        "messages": [{"role": "user", "content": "hi"}]}
    assert (req.ordinal, req.line_no, req.offset) == (4, 5, 100)


def test_simple_prompt_line_gets_job_model_and_params():
    req = parse(b'{"id": 7, "prompt": "Say hi"}')
    assert isinstance(req, PromptRequest)
    assert req.custom_id == "7"
    assert req.body == {"model": "openai/default-model", "max_tokens": 64, "temperature": 0,
                        "messages": [{"role": "user", "content": "Say hi"}]}


def test_simple_messages_line_keeps_its_own_parameters():
    req = parse(b'{"id": "m", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], '
                b'"temperature": 0.7}')
    assert isinstance(req, PromptRequest)
    assert req.body["temperature"] == 0.7
    assert len(req.body["messages"]) == 2


@pytest.mark.parametrize(
    "raw, code, words",
    [
        (b'{"id": "a", "prompt": ', f.INVALID_JSON, "invalid JSON"),
        (b'{"id": "a", "prompt": "caf\xe9"}', f.INVALID_UTF8, "invalid UTF-8"),
        (b'[1, 2, 3]', f.NOT_AN_OBJECT, "JSON object"),
        (b'{"prompt": "no id"}', f.MISSING_ID, "custom_id"),
        (b'{"id": "", "prompt": "empty id"}', f.MISSING_ID, "custom_id"),
        (b'{"custom_id": "u", "method": "POST", "url": "/v2/whatever", "body": {}}', f.UNKNOWN_URL, "unknown url"),
        (b'{"custom_id": "e", "method": "POST", "url": "/v1/moderations", "body": {}}', f.UNKNOWN_URL, "not supported"),
        (b'{"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m"}}',
         f.INVALID_REQUEST, '"input" must be'),
        (b'{"custom_id": "g", "method": "GET", "url": "/v1/chat/completions", "body": {}}',
         f.UNSUPPORTED_METHOD, "not POST"),
        (b'{"custom_id": "b", "url": "/v1/chat/completions", "body": {"messages": []}}', f.INVALID_REQUEST, "messages"),
        (b'{"id": "s", "text": "neither prompt nor messages"}', f.INVALID_REQUEST, "prompt"),
    ],
)
def test_bad_line_becomes_error_record_naming_file_line_and_reason(raw, code, words):
    bad = parse(raw)
    assert isinstance(bad, BadLine)
    assert bad.code == code
    assert bad.message.startswith("in.jsonl line 5: ")
    assert words in bad.message
    assert bad.ordinal == 4


def test_line_with_no_usable_id_is_named_line_n_and_one_with_an_id_keeps_it():
    assert parse(b'{"prompt": "x"}').custom_id == "line-5"
    assert parse(b'{"custom_id": "keep", "url": "/nope", "body": {}}').custom_id == "keep"


def test_line_over_the_size_cap_is_an_error_record():
    parser = LineParser(DEFAULTS, max_line_bytes=32, source="in.jsonl")
    bad = parse(b'{"id": "a", "prompt": "' + b"x" * 100 + b'"}', parser)
    assert isinstance(bad, BadLine) and bad.code == f.LINE_TOO_LONG
    assert "32-byte cap" in bad.message


def test_cut_line_reports_its_true_length():
    parser = LineParser(DEFAULTS, max_line_bytes=32, source="in.jsonl")
    bad = parser.parse(b"x" * 32, 0, 1, 0, length=5000)
    assert bad.code == f.LINE_TOO_LONG and "5000 bytes" in bad.message


def test_duplicate_marked_by_the_scan_is_an_error_record_named_by_line():
    bad = parse(b'{"id": "a", "prompt": "again"}', duplicate=True)
    assert isinstance(bad, BadLine) and bad.code == f.DUPLICATE_ID
    assert bad.custom_id == "line-5"
    assert "'a'" in bad.message and "earlier line" in bad.message


def test_a_batch_lines_own_fields_are_carried_and_never_in_the_body():
    req = parse(b'{"custom_id": "a", "url": "/v1/chat/completions", "metadata": {"k": 1}, "tag": "x", '
                b'"body": {"messages": [{"role": "user", "content": "hi"}]}}')
    assert req.carry == {"metadata": {"k": 1}, "tag": "x"} and "metadata" not in req.body and "tag" not in req.body
    simple = parse(b'{"id": "s", "prompt": "hi", "metadata": {"k": 2}}')
    assert simple.carry == {"metadata": {"k": 2}} and "metadata" not in simple.body
    bad = parse(b'{"custom_id": "b", "url": "/v1/nope", "metadata": {"k": 3}, "body": {}}')
    assert isinstance(bad, BadLine) and bad.carry == {"metadata": {"k": 3}}


def test_embeddings_and_responses_lines_are_checked_against_their_own_fields():
    emb = parse(b'{"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "m", "input": ["a", "b"], "dimensions": 8}}')
    assert emb.endpoint == "embeddings" and emb.body["input"] == ["a", "b"]
    resp = parse(b'{"custom_id": "r", "url": "/v1/responses", "body": {"model": "m", "input": "hi", "max_output_tokens": 9}}')
    assert resp.endpoint == "responses"
    for raw, words in [
        (b'{"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "m", "input": "a", "temperature": 1}}',
         '"temperature" is not an embeddings request field'),
        (b'{"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "m", "input": "a", "api_base": "http://x"}}',
         '"api_base" is a client setting'),
        (b'{"custom_id": "r", "url": "/v1/responses", "body": {"model": "m", "input": []}}', '"input" must be'),
        (b'{"custom_id": "r", "url": "/v1/responses", "body": {"model": "m", "input": "x", "max_output_tokens": -1}}',
         '"max_output_tokens" must be'),
    ]:
        bad = parse(raw)
        assert isinstance(bad, BadLine) and words in bad.message, (raw, bad)


def test_deep_nesting_is_refused_and_brackets_inside_text_are_not_nesting():
    deep = "[" * 70 + "]" * 70
    bad = parse(('{"custom_id": "d", "url": "/v1/chat/completions", "body": {"messages": '
                 '[{"role": "user", "content": "x"}], "tools": [{"x": ' + deep + '}]}}').encode())
    assert isinstance(bad, BadLine) and "nests deeper than 64" in bad.message
    text = parse(('{"id": "t", "prompt": "' + "[{" * 70 + '"}').encode())  # many brackets, all in a string
    assert not isinstance(text, BadLine)
