"""Which transport a job's requests take: the lean one for OpenAI-compatible endpoints,
LiteLLM for every other provider (and on request).

>>> choose("auto", "openai"), choose("auto", "anthropic"), choose("litellm", "openai")
('lean', 'litellm', 'litellm')
>>> choose("lean", "gemini")
Traceback (most recent call last):
...
ValueError: --transport lean speaks the OpenAI wire protocol: use it with openai/ or azure/ models (this job's are gemini/); use auto or litellm
"""

from __future__ import annotations

from typing import Mapping

TRANSPORTS = ("auto", "lean", "litellm")
LEAN_PROVIDERS = ("openai", "azure")  # the OpenAI wire protocol (Azure OpenAI: another address and header)


def choose(transport: str, default_provider: str) -> str:
    if transport not in TRANSPORTS:
        raise ValueError(f"--transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if transport == "litellm":
        return "litellm"
    if default_provider in LEAN_PROVIDERS:
        return "lean"
    if transport == "lean":
        raise ValueError(f"--transport lean speaks the OpenAI wire protocol: use it with openai/ or azure/ models "
                         f"(this job's are {default_provider}/); use auto or litellm")
    return "litellm"


def make_provider(transport: str, *, api_base: str | None, api_key: str | None, timeout_s: float,
                  default_provider: str, provider_keys: Mapping[str, str] | None = None,
                  api_version: str | None = None):
    """The job's provider client; LiteLLM is always there for lines of other providers."""
    from promptforge_dagster.clients.litellm_provider import LiteLLMProvider

    litellm = LiteLLMProvider(api_base=api_base, api_key=api_key, timeout_s=timeout_s,
                              default_provider=default_provider, provider_keys=provider_keys,
                              api_version=api_version)
    if choose(transport, default_provider) == "litellm":
        return litellm
    from promptforge_dagster.clients.openai_http import OpenAIHttpProvider

    return OpenAIHttpProvider(api_base=api_base, api_key=api_key, timeout_s=timeout_s,
                              default_provider=default_provider, fallback=litellm, api_version=api_version)


class GroupedProvider:
    """The job's provider, plus one client per deployment of its deployment groups (each
    with that deployment's base URL and key); the pipeline names the deployment."""

    def __init__(self, default, by_deployment: Mapping[str, object]) -> None:
        self._default = default
        self._by_deployment = dict(by_deployment)

    async def complete(self, request, deployment=None):
        if deployment is None:
            return await self._default.complete(request)
        return await self._by_deployment[deployment.id].complete(request)

    async def close(self) -> None:
        for client in [self._default, *self._by_deployment.values()]:
            close = getattr(client, "close", None)
            if close is not None:
                await close()


def with_deployments(provider, groups, *, transport: str, timeout_s: float):
    """``provider`` unchanged when there are no groups, else a :class:`GroupedProvider`."""
    if not groups:
        return provider
    from promptforge_dagster.clients.litellm_provider import provider_of

    clients = {}
    for group in groups.values():
        for d in group.deployments:
            clients[d.id] = make_provider(transport, api_base=d.api_base, api_key=d.api_key, timeout_s=timeout_s,
                                          default_provider=provider_of(d.model), api_version=d.api_version)
    return GroupedProvider(provider, clients)
