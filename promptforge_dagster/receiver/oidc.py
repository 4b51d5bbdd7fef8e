"""Verification of the Google-signed OIDC token Eventarc sends (``Authorization: Bearer``).

Fails closed: a verifier needs an audience and at least one allowed signer (the Eventarc
trigger's service account). It uses google-auth's public API
(``google.oauth2.id_token.verify_token``) with 30 s of clock skew, and checks the issuer,
``email_verified`` and the signer. Google's certificates are fetched through
:class:`CachingRequest`, which keeps them as long as their ``Cache-Control: max-age``
says (an hour at most), so a request costs no certificate fetch once warm. ``verify``
blocks on that fetch when cold: the app calls it off the event loop.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

from google.auth import exceptions as auth_exc
from google.oauth2 import id_token

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
CLOCK_SKEW_S = 30  # Eventarc's and Cloud Run's clocks may disagree by seconds; tokens live an hour
MAX_CACHE_S = 3600.0  # Google rotates its signing keys over days; an hour bounds a stale key's life
DEFAULT_CACHE_S = 300.0  # when the answer names no max-age
_MAX_AGE = re.compile(r"max-age=(\d+)")


class Unauthorized(Exception):
    """The request carries no valid token for this receiver (HTTP 401)."""


class CachingRequest:
    """A ``google.auth.transport.Request`` that caches successful GET answers by URL for
    their ``Cache-Control: max-age`` (capped): the certificates, fetched once per hour."""

    def __init__(self, inner: Callable[..., Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if inner is None:
            import google.auth.transport.requests

            inner = google.auth.transport.requests.Request()
        self._inner = inner
        self._clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body=None, headers=None, timeout=None, **kwargs) -> Any:
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
            response = self._inner(url, method=method, body=body, headers=headers, timeout=timeout or 10, **kwargs)
            self.fetches += 1
            if response.status == 200:
                match = _MAX_AGE.search(str(response.headers.get("cache-control", "")))
                ttl = min(float(match.group(1)), MAX_CACHE_S) if match else DEFAULT_CACHE_S
                self._cache[url] = (self._clock() + ttl, response)
            return response


class OidcVerifier:
    """Checks ``Authorization: Bearer <token>``; :meth:`verify` returns the claims or raises
    :class:`Unauthorized`."""

    def __init__(self, audience: str, *, allowed_emails: tuple[str, ...], request: Callable[..., Any] | None = None,
                 certs_url: str = GOOGLE_CERTS_URL) -> None:
        if not audience:
            raise ValueError("an OIDC audience is required (RECEIVER_AUDIENCE)")
        if not allowed_emails:
            raise ValueError("at least one allowed signer is required (RECEIVER_ALLOWED_EMAILS): "
                             "without it any Google-signed token would pass")
        self.audience = audience
        self.allowed_emails = tuple(allowed_emails)
        self._request = request or CachingRequest()
        self._certs_url = certs_url

    def verify(self, authorization: str | None) -> dict:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("missing bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            claims = id_token.verify_token(token, self._request, audience=self.audience, certs_url=self._certs_url,
                                           clock_skew_in_seconds=CLOCK_SKEW_S)
        except (ValueError, auth_exc.GoogleAuthError) as exc:
            raise Unauthorized(f"invalid token: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") \
                from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized(f"token issuer {claims.get('iss')!r} is not Google")
        if claims.get("email_verified") is not True:
            raise Unauthorized("token email is not verified")
        if claims.get("email") not in self.allowed_emails:
            raise Unauthorized("token is for a service account not allowed to invoke this receiver")
        return claims
