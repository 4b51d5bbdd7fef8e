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


def test_the_plot_is_drawn_in_a_child_process_and_matplotlib_stays_out_of_the_job():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from promptforge_dagster.rate_plot import PlotProcess\n"
        "from promptforge_dagster.core.rate_history import RatePoint\n"
        "class H: points = [RatePoint(float(t), 600.0, 550.0, t % 3, 620.0, None) for t in range(50)]\n"
        "p = PlotProcess(); png = p(H()); again = p(H()); p.close()\n"
        "print(png[:8] == b'\\x89PNG\\r\\n\\x1a\\n', len(again) > 1000, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "False"], out.stderr
