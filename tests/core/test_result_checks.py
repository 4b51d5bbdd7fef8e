"""The published-results checks fail when they should: a missing or extra line breaks
"one line per input line", and an id repeated beyond the duplicates the input had breaks
"ids unique"."""

from promptforge_dagster.core.result_checks import check_results


def run(lines, expected, flagged=0):
    data = "".join(f'{{"custom_id": "{i}"}}\n' for i in lines).encode()
    return check_results(lambda s, n: data[s:s + n], len(data), expected=expected, flagged_duplicates=flagged)


def test_a_complete_unique_result_passes_both():
    c = run(["a", "b", "c"], expected=3)
    assert c.one_line_per_input and c.ids_unique


def test_missing_or_extra_lines_fail_the_line_check():
    assert not run(["a", "b"], expected=3).one_line_per_input
    assert not run(["a", "b", "c", "d"], expected=3).one_line_per_input


def test_an_unflagged_repeated_id_fails_the_uniqueness_check():
    c = run(["a", "b", "a"], expected=3, flagged=0)
    assert c.one_line_per_input and not c.ids_unique and c.duplicate_ids == 1
    assert run(["a", "b", "a"], expected=3, flagged=1).ids_unique  # the input itself repeated it
