"""``python -m promptforge_dagster.receiver``: serve on $PORT (Cloud Run) or --port.

Configuration from the environment (promptforge_dagster/settings.py): PROMPTFORGE_INPUT_BUCKET
(required: where uploads arrive), PROMPTFORGE_INPUT_PREFIX,
PROMPTFORGE_OUTPUT_PREFIX, PROMPTFORGE_REGISTRY (firestore://PROJECT or sqlite:///PATH),
RECEIVER_AUDIENCE and RECEIVER_ALLOWED_EMAILS (required: Eventarc's OIDC token is verified
for this audience and these signers), RECEIVER_INSECURE=1 (local use only: no verification).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from promptforge_dagster import settings
from promptforge_dagster.clients.registry_for import registry_for
from promptforge_dagster.receiver.app import ReceiverConfig, make_app
from promptforge_dagster.receiver.oidc import OidcVerifier


def main(argv=None) -> int:
    env = os.environ
    try:
        settings.check_retired(env)
    except ValueError as exc:
        print(f"promptforge-receiver: {exc}", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(prog="promptforge-receiver")
    ap.add_argument("--host", default="127.0.0.1" if not settings.get(env, "K_SERVICE") else "0.0.0.0")
    ap.add_argument("--port", type=int, default=int(settings.get(env, "PORT")))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bucket = settings.get(env, "PROMPTFORGE_INPUT_BUCKET")
    if not bucket:
        print("promptforge-receiver: PROMPTFORGE_INPUT_BUCKET is required (the bucket uploads arrive in)",
              file=sys.stderr)
        return 2
    insecure = settings.get(env, "RECEIVER_INSECURE") == "1"
    audience = settings.get(env, "RECEIVER_AUDIENCE") or ""
    emails = tuple(e.strip() for e in (settings.get(env, "RECEIVER_ALLOWED_EMAILS") or "").split(",") if e.strip())
    try:
        config = ReceiverConfig(bucket, settings.get(env, "PROMPTFORGE_INPUT_PREFIX"),
                                settings.get(env, "PROMPTFORGE_OUTPUT_PREFIX"),
                                settings.get(env, "PROMPTFORGE_OUTPUT_ROOT"))
        verifier = None if insecure else OidcVerifier(audience, allowed_emails=emails)
    except ValueError as exc:
        print(f"promptforge-receiver: {exc}", file=sys.stderr)
        return 2
    if insecure:
        logging.warning("RECEIVER_INSECURE=1: OIDC tokens are NOT verified (local use only)")
    app = make_app(config, registry_for(settings.get(env, "PROMPTFORGE_REGISTRY")), verifier, insecure=insecure)
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: print(
        f"listening on http://{args.host}:{args.port}", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
