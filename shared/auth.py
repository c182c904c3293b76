"""The cluster token: a bearer token shared by the hub and its nodes."""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import SecretStr


def bearer(token: SecretStr | None) -> dict[str, str]:
    """Headers that carry the token, or none when no token is configured."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def is_authorized(request: web.Request, token: SecretStr | None) -> bool:
    """True when no token is configured or the request carries it (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
