"""Talking to other nodes: their URLs, a pooled HTTP session, internal authentication.

Node-to-node requests carry `Authorization: Bearer <CALLFS_INTERNAL_SECRET>` and the original
user's name in `X-CallFS-User`; timeouts are bounded so a dead peer costs seconds, not minutes.
"""

from __future__ import annotations

import threading
import time

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from callfs_site.logs import request_id
from callfs_site.metrics import PEER_FAILURES, PEER_REQUESTS, series
from cluster.models import Node

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
USER_HEADER = "X-CallFS-User"
_URL_CACHE_SECONDS = 5.0

_local = threading.local()
_urls: dict[str, tuple[float, str]] = {}


class PeerUnavailable(Exception):
    """A peer node cannot be reached, is unknown, or clustering is not configured."""


def session() -> requests.Session:
    """A per-thread session: keep-alive connections to peers are reused across requests."""
    current = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        current.trust_env = False  # never route node-to-node traffic through a proxy
        _local.session = current
    return current


def node_url(node_id: str) -> str:
    """The base URL of a registered node (cached for a few seconds per process)."""
    cached = _urls.get(node_id)
    now = time.monotonic()
    if cached and now - cached[0] < _URL_CACHE_SECONDS:
        return cached[1]
    url = Node.objects.filter(node_id=node_id).values_list("url", flat=True).first()
    if url is None:
        raise PeerUnavailable(f"node {node_id!r} is not registered")
    _urls[node_id] = (now, url.rstrip("/"))
    return url.rstrip("/")


def internal_headers(username: str | None = None) -> dict[str, str]:
    secret = settings.CALLFS.internal_secret
    if not secret:
        raise PeerUnavailable("clustering is off on this node (CALLFS_INTERNAL_SECRET is unset)")
    headers = {"Authorization": f"Bearer {secret}"}
    if username:
        headers[USER_HEADER] = username
    return headers


def request(node_id: str, method: str, path: str, **kwargs) -> requests.Response:
    """One request to a peer; connection problems and timeouts become PeerUnavailable."""
    url = node_url(node_id) + path
    headers = {**internal_headers(), **kwargs.pop("headers", {})}
    origin = request_id.get()
    if origin:
        headers["X-Request-ID"] = origin  # the peer logs it as the origin of its work
    series(PEER_REQUESTS, node_id, method).inc()
    try:
        return session().request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        series(PEER_FAILURES, node_id).inc()
        raise PeerUnavailable(f"node {node_id!r} is unreachable: {exc.__class__.__name__}"
                              ) from exc
