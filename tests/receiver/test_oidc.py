"""The receiver fails closed: it will not run without OIDC verification unless told
RECEIVER_INSECURE=1; a token passes only with the right audience, a Google issuer, a
verified email of an allowed signer and a time within 30 s of skew; Google's certificates
are fetched by google-auth's own transport from a (local) certificate endpoint and cached
for their max-age, not fetched per request."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.receiver.app import ReceiverConfig, make_app
from promptforge_dagster.receiver.oidc import CachingRequest, OidcVerifier
from tests.receiver.test_app import BUCKET, binary, run

AUD = "https://receiver-abc.a.run.app"
SIGNER_EMAIL = "eventarc@p.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def google_like_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return crypt.RSASigner.from_string(pem, key_id="k1"), {"k1": public.decode()}


@pytest.fixture(scope="module")
def certs_server(google_like_key):
    """Google's certificate endpoint, played by a local server, counting fetches."""
    _, certs = google_like_key
    fetches = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            fetches.append(self.path)
            body = json.dumps(certs).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", "public, max-age=19000, must-revalidate, no-transform")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs", fetches
    server.shutdown()
    server.server_close()


def token(signer, audience=AUD, iss="https://accounts.google.com", exp_in=600, email=SIGNER_EMAIL, iat_in=0,
          email_verified=True):
    now = int(time.time())
    return jwt.encode(signer, {"iss": iss, "aud": audience, "iat": now + iat_in, "exp": now + exp_in,
                               "email": email, "email_verified": email_verified, "sub": "123"}).decode()


def test_only_a_valid_token_of_an_allowed_signer_gets_in_and_certificates_are_cached(
        tmp_path, google_like_key, certs_server):
    signer, _ = google_like_key
    certs_url, fetches = certs_server
    registry = SQLiteRegistry(str(tmp_path / "r.sqlite3"))
    verifier = OidcVerifier(AUD, allowed_emails=(SIGNER_EMAIL,), request=CachingRequest(), certs_url=certs_url)
    app = make_app(ReceiverConfig(BUCKET), registry, verifier)
    h, b = binary()

    def bearer(**kw):
        return {**h, "Authorization": "Bearer " + token(signer, **kw)}

    before = len(fetches)
    cases = [
        ({**h}, b),
        (bearer(audience="https://someone-else"), b),
        (bearer(exp_in=-3600), b),
        (bearer(iss="https://evil.example"), b),
        (bearer(email="intruder@x.iam.gserviceaccount.com"), b),
        (bearer(email_verified=False), b),
        (bearer(iat_in=300), b),  # issued five minutes ahead: beyond the skew
        (bearer(iat_in=20), binary(event_id="skewed", generation=2)[1]),  # 20 s ahead: within 30 s of skew
        (bearer(), b),
    ]
    statuses = [s for s, _ in run(app, cases)]
    assert statuses == [401, 401, 401, 401, 401, 401, 401, 201, 201]
    assert len(registry.list()) == 2
    assert len(fetches) - before == 1  # one fetch for eight verifications


def test_the_certificate_cache_expires_with_max_age():
    class Answer:
        status, headers, data = 200, {"cache-control": "max-age=60"}, b"{}"

    calls = []
    now = [0.0]
    request = CachingRequest(lambda url, **kw: calls.append(url) or Answer(), clock=lambda: now[0])
    request("https://certs")
    now[0] = 59.0
    request("https://certs")
    now[0] = 61.0
    request("https://certs")
    assert len(calls) == 2


def test_the_receiver_fails_closed():
    with pytest.raises(ValueError, match="RECEIVER_ALLOWED_EMAILS"):
        OidcVerifier(AUD, allowed_emails=())
    with pytest.raises(ValueError, match="RECEIVER_AUDIENCE"):
        OidcVerifier("", allowed_emails=(SIGNER_EMAIL,))
    with pytest.raises(ValueError, match="RECEIVER_INSECURE"):
        make_app(ReceiverConfig(BUCKET), None)


def test_the_receiver_will_not_start_without_verification_unless_told_insecure(monkeypatch, capsys):
    from promptforge_dagster.receiver.__main__ import main

    monkeypatch.setenv("PROMPTFORGE_INPUT_BUCKET", BUCKET)
    for var in ("RECEIVER_AUDIENCE", "RECEIVER_ALLOWED_EMAILS", "RECEIVER_INSECURE"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--port", "0"]) == 2 and "RECEIVER_AUDIENCE" in capsys.readouterr().err
    monkeypatch.setenv("RECEIVER_AUDIENCE", AUD)
    assert main(["--port", "0"]) == 2 and "RECEIVER_ALLOWED_EMAILS" in capsys.readouterr().err
