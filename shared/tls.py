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


def check_files(cert: str | None, key: str | None, ca_file: str | None) -> list[tuple[bool, str]]:
    """For --check: whether the certificate, its key and the CA file load."""
    results = []
    if cert:
        try:
            server_context(cert, key)
        except (OSError, ssl.SSLError) as exc:
            results.append((False, f"certificate {cert} does not load: {exc}"))
        else:
            results.append((True, f"certificate {cert} loads; serving HTTPS"))
    if ca_file:
        try:
            client_context(ca_file)
        except (OSError, ssl.SSLError) as exc:
            results.append((False, f"CA file {ca_file} does not load: {exc}"))
        else:
            results.append((True, f"CA file {ca_file} loads"))
    return results


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """For dialling HTTPS: the system's trust store, or only the fleet's own CA when one is set."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
