"""Which transport a job's requests take: the lean one for OpenAI-compatible endpoints,
LiteLLM for every other provider (and on request).

>>> choose("auto", "openai"), choose("auto", "anthropic"), choose("litellm", "openai")
('lean', 'litellm', 'litellm')
>>> choose("lean", "gemini")
Traceback (most recent call last):
...
ValueError: --transport lean speaks the OpenAI wire protocol: use it with openai/ models (this job's are gemini/); use auto or litellm
"""

from __future__ import annotations

from typing import Mapping

TRANSPORTS = ("auto", "lean", "litellm")


def choose(transport: str, default_provider: str) -> str:
    if transport not in TRANSPORTS:
        raise ValueError(f"--transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if transport == "litellm":
        return "litellm"
    if default_provider == "openai":
        return "lean"
    if transport == "lean":
        raise ValueError(f"--transport lean speaks the OpenAI wire protocol: use it with openai/ models "
                         f"(this job's are {default_provider}/); use auto or litellm")
    return "litellm"


def make_provider(transport: str, *, api_base: str | None, api_key: str | None, timeout_s: float,
                  default_provider: str, provider_keys: Mapping[str, str] | None = None):
    """The job's provider client; LiteLLM is always there for lines of other providers."""
    from promptforge_dagster.clients.litellm_provider import LiteLLMProvider

    litellm = LiteLLMProvider(api_base=api_base, api_key=api_key, timeout_s=timeout_s,
                              default_provider=default_provider, provider_keys=provider_keys)
    if choose(transport, default_provider) == "litellm":
        return litellm
    from promptforge_dagster.clients.openai_http import OpenAIHttpProvider

    return OpenAIHttpProvider(api_base=api_base, api_key=api_key, timeout_s=timeout_s,
                              default_provider=default_provider, fallback=litellm)
