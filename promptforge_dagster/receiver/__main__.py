"""``python -m promptforge_dagster.receiver``: serve on $PORT (Cloud Run) or --port.

Configuration from the environment: PROMPTFORGE_BUCKET (required), PROMPTFORGE_INPUT_PREFIX,
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

from promptforge_dagster.clients.registry_for import registry_for
from promptforge_dagster.receiver.app import ReceiverConfig, make_app
from promptforge_dagster.receiver.oidc import OidcVerifier


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="promptforge-receiver")
    ap.add_argument("--host", default="127.0.0.1" if not os.environ.get("K_SERVICE") else "0.0.0.0")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bucket = os.environ.get("PROMPTFORGE_BUCKET")
    if not bucket:
        print("promptforge-receiver: PROMPTFORGE_BUCKET is required", file=sys.stderr)
        return 2
    insecure = os.environ.get("RECEIVER_INSECURE") == "1"
    audience = os.environ.get("RECEIVER_AUDIENCE", "")
    emails = tuple(e.strip() for e in os.environ.get("RECEIVER_ALLOWED_EMAILS", "").split(",") if e.strip())
    try:
        config = ReceiverConfig(bucket, os.environ.get("PROMPTFORGE_INPUT_PREFIX", "inputs/"),
                                os.environ.get("PROMPTFORGE_OUTPUT_PREFIX", "outputs/"),
                                os.environ.get("PROMPTFORGE_OUTPUT_ROOT"))
        verifier = None if insecure else OidcVerifier(audience, allowed_emails=emails)
    except ValueError as exc:
        print(f"promptforge-receiver: {exc}", file=sys.stderr)
        return 2
    if insecure:
        logging.warning("RECEIVER_INSECURE=1: OIDC tokens are NOT verified (local use only)")
    app = make_app(config, registry_for(os.environ.get("PROMPTFORGE_REGISTRY")), verifier, insecure=insecure)
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: print(
        f"listening on http://{args.host}:{args.port}", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
