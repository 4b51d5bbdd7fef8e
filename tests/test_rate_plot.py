"""The rate plot renders a PNG from a job's rate history and leaves nothing behind: a long
job renders at every checkpoint, so a figure left to the cyclic collector raises the peak
memory render after render."""

import gc

from matplotlib.figure import Figure

from promptforge_dagster.core.rate_history import RateHistory
from promptforge_dagster.rate_plot import render_png


class Stats:
    sent = rate_limited = succeeded = 0


def test_renders_a_png_and_frees_the_figure():
    stats = Stats()
    history = RateHistory(stats, lambda: {"lane": {"allowed_rpm": 1000.0, "learned_rpm_ceiling": 1200.0}}, start=0.0)
    for t in range(500):
        stats.sent += 20
        stats.succeeded += 19
        stats.rate_limited += 1
        history.sample(float(t))
    gc.collect()
    for _ in range(3):
        png = render_png(history)
        assert png.startswith(b"\x89PNG")
        assert not [o for o in gc.get_objects() if isinstance(o, Figure)]  # freed, not left to the collector
