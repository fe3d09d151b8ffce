"""Talking to other nodes: their URLs, a pooled HTTP session, signed requests.

Node-to-node requests are signed (`cluster.signing`): they carry an HMAC keyed with
CALLFS_INTERNAL_SECRET, never the secret itself, so whatever URL a node row holds learns nothing
it could use elsewhere. Timeouts are bounded so a dead peer costs seconds, not minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from callfs_site.errors import ErrorCode
from callfs_site.logs import request_id
from callfs_site.metrics import PEER_FAILURES, PEER_REQUESTS, series
from cluster import signing
from cluster.models import Node

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
_URL_CACHE_SECONDS = 5.0

SUSPECT_SECONDS = 10.0  # a node that failed to answer is tried last for this long

_local = threading.local()
_urls: dict[str, tuple[float, str]] = {}
_failed_at: dict[str, float] = {}


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


def request(node_id: str, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: Iterable[bytes] | None = None, body_sha256: str | None = None,
            stream: bool = False) -> requests.Response:
    """One signed request to a peer; connection problems and timeouts become PeerUnavailable.

    `body` is streamed (chunked); its sha256, if the caller knows it, is signed, else the body
    goes out with the trailer of `signing.trailed()`. No body signs the empty body's digest."""
    if not settings.CALLFS.internal_secret:
        raise PeerUnavailable("clustering is off on this node (CALLFS_INTERNAL_SECRET is unset)")
    current = session()
    prepared = current.prepare_request(requests.Request(
        method, node_url(node_id) + path, headers=headers,
        data=None if body is None else iter(body)))
    if body is None:
        content = signing.EMPTY_SHA256
    else:
        content = body_sha256.lower() if body_sha256 else signing.STREAMING
    signed = signing.sign(method, signing.target_of_url(prepared.url), node_id, content,
                          prepared.headers)
    prepared.headers.update(signed)
    if content == signing.STREAMING:
        # Still chunked (prepare_request saw a generator): the bytes, then their signed digest.
        prepared.body = signing.trailed(prepared.body, signing.signature_of(signed))
    origin = request_id.get()
    if origin:
        prepared.headers["X-Request-ID"] = origin  # the peer logs it as the origin of its work
    series(PEER_REQUESTS, node_id, method).inc()
    try:
        # No redirects: a peer never sends one, and a signed request goes to one node only.
        return current.send(prepared, timeout=TIMEOUT, stream=stream, allow_redirects=False)
    except requests.RequestException as exc:
        series(PEER_FAILURES, node_id).inc()
        _failed_at[node_id] = time.time()
        raise PeerUnavailable(f"node {node_id!r} is unreachable: {exc.__class__.__name__}"
                              ) from exc


def suspect(node_id: str, heard_at: float = 0.0) -> bool:
    """Did a request to this node fail to connect or time out in the last SUSPECT_SECONDS, and
    has it not heartbeat since (`heard_at`, Unix time)? Its heartbeat may not have gone stale
    yet: copies go elsewhere, reads try it last. A node back from a restart heartbeats at once."""
    failed = _failed_at.get(node_id)
    return failed is not None and failed > heard_at and time.time() - failed < SUSPECT_SECONDS


def error_code(response: requests.Response) -> ErrorCode | None:
    """The `code` of a peer's error answer, read from its JSON body (never searched for in the
    text, where a message could mention any code); None if it carries no code we know."""
    try:
        return ErrorCode(response.json()["code"])
    except (ValueError, KeyError, TypeError):  # not JSON (a proxy's page), no code, or unknown
        return None
