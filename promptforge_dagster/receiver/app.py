"""The receiver's HTTP app: one POST endpoint for Eventarc, one GET for health.

Answers fast: parse, validate, one registry write. The sensor starts the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from promptforge_dagster.core.job_planning import UploadedObject, job_key, job_record_for, output_name, prefixes_overlap
from promptforge_dagster.core.job_registry import JobRegistry
from promptforge_dagster.core.storage_event import BadEvent, decide, parse_event
from promptforge_dagster.receiver.oidc import OidcVerifier, Unauthorized

log = logging.getLogger("promptforge.receiver")


@dataclass(frozen=True)
class ReceiverConfig:
    bucket: str
    input_prefix: str = "inputs/"
    output_prefix: str = "outputs/"
    output_root: str | None = None  # where outputs go (default gs://<bucket>)

    def __post_init__(self) -> None:
        if self.outputs_share_input_bucket and prefixes_overlap(self.input_prefix, self.output_prefix):
            raise ValueError(f"PROMPTFORGE_INPUT_PREFIX={self.input_prefix!r} and PROMPTFORGE_OUTPUT_PREFIX="
                             f"{self.output_prefix!r} overlap in bucket {self.bucket!r}: results would become "
                             "new jobs; use separate prefixes (or buckets)")

    @property
    def outputs_share_input_bucket(self) -> bool:
        return (self.output_root or f"gs://{self.bucket}").rstrip("/") == f"gs://{self.bucket}"

    def output_uri(self, obj: UploadedObject) -> str:
        root = (self.output_root or f"gs://{self.bucket}").rstrip("/")
        return f"{root}/{self.output_prefix.strip('/')}/{output_name(obj)}"


def make_app(config: ReceiverConfig, registry: JobRegistry, verifier: OidcVerifier | None = None,
             clock=time.time, *, insecure: bool = False) -> web.Application:
    """The app. Without a verifier it refuses to exist unless ``insecure`` is said
    explicitly (``RECEIVER_INSECURE=1``, for local use only)."""
    if verifier is None and not insecure:
        raise ValueError("the receiver needs OIDC verification (RECEIVER_AUDIENCE and RECEIVER_ALLOWED_EMAILS), "
                         "or RECEIVER_INSECURE=1 for local use")

    async def receive(request: web.Request) -> web.Response:
        if verifier is not None:
            try:  # certificates may need a fetch: never on the event loop
                await asyncio.to_thread(verifier.verify, request.headers.get("Authorization"))
            except Unauthorized as exc:
                return web.json_response({"error": str(exc)}, status=401)
        body = await request.read()
        try:
            event = parse_event(request.headers, body)
        except BadEvent as exc:
            log.warning("rejected a malformed event: %s", exc)
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # noqa: BLE001 - a malformed event is the sender's fault: 400, never a retried 500
            log.warning("rejected a malformed event (%s)", type(exc).__name__)
            return web.json_response({"error": f"malformed event ({type(exc).__name__})"}, status=400)
        decision = decide(event, bucket=config.bucket, prefix=config.input_prefix,
                          output_prefix=config.output_prefix if config.outputs_share_input_bucket else None)
        if decision.action == "ignore":
            log.info("ignored event %s: %s", event.id, decision.reason)
            return web.json_response({"ignored": decision.reason}, status=200)
        obj = event.object
        key = job_key(obj)
        record = job_record_for(obj, input_uri=obj.uri, output_uri=config.output_uri(obj), now=clock(),
                                event_id=event.id)
        created = await asyncio.to_thread(registry.create, record)  # idempotent: the generation is in the key
        log.info("event %s: job %s %s (%s)", event.id, key, "recorded" if created else "already known",
                 record.status)
        return web.json_response({"job_id": key, "created": created, "status": record.status},
                                 status=201 if created else 200)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/", receive)
    app.router.add_get("/healthz", health)
    return app

