"""Is a lane's server a hosted API? Told by the provider and the base URL the job calls.

A hosted API (OpenAI, Azure OpenAI, Anthropic, Gemini, Vertex AI, Bedrock, Mistral, Groq, ...)
enforces rate limits that refuse (429) what the account may not send, and its answers take
as long as the model takes, whatever else the lane has in flight. A server of unknown kind
(a base URL on the user's own network, a self-hosted vLLM, TGI or Ollama, a gateway in front
of one) may queue without a word instead: nothing tells it from a hosted API with long
answers until it answers, so an adaptive lane holds it to a blind in-flight bound until then
(:data:`~promptforge_dagster.core.rate.concurrency.BLIND_IN_FLIGHT`). On a hosted API that
bound only costs: a reasoning model's first answers are a minute away, and a lane that is
never refused (its client, not the account, the limit) would sit at 1,000 in flight, 3,000 RPM
at 20-s answers, for that whole first answer time. Nor does a hosted API's lane read a queue
from its answers' times (:mod:`~promptforge_dagster.core.rate.queueing`): they slow by themselves.

Hosted means: the provider is a hosted API's and the job calls its own endpoint (no base
URL, or one on the provider's domain). Anything else, including a provider this list does
not know, is of unknown kind: the cautious default.

>>> hosted_api("openai", None), hosted_api("openai", "https://api.openai.com/v1")
(True, True)
>>> hosted_api("openai", "http://127.0.0.1:8000/v1"), hosted_api("hosted_vllm", None)
(False, False)
>>> hosted_api("azure", "https://my-resource.openai.azure.com"), hosted_api("azure", "https://openai.azure.com.evil.example")
(True, False)
>>> hosted_api("vertex_ai", "https://us-central1-aiplatform.googleapis.com")
True
>>> hosted_api("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com"), hosted_api("openai", "http://ec2-3-4-5-6.compute-1.amazonaws.com")
(True, False)
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# LiteLLM's provider prefixes whose default endpoint is the provider's own hosted API
HOSTED_PROVIDERS = frozenset({
    "openai", "text-completion-openai", "azure", "azure_text", "azure_ai", "anthropic", "gemini", "vertex_ai",
    "vertex_ai_beta", "bedrock", "bedrock_converse", "mistral", "groq", "together_ai", "fireworks_ai", "deepseek",
    "cohere", "cohere_chat", "xai", "perplexity", "openrouter", "cerebras", "deepinfra", "ai21", "anyscale",
})
# the hosts those APIs answer on: the domain or a subdomain of it (a resource's own: my-resource.openai.azure.com),
# Vertex AI's regional hosts (us-central1-aiplatform...) and Bedrock's runtime per region; not any amazonaws.com
# host (an EC2 instance's public name is one, and a self-hosted server may answer there)
HOSTED_DOMAINS = (
    "api.openai.com", "openai.azure.com", "cognitiveservices.azure.com", "services.ai.azure.com",
    "models.inference.ai.azure.com", "api.anthropic.com", "generativelanguage.googleapis.com",
    "api.mistral.ai", "api.groq.com", "api.together.xyz", "api.fireworks.ai", "api.deepseek.com", "api.cohere.ai",
    "api.cohere.com", "api.x.ai", "api.perplexity.ai", "openrouter.ai", "api.cerebras.ai", "api.deepinfra.com",
    "api.ai21.com",
)
HOSTED_HOSTS = re.compile(
    r"(^|\.)(" + "|".join(re.escape(d) for d in HOSTED_DOMAINS) + r")$"
    r"|^([a-z0-9-]+-)?aiplatform\.googleapis\.com$"
    r"|^bedrock(-runtime|-agent-runtime)?(-fips)?\.[a-z0-9-]+\.amazonaws\.com$"
)


def hosted_api(provider: str, api_base: str | None) -> bool:
    """Whether ``provider`` (a LiteLLM prefix) called at ``api_base`` (None: its default
    endpoint) is a hosted API, whose rate limits refuse rather than queue."""
    if provider not in HOSTED_PROVIDERS:
        return False
    if not api_base:
        return True
    host = (urlsplit(api_base if "//" in api_base else "//" + api_base).hostname or "").lower()
    return HOSTED_HOSTS.search(host) is not None


def lane_provider(lane: str) -> tuple[str, str | None]:
    """The provider of a lane's name (``provider/model[@deployment]#key``) and its
    deployment's id, if it is one.

    >>> lane_provider("openai/gpt-4o#k1"), lane_provider("azure/mini@eu#0a1b")
    (('openai', None), ('azure', 'eu'))
    """
    model, _, deployment = lane.partition("#")[0].partition("@")
    return model.split("/", 1)[0], deployment or None
