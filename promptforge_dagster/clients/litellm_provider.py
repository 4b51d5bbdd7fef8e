"""The provider client: one chat completion through ``litellm.acompletion``, classified.

LiteLLM's own retries are off (``num_retries=0``): PromptForge owns retries and pacing.
The API key never appears in an outcome: messages are scrubbed of it, and keep only the
provider's own words (no traceback, no local path; details go to the debug log).

Only fields of the chat-completions allow-list (``core/request_policy.py``) are passed
on; the job's ``api_base`` and key serve the job's provider only, and a line allowed to
use another provider gets that provider's own key and default endpoint. ``timeout_s``
is a deadline for the whole request, not an idle timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Any, Mapping

from promptforge_dagster.core.rate.config import Concurrency

# LiteLLM's aiohttp pool allows 500 connections per host unless told otherwise, read once at
# import: 3,000 RPM of 20-s answers needs 1,000 in flight. Let the pool hold what the rate
# engine's in-flight bound allows, and the process open as many sockets (the soft limit is
# often 1,024 while the hard one is far higher).
_CONNECTIONS = Concurrency().hard_max
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", str(_CONNECTIONS))
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", str(_CONNECTIONS))
try:
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _want = _CONNECTIONS + 1024 if _hard == resource.RLIM_INFINITY else min(_hard, _CONNECTIONS + 1024)
    if _soft != resource.RLIM_INFINITY and _soft < _want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
except (ImportError, ValueError, OSError):  # pragma: no cover - platforms without it keep their limit
    pass

import litellm  # noqa: E402 - after the pool settings above, which LiteLLM reads at import

from promptforge_dagster.core.job.errors import MISSING_CREDENTIALS
from promptforge_dagster.core.formats import CUSTOM_ID_HEADER, PromptRequest, qualify_model
from promptforge_dagster.core.outcome import Outcome, OutcomeKind, classify, public_message, usage_tokens
from promptforge_dagster.core.request_policy import (  # noqa: F401 - job_credentials re-exported for callers
    ENDPOINT_FIELDS, job_credentials, key_variable, provider_of,
)

log = logging.getLogger("promptforge.provider")

litellm.telemetry = False
litellm.suppress_debug_info = True

def key_hash(api_key: str | None) -> str:
    """A short, non-reversible name for an API key: lanes and logs use it, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "nokey"


def api_key_from_env(model: str, env: Mapping[str, str] = os.environ) -> str | None:
    """The API key from the standard environment variable of the model's provider, if set."""
    return env.get(key_variable(provider_of(model))) or None


class LiteLLMProvider:
    """:class:`~promptforge_dagster.core.pipeline.Provider` over ``litellm.acompletion``.

    ``default_provider`` prefixes line models that name none (``gpt-4o`` ->
    ``openai/gpt-4o``), so Batch API files run unchanged against any OpenAI-compatible
    ``api_base``.
    """

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        default_provider: str = "openai",
        provider_keys: Mapping[str, str] | None = None,
        api_version: str | None = None,
    ) -> None:
        self.api_base = api_base
        self._extra = {"api_version": api_version} if api_version else {}  # Azure OpenAI's, for a deployment
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.default_provider = default_provider
        self._keys = dict(provider_keys or {})  # other providers' keys, for lines allowed to use them
        self._prices: dict[str, bool] = {}

    def _model(self, model: str) -> str:
        return qualify_model(model, self.default_provider)

    async def complete(self, request: PromptRequest) -> Outcome:
        body = {k: v for k, v in request.body.items() if k in ENDPOINT_FIELDS[request.endpoint]}
        model = self._model(str(body.pop("model")))
        body.pop("stream", None)
        provider = provider_of(model)
        if provider == self.default_provider:
            api_base, api_key = self.api_base, self._api_key
        else:  # never the job's endpoint or key for another provider
            api_base, api_key = None, self._keys.get(provider)
            if not api_key:
                return Outcome(OutcomeKind.PERMANENT, 0, error_type=MISSING_CREDENTIALS,
                               message=f"no API key for provider {provider!r} (set {key_variable(provider)})")
        call = {"chat": litellm.acompletion, "embeddings": litellm.aembedding, "responses": litellm.aresponses,
                "anthropic": litellm.acompletion}[request.endpoint]
        retries = {"num_retries": 0, "max_retries": 0} if request.endpoint != "responses" else {}
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the awaited call finishes (a cancelled job would then run on)
            async with asyncio.timeout(self.timeout_s):
                resp = await call(
                    model=model,
                    api_base=api_base,
                    api_key=api_key,
                    timeout=self.timeout_s,
                    extra_headers={CUSTOM_ID_HEADER: request.custom_id},
                    **retries,
                    **self._extra,
                    **body,
                )
        except asyncio.CancelledError:
            raise
        except TimeoutError:  # the deadline for the whole request (asyncio.timeout)
            return Outcome(OutcomeKind.TRANSIENT, 0, error_type="timeout",
                           message=f"no complete answer within {self.timeout_s:g} s (--timeout)")
        except Exception as exc:  # every provider failure becomes an Outcome
            log.debug("request %s failed: %s", request.custom_id, self._scrub(repr(exc)))
            return self._failure(exc, api_key)
        return self._success(model, resp)

    def _success(self, model: str, resp: Any) -> Outcome:
        data = resp.model_dump() if hasattr(resp, "model_dump") else dict(resp)
        data.pop("_hidden_params", None)
        tokens_in, tokens_out = usage_tokens(data.get("usage"))
        hidden = getattr(resp, "_hidden_params", None) or {}
        headers = _lower(hidden.get("additional_headers") or {})
        request_id = headers.get("llm_provider-x-request-id") or data.get("id")
        return Outcome(
            OutcomeKind.SUCCESS, 200, body=data, headers=headers, tokens_in=tokens_in,
            tokens_out=tokens_out, cost=self._cost(model, tokens_in, tokens_out), request_id=request_id,
        )

    def _failure(self, exc: Exception, api_key: str | None = None) -> Outcome:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, litellm.Timeout):
            status, error_type = None, "timeout"
        elif isinstance(exc, litellm.APIConnectionError):
            status, error_type = None, "connection_error"
        else:
            error_type = type(exc).__name__
        try:
            status = int(status) if status is not None else None
        except (TypeError, ValueError):
            status = None
        headers: dict[str, str] = {}
        raw_headers = getattr(exc, "litellm_response_headers", None)
        if raw_headers is None:
            response = getattr(exc, "response", None)
            raw_headers = getattr(response, "headers", None)
        if raw_headers is not None:
            try:
                headers = _lower(dict(raw_headers.items()))
            except Exception:
                headers = {}
        message = public_message(self._scrub(str(getattr(exc, "message", None) or exc), api_key))
        kind = classify(status, message, error_type, headers)
        return Outcome(
            kind, status or 0, headers=headers, error_type=error_type, message=message,
            request_id=headers.get("x-request-id"),
        )

    def _scrub(self, text: str, *extra_keys: str | None) -> str:
        for key in (self._api_key, *self._keys.values(), *extra_keys):
            if key and len(key) >= 6:
                text = text.replace(key, "***")
        return text[:2000]

    def _cost(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        if self._prices.get(model) is False:
            return None
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=tokens_in, completion_tokens=tokens_out
            )
        except Exception:
            self._prices[model] = False
            return None
        self._prices[model] = True
        return float(prompt_cost + completion_cost)


def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}
