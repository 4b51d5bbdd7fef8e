"""The bitset checkpoint round-trips exactly, detects corruption and truncation, and a
10M-prompt job's bitset serialises to at most 2 MB in any pattern of done prompts."""

import pytest
from pyroaring import BitMap

from promptforge_dagster.core.checkpoint import BitsetCheckpoint, CorruptCheckpoint, PartName
from promptforge_dagster.core.reader import ReadPosition


def test_round_trip_keeps_every_field():
    ck = BitsetCheckpoint(job_id="gs://b/in.jsonl#7", epoch=4, done=BitMap([0, 1, 5, 9_999_999]),
                          covered={"e000004-1-2": 12}, position=ReadPosition(1234, 2, 3), input_generation=7,
                          rate_state={"openai/m#k": {"rate": 12.5}}, counters={"succeeded": 3},
                          status="publishing", committed_at=99.5)
    again = BitsetCheckpoint.decode(ck.encode())
    assert again == ck


@pytest.mark.parametrize("pattern", ["all", "every_other", "random_half"])
def test_ten_million_prompts_fit_in_two_megabytes(pattern):
    import random

    n = 10_000_000
    if pattern == "all":
        done = BitMap(range(n))
    elif pattern == "every_other":
        done = BitMap(range(0, n, 2))
    else:
        rng = random.Random(1)
        done = BitMap(rng.sample(range(n), n // 2))
    data = BitsetCheckpoint(job_id="j", done=done).encode()
    assert len(data) <= 2 * 1024 * 1024, len(data)
    assert len(BitsetCheckpoint.decode(data).done) == len(done)


@pytest.mark.parametrize("damage", [
    lambda b: b"garbage" + b,
    lambda b: b[: len(b) // 2],
    lambda b: b[:20],
])
def test_damaged_checkpoints_are_detected(damage):
    data = BitsetCheckpoint(job_id="j", done=BitMap(range(0, 5000, 3))).encode()
    with pytest.raises(CorruptCheckpoint):
        BitsetCheckpoint.decode(damage(data))


def test_part_names_sort_by_attempt_then_sequence():
    names = [PartName("e000002-5-1", 2), PartName("e000001-9-1", 10), PartName("e000002-5-1", 1)]
    assert [n.filename() for n in sorted(names)] == [
        "e000001-9-1-000010.part.jsonl", "e000002-5-1-000001.part.jsonl", "e000002-5-1-000002.part.jsonl"]
    assert PartName.parse("gs://b/out/parts/" + names[0].filename()) == names[0]
