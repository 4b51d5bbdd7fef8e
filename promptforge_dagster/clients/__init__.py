"""Real implementations of core's interfaces: LiteLLM, local files, GCS."""
