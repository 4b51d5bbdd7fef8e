"""The rate plot as text: where things happened, on one scale, within the UI's inline limit."""

from promptforge_dagster.core.rate_chart import WIDTH, rate_chart
from promptforge_dagster.core.rate_history import RatePoint


def point(t, allowed=600.0, achieved=590.0, refused=0, ceiling=None):
    return RatePoint(t, allowed, achieved, refused, ceiling, None)


def rows(chart):
    lines = chart.splitlines()
    return {name: line[13:13 + WIDTH] for name, line in zip(("achieved", "allowed", "429s"), lines)}


def test_a_burst_of_429s_shows_where_it_happened():
    pts = [point(t, refused=40 if t == 150 else 0) for t in range(1, 201)]
    r = rows(rate_chart(pts))
    column = r["429s"].index("█")
    assert r["429s"].count(" ") == WIDTH - 1 and abs(column - 0.75 * WIDTH) <= 1


def test_achieved_and_allowed_share_one_scale_so_unused_allowance_shows():
    pts = [point(t, allowed=1000.0, achieved=500.0) for t in range(1, 101)]
    r = rows(rate_chart(pts))
    assert set(r["allowed"]) == {"█"} and set(r["achieved"]) == {"▄"}


def test_a_long_history_stays_under_the_inline_limit_and_names_its_span():
    pts = [point(t * 3.0, ceiling=600.0) for t in range(1, 2001)]
    chart = rate_chart(pts)
    assert len(chart) < 1000 and len(chart.splitlines()[0]) == len("achieved RPM ") + WIDTH + len(" peak 590")
    assert "0-6000 s, 125 s per column; learned ceiling 600 RPM" in chart


def test_no_samples_says_so():
    assert rate_chart([]) == "no rate samples yet"


def test_a_sample_taken_a_moment_after_another_does_not_spike_its_column():
    """The job's last sample is forced, however short its interval: 5 successes in 20 ms
    read as 15,000 RPM on their own, but they cover 20 ms of a 1-s column."""
    pts = [point(float(t), allowed=600.0, achieved=590.0) for t in range(1, 49)] + [point(48.02, achieved=15_000.0)]
    first = rate_chart(pts).splitlines()[0]
    assert first.endswith("peak 873")  # (590 x 1 s + 15,000 x 0.02 s) / 1.02 s, not 15,000
    assert rows(rate_chart(pts))["achieved"] == "▆" * 47 + "█"  # the rest still reads at 590 of 873
