"""The lean transport: OpenAI chat completions over one pooled aiohttp session.

LiteLLM costs about 3.5 ms of CPU per call (it builds a client request, a pydantic
response and its logging objects each time); at a few hundred calls per second that, not
the account, bounds a job. For ``openai/`` models (api.openai.com or any OpenAI-compatible
``--api-base``: vLLM, TGI, LM Studio, the simulator) this module speaks the wire protocol
directly: one POST ``{base}/chat/completions`` with the allow-listed body encoded by
msgspec, one pooled connector, the response decoded once. Every other provider (and a
line allowed to use one) goes through LiteLLM, which stays the reference: one contract
suite (``tests/clients/test_transport_contract.py``) runs both against the simulator and
requires identical outcomes and result lines. Cost still comes from LiteLLM's price map.

The wire protocol and the error shapes are OpenAI's: https://platform.openai.com/docs/api-reference/chat
and openai-python's ``_exceptions.py`` (status -> error class), which LiteLLM mirrors.

Azure OpenAI (``azure/<deployment>`` with an ``api_base`` and an ``api_version``) is the same
protocol at another address and with another header, as openai-python's ``AzureOpenAI``
sends it: POST ``{base}/openai/deployments/{deployment}/chat/completions?api-version=V``
(and ``/embeddings``) with ``api-key: KEY``. Its responses API goes through LiteLLM.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec

from promptforge_dagster.core.formats import CUSTOM_ID_HEADER, PromptRequest, qualify_model
from promptforge_dagster.core.outcome import Outcome, OutcomeKind, classify, public_message, usage_tokens
from promptforge_dagster.core.rate.config import Concurrency
from promptforge_dagster.core.request_policy import ENDPOINT_FIELDS, provider_of

log = logging.getLogger("promptforge.provider")

OPENAI_BASE = "https://api.openai.com/v1"
# Connections in the pool: as many as the rate engine may keep in flight.
POOL_CONNECTIONS = Concurrency().hard_max
# The error class names LiteLLM gives each status of an OpenAI-compatible endpoint (its
# exception mapping; 403 is its generic APIError): the pipeline keeps them as the outcome's
# error_type, so both transports record the same thing.
ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 403: "APIError",
               404: "NotFoundError", 408: "Timeout", 409: "APIError", 422: "UnprocessableEntityError",
               429: "RateLimitError", 500: "InternalServerError", 503: "ServiceUnavailableError"}

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def error_type_of(status: int) -> str:
    """
    >>> error_type_of(429), error_type_of(502)
    ('RateLimitError', 'APIError')
    """
    return ERROR_TYPES.get(status, "APIError")


# Each endpoint's path under the base URL, and the list its answer must hold to be one.
PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses",
         "anthropic": "/chat/completions"}
ANSWER_LISTS = {"chat": "choices", "embeddings": "data", "responses": "output", "anthropic": "choices"}


class OpenAIHttpProvider:
    """:class:`~promptforge_dagster.core.pipeline.Provider` for ``openai/`` models over aiohttp;
    ``fallback`` (LiteLLM) serves every other provider."""

    def __init__(self, *, api_base: str | None = None, api_key: str | None = None, timeout_s: float = 120.0,
                 default_provider: str = "openai", fallback: Any = None, api_version: str | None = None) -> None:
        self.api_base = (api_base or OPENAI_BASE).rstrip("/")
        self.api_version = api_version  # Azure OpenAI's ``api-version``
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.default_provider = default_provider
        self._fallback = fallback
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cost = getattr(fallback, "_cost", None)  # LiteLLM's price map, when LiteLLM is loaded

    def serves(self, model: str, endpoint: str = "chat") -> bool:
        provider = provider_of(qualify_model(model, self.default_provider))
        if provider != self.default_provider:
            return False
        return provider == "openai" or (provider == "azure" and bool(self.api_version) and endpoint != "responses")

    def _address(self, deployment: str, endpoint: str) -> tuple[str, dict[str, str]]:
        """Where a request goes and how it authenticates (OpenAI's bearer, Azure's api-key)."""
        if self.default_provider == "azure":
            url = f"{self.api_base}/openai/deployments/{deployment}{PATHS[endpoint]}?api-version={self.api_version}"
            return url, ({"api-key": self._api_key} if self._api_key else {})
        return f"{self.api_base}{PATHS[endpoint]}", ({"Authorization": f"Bearer {self._api_key}"}
                                                     if self._api_key else {})

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS, limit_per_host=POOL_CONNECTIONS,
                                             ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                                  timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def complete(self, request: PromptRequest) -> Outcome:
        model = str(request.body.get("model"))
        if not self.serves(model, request.endpoint):
            if self._fallback is None:
                return Outcome(OutcomeKind.PERMANENT, 0, error_type="unsupported_provider",
                               message=f"model {model!r} is not served by the lean transport")
            return await self._fallback.complete(request)
        body = {k: v for k, v in request.body.items() if k in ENDPOINT_FIELDS[request.endpoint]}
        body.pop("stream", None)
        qualified = qualify_model(model, self.default_provider)
        body["model"] = qualified.split("/", 1)[1]
        url, auth = self._address(body["model"], request.endpoint)
        headers = {"Content-Type": "application/json", CUSTOM_ID_HEADER: request.custom_id, **auth}
        try:
            async with asyncio.timeout(self.timeout_s):  # the deadline for the whole request
                async with self._client().post(url, data=_encoder.encode(body), headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
                    got = {k.lower(): v for k, v in resp.headers.items()}
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return Outcome(OutcomeKind.TRANSIENT, 0, error_type="timeout",
                           message=f"no complete answer within {self.timeout_s:g} s (--timeout)")
        except (aiohttp.ClientError, OSError) as exc:
            # no answer at all; recorded as LiteLLM records it (openai-python's APIConnectionError,
            # which LiteLLM maps to a 500 "Connection error."), so both transports write the same line
            log.debug("request %s failed: %s", request.custom_id, self._scrub(repr(exc)))
            return Outcome(OutcomeKind.TRANSIENT, 500, error_type="InternalServerError", message="Connection error.")
        if status == 200:
            return self._success(qualified, raw, got, request.endpoint)
        return self._failure(status, raw, got)

    def _success(self, model: str, raw: bytes, headers: dict[str, str], endpoint: str = "chat") -> Outcome:
        try:
            data = _decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get(ANSWER_LISTS[endpoint]), list):
            # what LiteLLM makes of a 200 that is not a chat completion (llms/openai/openai.py):
            # a 500 InternalServerError naming what came back, retried
            text = raw.decode("utf-8", "replace")
            message = (f"Empty or invalid response from LLM endpoint. Received: {text!r}. "
                       "Check the reverse proxy or model server configuration.")
            return Outcome(OutcomeKind.TRANSIENT, 500, headers=headers, error_type="InternalServerError",
                           message=public_message(self._scrub(message)))
        tokens_in, tokens_out = usage_tokens(data.get("usage"))
        cost = self._cost(model, tokens_in, tokens_out) if self._cost is not None else None
        return Outcome(OutcomeKind.SUCCESS, 200, body=data, headers=headers, tokens_in=tokens_in,
                       tokens_out=tokens_out, cost=cost, request_id=headers.get("x-request-id") or data.get("id"))

    def _failure(self, status: int, raw: bytes, headers: dict[str, str]) -> Outcome:
        message = ""
        try:
            doc = _decoder.decode(raw) if raw else None
        except (msgspec.DecodeError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict):
            err = doc.get("error")
            if isinstance(err, dict):
                message = str(err.get("message") or "")
            elif isinstance(err, str):
                message = err
            elif doc.get("message"):
                message = str(doc["message"])
        if not message:
            message = raw.decode("utf-8", "replace") if raw else f"Error code: {status}"
        message = public_message(self._scrub(message))
        error_type = error_type_of(status)
        return Outcome(classify(status, message, error_type, headers), status, headers=headers, error_type=error_type,
                       message=message, request_id=headers.get("x-request-id"))

    def _scrub(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 6:
            text = text.replace(self._api_key, "***")
        return text[:2000]

