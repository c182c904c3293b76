"""Which heartbeats become nodes, and which requests the hub serves: the hub dials only agents.

- A node's address is a host (the wire model says so), and it may not be the hub itself: not one of this
  machine's addresses (or loopback, or a name resolving to one, in any spelling: `::ffff:127.0.0.1`) on the
  hub's own port; nor a link-local (the clouds' metadata services), multicast or unspecified address.
- With NODE_NETWORKS set, every address a node's host resolves to must be inside them.
- At most MAX_NODES nodes; a new one past that is refused, and logged once until there is room again.
- Every request the hub sends carries its hop id (`X-Connector-Hop`), which agents pass on to Ollama; a
  request that comes back with it is refused with 508, so no configuration can make a request loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from functools import lru_cache

import psutil
from aiohttp import web

from ollama_connector.hubd.errors import Handler, HubError, error_response
from ollama_connector.hubd.keys import HOP_ID, SETTINGS
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.shared.agent_contract import HOP_HEADER
from ollama_connector.shared.wire import Heartbeat

log = logging.getLogger(__name__)
RESOLVE_TIMEOUT = 2.0
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(HubError):
    status = 403


WEIGHTS = (0.1, 10.0)  # NODE_WEIGHT's range: a bias for mixed hardware, not a way to draw every job


def bounded(beat: Heartbeat, max_slots: int) -> Heartbeat:
    """The heartbeat with what it claims held to sanity: slots and loaded models within NODE_MAX_SLOTS, a
    weight within WEIGHTS (said once per node and claim)."""
    if (capacity := beat.capacity) is None:
        return beat
    held = {
        "num_parallel": min(capacity.num_parallel, max_slots),
        "max_loaded_models": min(capacity.max_loaded_models, max_slots),
        "weight": min(max(capacity.weight, WEIGHTS[0]), WEIGHTS[1]),
    }
    claimed = {name: getattr(capacity, name) for name in held if getattr(capacity, name) != held[name]}
    if not claimed:
        return beat
    if (beat.node_id, tuple(claimed.items())) not in _said_bounded:
        _said_bounded[(beat.node_id, tuple(claimed.items()))] = None
        while len(_said_bounded) > 1000:
            del _said_bounded[next(iter(_said_bounded))]
        log.warning(
            "node %s claims %s: held to %s (NODE_MAX_SLOTS=%d, weights %g to %g)",
            beat.node_id,
            ", ".join(f"{k}={v}" for k, v in claimed.items()),
            ", ".join(f"{k}={held[k]}" for k in claimed),
            max_slots,
            *WEIGHTS,
        )
    return beat.model_copy(update={"capacity": capacity.model_copy(update=held)})


_said_bounded: dict[tuple, None] = {}


def _local_addresses(minute: int) -> frozenset[IP]:
    addresses = set()
    try:
        interfaces = psutil.net_if_addrs()
    except OSError as exc:  # a sandbox without netlink: loopback and the hub's own addresses still count
        log.warning("cannot read this machine's addresses: %s", exc)
        interfaces = {}
    for entries in interfaces.values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    addresses.add(ipaddress.ip_address(entry.address.split("%")[0]))
                except ValueError:
                    continue
    return frozenset(addresses)


_local_cached = lru_cache(maxsize=1)(_local_addresses)  # one minute's answer: the next replaces it


def local_addresses() -> frozenset[IP]:
    """This machine's addresses, read again at most once a minute."""
    return _local_cached(int(time.monotonic() // 60))


def _is_source(addresses: list[IP], peer: str) -> bool:
    try:
        source = plain(ipaddress.ip_address(peer.split("%")[0]))
    except ValueError:
        return False
    return source in addresses


def plain(ip: IP) -> IP:
    """One spelling per address: `::ffff:127.0.0.1` is 127.0.0.1."""
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


async def resolve(host: str, port: int) -> list[IP]:
    try:
        return [plain(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise HubError(f"address {host!r} does not resolve", status=400) from None
    return sorted({plain(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos}, key=str)


async def admit(request: web.Request, node_id: str, named: str | None, peer: str, port: int) -> None:
    """Raise HubError (400 or 403, naming why) unless a node may be registered at `named` (the heartbeat's
    address), else at `peer` (its source), on `port`."""
    settings, registry = request.app[SETTINGS], request.app[REGISTRY]
    host = named or peer
    addresses = await resolve(host, port)
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    own_port = sockname[1] if sockname else settings.port
    # Link-local holds the clouds' metadata services (169.254.169.254); none of these is an agent.
    if strange := [str(ip) for ip in addresses if ip.is_link_local or ip.is_multicast or ip.is_unspecified]:
        raise HubError(f"{host} ({', '.join(strange)}) is no address an agent listens at", status=400)
    if port == own_port and any(
        ip.is_loopback or ip.is_unspecified or ip in local_addresses() for ip in addresses
    ):
        raise HubError(f"{host}:{port} is this hub's own address: a node must be an agent", status=400)
    networks = [ipaddress.ip_network(n) for n in settings.node_networks]
    if networks:
        outside = [str(ip) for ip in addresses if not any(ip in net for net in networks)]
        if outside:
            raise Refused(f"address {', '.join(outside)} is outside NODE_NETWORKS")
    elif named is not None and not _is_source(addresses, peer):
        # Without NODE_NETWORKS, the hub dials only where heartbeats come from: a holder of the cluster token
        # cannot point it at another machine.
        raise Refused(
            f"address {named} is not where this heartbeat comes from ({peer}); the hub dials only that,"
            " unless NODE_NETWORKS allows the address named"
        )
    if registry.get(node_id) is None and len(registry) >= settings.max_nodes:
        if not registry.full_announced:
            registry.full_announced = True
            log.warning(
                "registry full (MAX_NODES=%d): refusing new nodes, first %s", settings.max_nodes, node_id
            )
        raise Refused(f"the hub has MAX_NODES={settings.max_nodes} nodes and takes no new one")
    registry.full_announced = False


_last_loop_warning = 0.0


@web.middleware
async def no_loops(request: web.Request, handler: Handler) -> web.StreamResponse:
    global _last_loop_warning
    if request.app[HOP_ID] in request.headers.getall(HOP_HEADER, ()):
        if time.monotonic() - _last_loop_warning > 60:  # a warning a minute, however fast the loop spins
            _last_loop_warning = time.monotonic()
            log.warning(
                "refused %s %s: it came back to this hub, so a node leads here", request.method, request.path
            )
        return error_response(request, 508, "this request has already passed through this hub: a loop")
    return await handler(request)
