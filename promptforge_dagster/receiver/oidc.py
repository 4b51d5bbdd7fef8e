"""Verification of the Google-signed OIDC token Eventarc sends (``Authorization: Bearer``).

The certificates come from a callable so tests use a locally generated key; in
production it is Google's published certificates (cached by google-auth's transport).
"""

from __future__ import annotations

from typing import Callable, Mapping

from google.auth import exceptions as auth_exc
from google.auth import jwt

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class Unauthorized(Exception):
    """The request carries no valid token for this receiver (HTTP 401)."""


def google_certs() -> Mapping[str, str]:
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return id_token._fetch_certs(google.auth.transport.requests.Request(), GOOGLE_CERTS_URL)


class OidcVerifier:
    def __init__(self, audience: str, *, certs: Callable[[], Mapping[str, str]] = google_certs,
                 allowed_emails: tuple[str, ...] = ()) -> None:
        self.audience = audience
        self._certs = certs
        self.allowed_emails = allowed_emails

    def verify(self, authorization: str | None) -> dict:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("missing bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            claims = jwt.decode(token, certs=self._certs(), audience=self.audience)
        except (ValueError, auth_exc.GoogleAuthError) as exc:
            raise Unauthorized(f"invalid token: {str(exc).splitlines()[0][:200]}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized(f"token issuer {claims.get('iss')!r} is not Google")
        if self.allowed_emails and claims.get("email") not in self.allowed_emails:
            raise Unauthorized("token is for a service account not allowed to invoke this receiver")
        return claims
