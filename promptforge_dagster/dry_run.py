"""``promptforge run --dry-run``: read and check every line, estimate tokens, cost and
time; send nothing, write nothing.

The counting is pure (:class:`DryRunReport`); this module only opens the input and prints.
The cost is a ceiling: every prompt's characters / 4 plus its ``max_tokens`` (or the
default), priced by LiteLLM's local price map.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from promptforge_dagster.core.formats import BadLine, LineParser
from promptforge_dagster.core.input_scan import scan_input, sniff, SNIFF_BYTES
from promptforge_dagster.core.pipeline_config import estimate_tokens

EXAMPLES_PER_CODE = 3  # bad lines shown per error code
RATES_SHOWN = (500, 5_000, 30_000)  # RPM the time estimate is printed for, when no --rpm is given


@dataclass
class DryRunReport:
    lines: int = 0
    requests: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    tokens_in: int = 0  # estimated prompt tokens
    tokens_out_max: int = 0  # the completions' ceiling (max_tokens, or the default)
    models: dict[str, int] = field(default_factory=dict)

    def add_bad(self, code: str, line_no: int, message: str) -> None:
        self.bad[code] = self.bad.get(code, 0) + 1
        shown = self.examples.setdefault(code, [])
        if len(shown) < EXAMPLES_PER_CODE:
            shown.append(f"line {line_no}: {message}")


def check_lines(lines: Iterable[Any], parser: LineParser, duplicates, default_max_tokens: int) -> DryRunReport:
    """Every line through the same parser a run uses.

    >>> from promptforge_dagster.core.formats import JobDefaults
    >>> from promptforge_dagster.core.reader import RawLine
    >>> raw = [RawLine(0, 1, 0, b'{"id": "a", "prompt": "hello"}', 30), RawLine(1, 2, 31, b'{"id": ', 7)]
    >>> r = check_lines(raw, LineParser(JobDefaults("openai/m")), set(), 256)
    >>> r.lines, r.requests, r.bad
    (2, 1, {'invalid_json': 1})
    """
    report = DryRunReport()
    for line in lines:
        report.lines += 1
        item = parser.parse(line.data, line.ordinal, line.line_no, line.offset, length=line.length,
                            duplicate=line.ordinal in duplicates)
        if isinstance(item, BadLine):
            report.add_bad(item.code, line.line_no, item.message)
            continue
        report.requests += 1
        body = item.body
        est = estimate_tokens(body, default_max_tokens, item.endpoint)
        out = 0 if item.endpoint == "embeddings" else int(
            body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
            or default_max_tokens)
        report.tokens_in += max(0, est - out)
        report.tokens_out_max += out
        model = str(body.get("model"))
        report.models[model] = report.models.get(model, 0) + 1
    return report


def cost_ceiling(report: DryRunReport, price: Callable[[str, int, int], float | None]) -> float | None:
    """The sum over models of the price of their share of tokens; None if any model has no price.

    >>> r = DryRunReport(requests=2, tokens_in=100, tokens_out_max=50, models={"m": 2})
    >>> cost_ceiling(r, lambda m, i, o: i * 1e-6 + o * 2e-6)
    0.0002
    """
    total = 0.0
    for model, n in report.models.items():
        share = n / report.requests if report.requests else 0.0
        value = price(model, int(report.tokens_in * share), int(report.tokens_out_max * share))
        if value is None:
            return None
        total += value
    return round(total, 6)


def hours(requests: int, rpm: float) -> str:
    """
    >>> hours(10_000_000, 30_000), hours(600, 600)
    ('5.6 h', '1 min')
    """
    minutes = requests / rpm
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{max(1, round(minutes))} min"


def run_dry(args, policy, storage) -> int:
    from promptforge_dagster.core.formats import JobDefaults, NotJsonlError
    from promptforge_dagster.core.gzip_source import GZIP_MAGIC, GzipSource, is_gzip
    from promptforge_dagster.core.reader import PromptReader

    info = storage.stat(args.input)
    if info is None:
        print(f"promptforge: error: input {args.input} does not exist", file=sys.stderr)
        return 1

    def read_range(start: int, length: int) -> bytes:
        return storage.read_range(args.input, start, length, info.generation)

    gz = info.size >= len(GZIP_MAGIC) and is_gzip(read_range(0, len(GZIP_MAGIC)))
    source, size = (GzipSource(read_range, info.size).read_range, None) if gz else (read_range, info.size)
    try:
        sniff(source(0, SNIFF_BYTES if size is None else min(SNIFF_BYTES, size)), args.input)
    except NotJsonlError as exc:
        print(f"promptforge: error: {exc}", file=sys.stderr)
        return 1

    def lines():
        return PromptReader(source, size, max_line_bytes=args.max_line_bytes)

    import threading

    def load_prices() -> None:  # LiteLLM takes seconds to import: beside the reading, not after it
        import promptforge_dagster.clients.litellm_provider  # noqa: F401

    loader = threading.Thread(target=load_prices, daemon=True)
    loader.start()
    index = scan_input(lines, args.max_line_bytes)
    defaults = JobDefaults(args.model, dict(args.param))
    parser = LineParser(defaults, args.max_line_bytes, source=args.input, policy=policy)
    from promptforge_dagster.core.pipeline_config import PipelineConfig

    report = check_lines(lines(), parser, index.duplicates, PipelineConfig().default_max_tokens)
    loader.join()
    from promptforge_dagster.clients.litellm_provider import LiteLLMProvider

    priced = LiteLLMProvider(default_provider=args.model.split("/", 1)[0])
    cost = cost_ceiling(report, lambda m, i, o: priced._cost(priced._model(m), i, o))
    print(f"dry run of {args.input}: nothing sent, nothing written")
    print(f"  {report.lines} lines: {report.requests} requests, {sum(report.bad.values())} bad lines")
    for code, n in sorted(report.bad.items(), key=lambda kv: -kv[1]):
        print(f"    {code}: {n}")
        for example in report.examples[code]:
            print(f"      {example}")
    print(f"  tokens (estimated): {report.tokens_in:,} in, at most {report.tokens_out_max:,} out")
    print(f"  models: {', '.join(f'{m} ({n})' for m, n in sorted(report.models.items())) or '-'}")
    print("  cost ceiling: " + (f"${cost:,.4f} (LiteLLM's price map, every completion at its max_tokens)"
                                if cost is not None else "unknown (a model is not in LiteLLM's price map)"))
    rates = (args.rpm,) if args.rpm else RATES_SHOWN
    print("  time: " + ", ".join(f"{hours(report.requests, r)} at {r:,.0f} RPM" for r in rates if report.requests)
          if report.requests else "  time: nothing to send")
    return 0
