"""TLS between the hub, its agents and its callers: contexts from the certificate files the settings name."""

from __future__ import annotations

import ssl


def server_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """For serving HTTPS; None (plain HTTP) when no certificate is set."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """For dialling HTTPS: the system's trust store, or only the fleet's own CA when one is set."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
