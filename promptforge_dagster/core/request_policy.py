"""What an input line may ask for: the fields, models and values a request can carry.

Input files are untrusted. A line's body goes to a client library (LiteLLM) that reads
many keyword arguments as *transport* (``api_base``, ``base_url``, ``api_key``,
``extra_headers``, ``timeout``...), *routing* (``custom_llm_provider``, a model of
another provider), *callbacks* (``metadata``, ``litellm_*``) or *cost*
(``input_cost_per_token``...). One such field sends the job's key to another host. So
the body is checked against an allow-list of the fields the OpenAI API defines for the
endpoint, and each field's value against its type; anything else makes the line an
``invalid_request`` error record and nothing is sent.

Sources: OpenAI API reference, "Create chat completion" (request body), as of 2026-11;
LiteLLM ``main.py``/``utils.py`` for the keyword arguments it treats as client settings.

>>> policy = RequestPolicy(job_provider="openai")
>>> policy.check({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}) is None
True
>>> policy.check({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}],
...               "base_url": "http://attacker/v1"}).code
'invalid_request'
>>> policy.check({"model": "groq/llama3", "messages": [{"role": "user", "content": "hi"}]}).code
'model_not_allowed'
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from promptforge_dagster.core.job.errors import INVALID_REQUEST, MISSING_CREDENTIALS, MODEL_NOT_ALLOWED

# The request body of POST /v1/chat/completions as the OpenAI API reference defines it.
# ``metadata`` is an OpenAI field too, but LiteLLM reads it as callback configuration,
# so it is not taken from input (a line's own fields are carried to its result instead).
CHAT_COMPLETIONS_FIELDS = frozenset({
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
    "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})

# The other endpoints of the Batch API PromptForge runs, and the fields each takes.
EMBEDDINGS_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
RESPONSES_FIELDS = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "parallel_tool_calls", "text", "reasoning", "metadata", "user", "store", "include", "truncation",
    "previous_response_id", "prompt", "prompt_cache_key", "safety_identifier", "service_tier", "top_logprobs",
    "max_tool_calls",
})
# endpoint -> the fields its body may hold (anything else is refused, named)
ENDPOINT_FIELDS = {"chat": CHAT_COMPLETIONS_FIELDS, "embeddings": EMBEDDINGS_FIELDS, "responses": RESPONSES_FIELDS,
                   "anthropic": CHAT_COMPLETIONS_FIELDS}  # a Message Batches line is sent as its chat request
ENDPOINT_NAMES = {"chat": "a chat-completions", "embeddings": "an embeddings", "responses": "a responses",
                  "anthropic": "a chat-completions"}
MAX_DIMENSIONS = 65_536  # no embedding model has more
MAX_INPUTS = 2_048  # OpenAI's cap on inputs per embeddings request

# Fields a client library reads as transport, credentials, routing, callbacks or cost: named
# so the error says why the line was refused (any field not allowed is refused all the same).
CLIENT_SETTINGS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "organization", "project", "headers",
    "extra_headers", "extra_query", "extra_body", "timeout", "request_timeout", "max_retries",
    "num_retries", "custom_llm_provider", "mock_response", "mock_tool_calls", "metadata", "callbacks",
    "success_callback", "failure_callback", "proxy", "http_client", "client", "aws_access_key_id",
    "aws_secret_access_key", "aws_region_name", "vertex_project", "vertex_location",
    "vertex_credentials", "azure_ad_token", "deployment_id", "input_cost_per_token",
    "output_cost_per_token", "model_list", "fallbacks", "context_window_fallbacks", "caching",
})

# Providers that receive a content part's URL as it is (they fetch it themselves). For
# every other provider LiteLLM downloads an image or file URL on our host before sending,
# which would let a line make this process fetch any address: only data: URLs pass there.
URL_PASSTHROUGH_PROVIDERS = frozenset({"openai", "azure"})

MAX_NESTING = 64  # deepest JSON a body may hold: far above real tool schemas, far below recursion limits
MAX_COMPLETION_TOKENS = 1_000_000  # no model answers more; larger values are typos or attacks
MAX_N = 128  # OpenAI's own cap on choices per request
MAX_STOP = 4  # OpenAI's cap on stop sequences
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,199}")  # provider model ids; no spaces, no URLs


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not sent: an error code and a one-line reason.

    >>> Refusal("invalid_request", '"timeout" is a client setting').code
    'invalid_request'
    """

    code: str
    reason: str


def provider_of(model: str, default: str = "openai") -> str:
    """The provider prefix of a LiteLLM model string (``default`` when it has none).

    >>> provider_of("anthropic/claude-sonnet-4"), provider_of("gpt-4o")
    ('anthropic', 'openai')
    """
    return model.split("/", 1)[0] if "/" in model else default


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deep lists and objects nest in ``value`` (iteratively; stops counting past ``limit``).

    >>> nesting_depth({"a": [1, {"b": []}]}), nesting_depth("x")
    (4, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _int_in(lo: int, hi: int):
    return lambda v: None if _is_int(v) and lo <= v <= hi else f"an integer from {lo} to {hi}"


def _number_in(lo: float, hi: float):
    return lambda v: None if _is_number(v) and lo <= v <= hi else f"a number from {lo:g} to {hi:g}"


def _of(*types: type, what: str):
    def rule(v: Any) -> str | None:
        if isinstance(v, bool):  # bool is an int in Python, not in JSON
            return None if bool in types else what
        return None if isinstance(v, types) else what
    return rule


def _stop(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, list) and len(v) <= MAX_STOP and all(isinstance(s, str) for s in v)):
        return None
    return f"a string or a list of at most {MAX_STOP} strings"


def _logit_bias(v: Any) -> str | None:
    if isinstance(v, dict) and all(_is_number(b) and -100 <= b <= 100 for b in v.values()):
        return None
    return "an object of token ids to numbers from -100 to 100"


# How each allowed field's value is checked: None when fine, else what it must be.
_VALUE_RULES = {
    "max_tokens": _int_in(1, MAX_COMPLETION_TOKENS),
    "max_completion_tokens": _int_in(1, MAX_COMPLETION_TOKENS),
    "n": _int_in(1, MAX_N),
    "seed": _int_in(-(2 ** 63), 2 ** 63 - 1),
    "top_logprobs": _int_in(0, 20),
    "temperature": _number_in(0, 2),
    "top_p": _number_in(0, 1),
    "presence_penalty": _number_in(-2, 2),
    "frequency_penalty": _number_in(-2, 2),
    "logprobs": _of(bool, what="true or false"),
    "parallel_tool_calls": _of(bool, what="true or false"),
    "store": _of(bool, what="true or false"),
    "stop": _stop,
    "logit_bias": _logit_bias,
    **{name: _of(str, what="a string") for name in (
        "user", "safety_identifier", "prompt_cache_key", "service_tier", "reasoning_effort", "verbosity")},
    **{name: _of(dict, what="an object") for name in (
        "response_format", "audio", "prediction", "web_search_options", "stream_options")},
    "modalities": lambda v: None if isinstance(v, list) and all(isinstance(m, str) for m in v) else "a list of strings",
    "tools": lambda v: None if isinstance(v, list) and all(isinstance(t, dict) for t in v) else "a list of objects",
    "functions": lambda v: None if isinstance(v, list) and all(isinstance(f, dict) for f in v) else "a list of objects",
    "tool_choice": _of(str, dict, what="a string or an object"),
    "function_call": _of(str, dict, what="a string or an object"),
    "dimensions": _int_in(1, MAX_DIMENSIONS),
    "encoding_format": lambda v: None if v in ("float", "base64") else '"float" or "base64"',
    "max_output_tokens": _int_in(1, MAX_COMPLETION_TOKENS),
    "max_tool_calls": _int_in(1, MAX_N),
    **{name: _of(str, what="a string") for name in ("instructions", "previous_response_id", "truncation")},
    **{name: _of(dict, what="an object") for name in ("text", "reasoning", "metadata", "prompt")},
    "include": lambda v: None if isinstance(v, list) and all(isinstance(i, str) for i in v) else "a list of strings",
}


class RequestPolicy:
    """Checks a request body before it is sent; :meth:`check` returns None or a :class:`Refusal`.

    ``job_provider`` is the provider of the job's model; a line's model must be of that
    provider or match one of ``allow_models`` (shell patterns on the qualified model,
    e.g. ``anthropic/*``). ``keyed_providers``, when given, are the providers with a key:
    a line for any other provider is refused with ``missing_credentials``.

    >>> p = RequestPolicy("openai", allow_models=("anthropic/claude-*",), keyed_providers={"openai"})
    >>> p.check({"model": "anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "x"}]}).code
    'missing_credentials'
    >>> p.check({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}).reason
    '"max_tokens" must be an integer from 1 to 1000000'
    """

    def __init__(self, job_provider: str, *, allow_models: Iterable[str] = (),
                 keyed_providers: Iterable[str] | None = None) -> None:
        self.job_provider = job_provider
        self.allow_models = tuple(allow_models)
        self.keyed_providers = None if keyed_providers is None else frozenset(keyed_providers)

    def check(self, body: Mapping[str, Any], endpoint: str = "chat", *, shallow: bool = False) -> Refusal | None:
        """``shallow``: the caller knows the body cannot nest deeper than MAX_NESTING (its line
        opens no more brackets than that), so the walk is skipped."""
        fields = ENDPOINT_FIELDS[endpoint]
        for name in body:
            if name not in fields:
                return Refusal(INVALID_REQUEST, _field_reason(str(name), endpoint))
        if not shallow and nesting_depth(body) > MAX_NESTING:
            return Refusal(INVALID_REQUEST, f"the request nests deeper than {MAX_NESTING} levels")
        if body.get("stream"):
            return Refusal(INVALID_REQUEST, '"stream": true is not supported in batch')
        for name, value in body.items():  # the body's few fields, not every rule
            rule = _VALUE_RULES.get(name)
            if rule is not None and value is not None and (need := rule(value)) is not None:
                return Refusal(INVALID_REQUEST, f'"{name}" must be {need}')
        inputs = {"chat": self._check_messages, "embeddings": _check_embedding_input,
                  "responses": self._check_response_input}[endpoint]
        return self._check_model(body.get("model")) or inputs(body.get("messages" if endpoint == "chat" else "input"),
                                                              body.get("model"))

    def _check_response_input(self, value: Any, model: Any) -> Refusal | None:
        if isinstance(value, str) and value:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
            return Refusal(INVALID_REQUEST, '"input" must be a non-empty string or a list of input items')
        passthrough = provider_of(str(model), self.job_provider) in URL_PASSTHROUGH_PROVIDERS
        for i, item in enumerate(value):
            content = item.get("content")
            if not passthrough and isinstance(content, list) and _remote_url(content):
                return Refusal(INVALID_REQUEST, f'"input"[{i}] links a remote URL; '
                                                "this provider takes content inline (data: URLs)")
        return None

    def _check_model(self, model: Any) -> Refusal | None:
        if not isinstance(model, str) or not MODEL_NAME.fullmatch(model) or "//" in model or ".." in model:
            return Refusal(INVALID_REQUEST, '"model" must be a model name (letters, digits, ._:@+-/)')
        provider = provider_of(model, self.job_provider)
        qualified = model if "/" in model else f"{provider}/{model}"
        if provider != self.job_provider and not any(fnmatch.fnmatchcase(qualified, p) for p in self.allow_models):
            return Refusal(MODEL_NOT_ALLOWED, f"model {qualified!r} is not of the job's provider "
                                              f"{self.job_provider!r} (allow it with --allow-model)")
        if self.keyed_providers is not None and provider not in self.keyed_providers:
            return Refusal(MISSING_CREDENTIALS, f"no API key for provider {provider!r} "
                                                f"(set {key_variable(provider)})")
        return None

    def _check_messages(self, messages: Any, model: Any) -> Refusal | None:
        if not isinstance(messages, list) or not messages:
            return Refusal(INVALID_REQUEST, '"messages" must be a non-empty list of objects')
        passthrough = provider_of(str(model), self.job_provider) in URL_PASSTHROUGH_PROVIDERS
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                return Refusal(INVALID_REQUEST, f'"messages"[{i}] must be an object with a string "role"')
            content = m.get("content")
            if not (content is None or isinstance(content, (str, list))):
                return Refusal(INVALID_REQUEST, f'"messages"[{i}].content must be a string or a list of parts')
            if not passthrough and isinstance(content, list) and _remote_url(content):
                return Refusal(INVALID_REQUEST, f'"messages"[{i}] links a remote URL; '
                                                "this provider takes content inline (data: URLs)")
        return None


def _check_embedding_input(value: Any, _model: Any) -> Refusal | None:
    """A string, a list of strings, a list of token ids, or a list of such lists."""
    def tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(_is_int(t) for t in v)

    if isinstance(value, str) and value:
        return None
    if isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and (
            all(isinstance(v, str) and v for v in value) or tokens(value) or all(tokens(v) for v in value)):
        return None
    return Refusal(INVALID_REQUEST, f'"input" must be a non-empty string, or a list of at most {MAX_INPUTS} '
                                    "strings or token-id lists")


def _remote_url(parts: list) -> bool:
    for part in parts:
        if not isinstance(part, dict):
            continue
        for value in part.values():
            if not isinstance(value, dict):
                continue
            for url in (value.get("url"), value.get("file_data")):
                if isinstance(url, str) and not url.startswith("data:"):
                    return True
    return False


def _field_reason(name: str, endpoint: str = "chat") -> str:
    shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
    if name in CLIENT_SETTINGS or name.startswith("litellm") or name.endswith("_cost_per_token"):
        return f'"{shown}" is a client setting (transport, credentials, routing or cost); input cannot set it'
    return f'"{shown}" is not {ENDPOINT_NAMES[endpoint]} request field'


# The standard environment variable of each provider's key (LiteLLM's names).
KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "azure": "AZURE_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "cohere": "COHERE_API_KEY",
    "fireworks_ai": "FIREWORKS_API_KEY",
    "xai": "XAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}


def key_variable(provider: str) -> str:
    """The environment variable that holds a provider's key.

    >>> key_variable("anthropic"), key_variable("my_provider")
    ('ANTHROPIC_API_KEY', 'MY_PROVIDER_API_KEY')
    """
    return KEY_VARIABLES.get(provider, f"{provider.upper()}_API_KEY")


def keys_from_env(env: Mapping[str, str], providers: Iterable[str]) -> dict[str, str]:
    """Each provider's key from its standard variable, for the providers that have one set.

    >>> keys_from_env({"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": ""}, ["openai", "groq"])
    {'openai': 'sk-1'}
    """
    return {p: env[key_variable(p)] for p in providers if env.get(key_variable(p))}


def job_credentials(model: str, api_base: str | None, allow_models: tuple[str, ...],
                    env: Mapping[str, str]) -> tuple[str | None, dict[str, str], RequestPolicy]:
    """The job provider's key, other providers' keys, and the request policy of a job.

    The job's key comes from its provider's standard variable (an OpenAI-compatible
    ``api_base`` without auth gets a placeholder bearer); lines may use another provider
    only where ``allow_models`` says so, and then with that provider's own key.

    >>> key, others, policy = job_credentials("openai/gpt-4o", None, ("anthropic/*",),
    ...                                       {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2"})
    >>> key, others, sorted(policy.keyed_providers)
    ('sk-1', {'anthropic': 'sk-2'}, ['anthropic', 'openai'])
    """
    job_provider = provider_of(model)
    api_key = env.get(key_variable(job_provider)) or ("sk-no-key" if api_base else None)
    named = {provider_of(pattern) for pattern in allow_models if "/" in pattern}
    others = keys_from_env(env, sorted((set(KEY_VARIABLES) | named) - {job_provider}))
    policy = RequestPolicy(job_provider, allow_models=allow_models, keyed_providers={job_provider, *others})
    return api_key, others, policy
