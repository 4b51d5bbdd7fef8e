"""Checks of a published ``results.jsonl``, streamed at flat memory.

* one line per input line;
* custom ids unique, except the lines the job itself flagged as duplicates of an
  earlier input line (their error records repeat the id, as the input did).

>>> data = b'{"custom_id": "a"}\\n{"custom_id": "b"}\\n{"custom_id": "a"}\\n'
>>> c = check_results(lambda s, n: data[s:s + n], len(data), expected=3, flagged_duplicates=1)
>>> c.one_line_per_input, c.ids_unique, c.duplicate_ids
(True, True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from promptforge_dagster.core.input_scan import scan_input
from promptforge_dagster.core.reader import PromptReader, ReadRange


@dataclass(frozen=True)
class ResultChecks:
    lines: int
    expected: int
    duplicate_ids: int  # lines whose custom_id appeared on an earlier line
    flagged_duplicates: int  # of those, duplicates the input already had (and were recorded as errors)

    @property
    def one_line_per_input(self) -> bool:
        return self.lines == self.expected

    @property
    def ids_unique(self) -> bool:
        return self.duplicate_ids == self.flagged_duplicates


def check_results(read_range: ReadRange, size: int, *, expected: int, flagged_duplicates: int) -> ResultChecks:
    index = scan_input(lambda: PromptReader(read_range, size))
    return ResultChecks(index.prompt_lines, expected, len(index.duplicates), flagged_duplicates)
