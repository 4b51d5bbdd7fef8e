"""Invariant: the chunked reader yields exactly the non-blank lines of the input, with
true ordinals, line numbers and byte offsets, whatever the chunk size; memory is bounded
by the chunk and the line cap; a resumed read from a saved position continues exactly."""

from hypothesis import given, settings
from hypothesis import strategies as st

from promptforge_dagster.core.reader import PromptReader, ReadPosition


def reader(data: bytes, **kw) -> PromptReader:
    return PromptReader(lambda s, n: data[s:s + n], len(data), **kw)


def naive(data: bytes):
    """The plain model: split the whole file in memory."""
    out, offset, ordinal = [], 0, 0
    if data.startswith(b"\xef\xbb\xbf"):
        offset = 3
        data_body = data[3:]
    else:
        data_body = data
    for i, line in enumerate(data_body.split(b"\n")):
        stripped = line[:-1] if line.endswith(b"\r") else line
        if stripped.strip():
            out.append((ordinal, i + 1, offset, stripped))
            ordinal += 1
        offset += len(line) + 1
    return out


lines_st = st.lists(st.one_of(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), st.just(b""), st.just(b"\r")),
                    max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines=lines_st, chunk=st.integers(1, 40), bom=st.booleans(), crlf=st.booleans(), trailing=st.booleans())
def test_chunked_reading_equals_splitting_the_whole_file(lines, chunk, bom, crlf, trailing):
    sep = b"\r\n" if crlf else b"\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + sep.join(lines) + (sep if trailing else b"")
    got = [(l.ordinal, l.line_no, l.offset, l.data) for l in reader(data, chunk_bytes=chunk)]
    assert got == naive(data)


@settings(max_examples=100, deadline=None)
@given(lines=lines_st, chunk=st.integers(1, 40), cut=st.integers(0, 29))
def test_resuming_at_any_yielded_position_continues_exactly(lines, chunk, cut):
    data = b"\n".join(lines) + b"\n"
    full = list(reader(data, chunk_bytes=chunk))
    if not full:
        return
    at = full[min(cut, len(full) - 1)]
    rest = list(reader(data, chunk_bytes=chunk, start=ReadPosition(at.offset, at.ordinal, at.line_no)))
    assert rest == full[full.index(at):]


def test_long_line_is_cut_to_the_cap_but_keeps_its_true_length():
    data = b'{"id": 1}\n' + b"y" * 10_000 + b"\n" + b'{"id": 2}\n'
    got = list(reader(data, chunk_bytes=7, max_line_bytes=100))
    assert [len(l.data) for l in got] == [9, 100, 9]
    assert [l.length for l in got] == [9, 10_000, 9]
    assert [l.offset for l in got] == [0, 10, 10_011]


def test_reads_are_bounded_chunks_never_the_whole_file():
    data = b'{"id": 1, "prompt": "x"}\n' * 10_000
    sizes = []

    def read(s, n):
        sizes.append(n)
        return data[s:s + n]

    count = sum(1 for _ in PromptReader(read, len(data), chunk_bytes=4096))
    assert count == 10_000
    assert max(sizes) <= 4096 and len(sizes) >= len(data) // 4096


def test_empty_and_blank_files_have_no_lines():
    assert list(reader(b"")) == []
    assert list(reader(b"\n\r\n  \n")) == []
