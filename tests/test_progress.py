"""Invariant: progress shows done/total, rate, 429s, skipped and an ETA, as a bar on a
terminal and as log lines otherwise."""

import asyncio
import io

from promptforge_dagster.core.pipeline import JobStats
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.progress import ProgressReporter, format_eta, progress_line


def test_progress_line_names_every_figure():
    stats = JobStats(total=1000, skipped=100, succeeded=390, failed=10, sent=420, rate_limited=7, started_at=0.0)
    line = progress_line(stats, now=60.0)
    assert "500/1000 50%" in line and "420 rpm" in line and "429s 7" in line and "skipped 100" in line
    assert "ETA 1m15s" in line  # 500 left at 400 per minute


def test_eta_formats():
    assert [format_eta(x) for x in (5, 125, 7300, None)] == ["5s", "2m05s", "2h01m", "?"]


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_a_redrawn_bar_and_pipes_get_lines():
    stats = JobStats(total=10, succeeded=3, started_at=0.0)
    lanes = RateLanes.single(FixedRateController(None, now=0.0))
    tty, pipe = FakeTty(), io.StringIO()
    for stream in (tty, pipe):
        ProgressReporter(stats, lanes, stream=stream, log_every_s=0.01).final()
    assert tty.getvalue().startswith("\r\x1b[2K[") and tty.getvalue().endswith("\n")
    assert pipe.getvalue().startswith("progress: [")

    ticks = []

    async def fake_sleep(seconds):
        ticks.append(seconds)
        if len(ticks) > 3:
            raise asyncio.CancelledError

    pipe = io.StringIO()
    try:
        asyncio.run(ProgressReporter(stats, lanes, stream=pipe, sleep=fake_sleep, clock=lambda: 1.0).run())
    except asyncio.CancelledError:
        pass
    assert ticks == [5.0] * 4  # a log line every 5 s when not on a terminal
    assert pipe.getvalue().count("progress:") == 3
