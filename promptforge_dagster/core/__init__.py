"""Pure PromptForge logic: formats, reading, pacing, results, the streaming pipeline.

Nothing here imports Dagster, LiteLLM or Google clients; time and I/O arrive as
arguments so every algorithm can be tested on a fake clock with in-memory I/O.
"""
