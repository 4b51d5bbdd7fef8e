"""Invariant: the scan counts every non-blank line, marks every repeat of an id (never a
first occurrence) even when 32-bit hashes collide, and rejects non-JSONL files at once."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptforge_dagster.core.formats import NotJsonlError
from promptforge_dagster.core.input_scan import scan_input, sniff
from promptforge_dagster.core.reader import PromptReader


def lines_of(data: bytes):
    return lambda: PromptReader(lambda s, n: data[s:s + n], len(data), chunk_bytes=64)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=40), constant_hash=st.booleans())
def test_duplicates_are_exactly_the_later_repeats(ids, constant_hash):
    data = b"".join(b'{"id": "%s", "prompt": "p"}\n' % i.encode() for i in ids)
    kw = {"id_hash": (lambda _s: 7)} if constant_hash else {}  # every id collides
    index = scan_input(lines_of(data), **kw)
    first: set[str] = set()
    expected = []
    for ordinal, i in enumerate(ids):
        if i in first:
            expected.append(ordinal)
        else:
            first.add(i)
    assert index.prompt_lines == len(ids)
    assert list(index.duplicates) == expected


def test_lines_without_ids_are_counted_but_never_duplicates():
    data = b'{"prompt": "x"}\nnot json\n{"prompt": "x"}\n'
    index = scan_input(lines_of(data))
    assert index.prompt_lines == 3 and not index.duplicates


@pytest.mark.parametrize(
    "head, words",
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"PK\x03\x04\x14\x00", "zip"),
        (b"id,prompt\n1,hello\n2,world\n", "none of its first 3 lines is a JSON object"),
        (b"\x00\x01\x02binary", "none of its first 1 lines is a JSON object"),
    ],
)
def test_files_that_are_not_jsonl_fail_at_once_with_a_clear_message(head, words):
    with pytest.raises(NotJsonlError) as err:
        sniff(head, "gs://b/in.jsonl")
    assert str(err.value).startswith("gs://b/in.jsonl is not JSONL")
    assert words in str(err.value)


def test_jsonl_with_a_broken_first_line_is_still_jsonl():
    sniff(b'{"id": 1, "prompt": \n{"id": 2, "prompt": "ok"}\n', "in.jsonl")
    sniff(b"", "empty.jsonl")
    sniff(b"\xef\xbb\xbf" + b'{"id": 1}\r\n', "bom.jsonl")


@pytest.mark.parametrize("encoding, name", [
    ("utf-16-le", "UTF-16 (little-endian)"), ("utf-16-be", "UTF-16 (big-endian)"),
    ("utf-32-le", "UTF-32 (little-endian)"), ("utf-32-be", "UTF-32 (big-endian)"),
])
def test_utf16_and_utf32_files_are_named_as_such_with_how_to_convert(encoding, name):
    head = "\ufeff".encode(encoding) + '{"id": 1, "prompt": "hi"}\n'.encode(encoding)
    with pytest.raises(NotJsonlError) as err:
        sniff(head, "in.jsonl")
    assert name in str(err.value) and "iconv" in str(err.value) and "binary" not in str(err.value)


def test_utf16_without_a_bom_is_named_too():
    with pytest.raises(NotJsonlError, match="UTF-16"):
        sniff('{"id": 1}\n'.encode("utf-16-le"), "in.jsonl")


def test_a_nul_byte_inside_one_line_does_not_reject_the_file():
    sniff(b'{"id": 1, "prompt": "a\x00b"}\n{"id": 2, "prompt": "ok"}\n', "in.jsonl")


def test_deeply_nested_lines_are_counted_and_have_no_id():
    deep = b'{"id": "x", "p": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    index = scan_input(lines_of(deep + b"\n" + deep + b"\n"))
    assert index.prompt_lines == 2 and not index.duplicates
