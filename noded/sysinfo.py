"""What the agent reports about its machine: addresses, load and metadata."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket

import psutil

from ollama_connector.shared.wire import Load


def primary_addresses() -> tuple[str | None, str | None]:
    """The first global IPv4 and IPv6 addresses of an interface that is up (no packets are sent)."""
    stats = psutil.net_if_stats()
    ipv4 = ipv6 = None
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for entry in addresses:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(entry.address.split("%")[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
                continue
            if ip.version == 4 and ipv4 is None:
                ipv4 = str(ip)
            elif ip.version == 6 and ipv6 is None:
                ipv6 = str(ip)
    return ipv4, ipv6


def current_load() -> Load:
    # cpu_percent(None) compares with the previous call; the first call (at import) primes it.
    cpu = psutil.cpu_percent(interval=None) / 100.0
    return Load(cpu=round(cpu, 3), memory=round(psutil.virtual_memory().percent / 100.0, 3))


def machine_metadata(ollama_version: str | None) -> dict[str, object]:
    return {
        "hostname": socket.gethostname(),
        "ollama_version": ollama_version,
        "os": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "memory_total": psutil.virtual_memory().total,
        "agent_pid": os.getpid(),  # which process to look at (or stop) on that machine
    }


psutil.cpu_percent(interval=None)


SERVICE_MODELS = (
    "/usr/share/ollama/.ollama/models"  # the home of ollama.service's user, as Ollama installs it
)


def disk_free(models_dir: str | None) -> int | None:
    """Free bytes where Ollama keeps its models; None when that folder is not found (or not readable)."""
    candidates = [models_dir] if models_dir else [SERVICE_MODELS, os.path.expanduser("~/.ollama/models")]
    for path in candidates:
        try:
            return psutil.disk_usage(path).free
        except OSError:
            continue
    return None
