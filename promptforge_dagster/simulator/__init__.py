"""An OpenAI-compatible provider simulator with real rate limits, for demos, tests and benchmarks."""
