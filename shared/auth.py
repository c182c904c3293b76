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


def bearer_of(request: web.Request) -> str | None:
    """The request's bearer token, if it presents one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def is_one_of(presented: str | None, tokens: list[SecretStr]) -> bool:
    """True when `presented` is one of `tokens`; every one is compared, in constant time."""
    given = (presented or "").encode()
    matches = [hmac.compare_digest(given, t.get_secret_value().encode()) for t in tokens]
    return presented is not None and any(matches)


def carries_one_of(request: web.Request, tokens: list[SecretStr]) -> bool:
    """True when the request's bearer token is one of `tokens`."""
    return is_one_of(bearer_of(request), tokens)
