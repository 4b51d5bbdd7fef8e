"""The rate-learning plot (``OUTPUT/rate.png``): allowed and achieved rate, 429s, and the
learned ceilings over the job's time."""

from __future__ import annotations

import gc
import io

from promptforge_dagster.core.rate_history import RateHistory


def render_png(history: RateHistory, title: str = "PromptForge rate learning") -> bytes:
    png = _render(history, title)
    # A figure is a web of reference cycles holding the renderer's pixel buffers: left to
    # the cyclic collector, every render of a long job raised the peak memory (about
    # 40 MB over 20 renders). Free it now.
    gc.collect()
    return png


def _render(history: RateHistory, title: str) -> bytes:
    # the object API, not pyplot: checkpoints render from a worker thread
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = list(history.points)
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlabel("seconds since the job started")
    ax.set_ylabel("requests per minute")
    ax.grid(alpha=0.3)
    if not pts:
        ax.set_title(f"{title}: no samples yet", fontsize=10)
    else:
        t = [p.t for p in pts]
        ax.plot(t, [p.allowed_rpm for p in pts], label="allowed RPM", color="#1f77b4", linewidth=1.4)
        ax.plot(t, [p.achieved_rpm for p in pts], label="achieved RPM (successes)", color="#2ca02c", linewidth=1.0)
        ceilings = [(p.t, p.ceiling_rpm) for p in pts if p.ceiling_rpm]
        if ceilings:
            ax.step([c[0] for c in ceilings], [c[1] for c in ceilings], where="post", color="#d62728",
                    linestyle="--", linewidth=1.0, label="learned RPM ceiling")
        ax2 = ax.twinx()
        # one filled step, not a bar per sample: rendering stays cheap at 2,000 points
        ax2.fill_between(t, [p.refused for p in pts], step="pre", color="#ff7f0e", alpha=0.4, linewidth=0,
                         label="429s per interval")
        ax2.set_ylabel("429s per interval")
        lines, labels = ax.get_legend_handles_labels()
        more_lines, more_labels = ax2.get_legend_handles_labels()
        ax.legend(lines + more_lines, labels + more_labels, loc="upper left", fontsize=8)
        tpm = [p.ceiling_tpm for p in pts if p.ceiling_tpm]
        ax.set_title(f"{title} (learned TPM ceiling {tpm[-1]:,.0f})" if tpm else title, fontsize=10)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class PlotProcess:
    """Draws the plot in a child process (``python -m promptforge_dagster.rate_plot``), so
    matplotlib and its buffers (about 40 MB) never load into the job's process. One child
    per job, started on first use; it exits when its stdin closes (the job ended or died).
    Frames both ways: a 4-byte big-endian length, then the bytes (JSON points in, PNG out)."""

    def __init__(self) -> None:
        import threading

        self._proc = None
        self._lock = threading.Lock()  # checkpoints draw from worker threads

    def __call__(self, history: RateHistory, title: str = "PromptForge rate learning") -> bytes:
        import json
        import subprocess
        import sys

        points = [[p.t, p.allowed_rpm, p.achieved_rpm, p.refused, p.ceiling_rpm, p.ceiling_tpm]
                  for p in history.points]
        payload = json.dumps({"title": title, "points": points}).encode()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen([sys.executable, "-m", "promptforge_dagster.rate_plot"],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            _write_frame(self._proc.stdin, payload)
            png = _read_frame(self._proc.stdout)
        if not png:
            raise RuntimeError("the plot process drew nothing")
        return png

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._proc.stdin.close()  # the child's cue to exit
                try:
                    self._proc.wait(timeout=10)
                except Exception:  # noqa: BLE001 - never hold a job's end for a plot
                    self._proc.kill()
                self._proc = None


def _write_frame(stream, data: bytes) -> None:
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def _read_frame(stream) -> bytes:
    head = stream.read(4)
    if len(head) < 4:
        return b""
    return stream.read(int.from_bytes(head, "big"))


def _serve() -> None:
    """The child: draw each history it is sent until stdin closes."""
    import json
    import sys

    from promptforge_dagster.core.rate_history import RatePoint

    class _History:
        def __init__(self, points):
            self.points = [RatePoint(*p) for p in points]

    while True:
        frame = _read_frame(sys.stdin.buffer)
        if not frame:
            return
        doc = json.loads(frame)
        try:
            png = render_png(_History(doc["points"]), doc.get("title") or "PromptForge rate learning")
        except Exception:  # noqa: BLE001 - the parent logs "drew nothing" and the job goes on
            png = b""
        _write_frame(sys.stdout.buffer, png)


if __name__ == "__main__":
    _serve()
