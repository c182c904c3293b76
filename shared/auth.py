"""Bearer tokens: the cluster token between the hub and its nodes, and the hub's API keys for callers."""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import SecretStr


def bearer(token: SecretStr | None) -> dict[str, str]:
    """Headers that carry the token, or none when no token is configured."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def is_authorized(request: web.Request, token: SecretStr | None) -> bool:
    """True when no token is configured or the request carries it (compared in constant time)."""
    return token is None or carries_one_of(request, [token])


def carries_one_of(request: web.Request, tokens: list[SecretStr]) -> bool:
    """True when the request's bearer token is one of `tokens`; every one is compared, in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    presented = given.strip().encode()
    matches = [hmac.compare_digest(presented, t.get_secret_value().encode()) for t in tokens]
    return scheme.lower() == "bearer" and any(matches)
