"""Signed node-to-node requests: a peer proves it holds CALLFS_INTERNAL_SECRET without sending it.

The secret never travels. Each request to a peer carries an HMAC-SHA256, keyed with a key derived
from the secret, over one canonical text (one field a line):

    CALLFS-HMAC-SHA256-v1
    <METHOD>
    <path, percent-decoded as Django's request.path, then "?<raw query>" if there is one>
    <node id the request is meant for>            X-CallFS-Node
    <unix time in seconds>                        X-CallFS-Timestamp
    <32 random hex digits>                        X-CallFS-Nonce
    <sha256 hex of the body, or "streaming">      X-CallFS-Content-SHA256
    range:<Range header or empty>
    x-callfs-copy-from:<X-CallFS-Copy-From header or empty>

sent as `Authorization: CallFS-HMAC-SHA256 <hex>`. Only the path may hold a newline, and it has a
fixed number of lines on either side, so the text reads back one way only.

The receiver (`verify`) refuses a request whose timestamp is more than MAX_SKEW_SECONDS from its
own clock, whose MAC differs (compared in constant time), that names another node (a request
captured by whatever a node row points at cannot be replayed at a real node), or whose nonce it
has seen: nonces are remembered for the whole window in Django's default cache, which is Redis
shared by every node when REDIS_URL is set (per process otherwise). If that store is down the
request is refused (503): fail closed.

Bodies stay streams. A body whose sha256 the sender knows in advance (an empty one; a transfer
between nodes; an upload that came with X-CallFS-SHA256) is signed by that digest, and the
receiver's write refuses other bytes. A relayed upload streams through before anyone knows its
digest: it is signed as "streaming", the sender hashes it as it goes and appends a 32-byte
trailer, HMAC(key, signature + sha256 of the bytes); the receiver strips the trailer, stores the
bytes (its backend computes their sha256 anyway) and deletes them again unless the trailer
matches. Either way, bytes altered on the way are never stored under a key the sender commits.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.cache import caches

from callfs_site.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

SCHEME = "CallFS-HMAC-SHA256"
VERSION_LINE = "CALLFS-HMAC-SHA256-v1"
NODE_HEADER = "X-CallFS-Node"
TIMESTAMP_HEADER = "X-CallFS-Timestamp"
NONCE_HEADER = "X-CallFS-Nonce"
CONTENT_HEADER = "X-CallFS-Content-SHA256"
# Request headers that change what the receiver does; they are signed (empty when absent).
SIGNED_HEADERS = ("Range", "X-CallFS-Copy-From")
STREAMING = "streaming"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TRAILER_BYTES = 32  # an HMAC-SHA256 digest
# Clocks of the nodes may differ this much; a request older (or newer) than that is refused,
# and its nonce is remembered for the whole window it could be accepted in.
MAX_SKEW_SECONDS = 30
NONCE_SECONDS = 2 * MAX_SKEW_SECONDS + 1

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_METHOD = re.compile(r"[A-Z]{1,16}")


class SignatureError(Exception):
    """A peer request is unsigned, badly signed, stale, replayed or meant for another node."""


@dataclass(frozen=True)
class SignedRequest:
    """What a verified request was signed with (DRF's `request.auth` on /v1/internal/)."""

    node_id: str
    timestamp: int
    nonce: str
    content_sha256: str  # 64 hex digits, or STREAMING
    signature: str


def _secret() -> str:
    secret = settings.CALLFS.internal_secret
    if not secret:
        raise SignatureError("clustering is off on this node (CALLFS_INTERNAL_SECRET is unset)")
    return secret


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    """The signing key: derived, so that a MAC never equals anything the secret opens."""
    return hmac.new(secret.encode(), b"callfs peer request signing v1", hashlib.sha256).digest()


def _mac(message: str) -> str:
    return hmac.new(_key(_secret()), message.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


def _canonical(method: str, target: str, node_id: str, timestamp: int, nonce: str,
               content: str, signed_headers: Mapping[str, str]) -> str:
    values = {name.lower(): value for name, value in signed_headers.items()}
    lines = [VERSION_LINE, method, target, node_id, str(timestamp), nonce, content]
    lines += [f"{name.lower()}:{values.get(name.lower(), '')}" for name in SIGNED_HEADERS]
    return "\n".join(lines)


def target_of_url(url: str) -> str:
    """The signed target of a URL about to be sent: decoded path, then the raw query."""
    parts = urlsplit(url)
    path = unquote(parts.path) or "/"
    return f"{path}?{parts.query}" if parts.query else path


def target_of_request(request) -> str:
    """The signed target of a received Django request (the same text `target_of_url` gives)."""
    query = request.META.get("QUERY_STRING", "")
    return f"{request.path}?{query}" if query else request.path


def sign(method: str, target: str, node_id: str, content_sha256: str = EMPTY_SHA256,
         headers: Mapping[str, str] | None = None, *, now: float | None = None
         ) -> dict[str, str]:
    """The headers that authenticate one request to node `node_id` (`headers`: the request's
    own, whose SIGNED_HEADERS are covered). The signature is in Authorization."""
    content = content_sha256.lower()
    if content != STREAMING and not _HEX64.fullmatch(content):
        raise ValueError("content_sha256 must be 64 hex digits or 'streaming'")
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_hex(16)
    signature = _mac(_canonical(method.upper(), target, node_id, timestamp, nonce, content,
                                headers or {}))
    return {"Authorization": f"{SCHEME} {signature}", NODE_HEADER: node_id,
            TIMESTAMP_HEADER: str(timestamp), NONCE_HEADER: nonce, CONTENT_HEADER: content}


def signature_of(headers: Mapping[str, str]) -> str:
    """The signature in headers made by `sign()` (what a streamed body's trailer is bound to)."""
    return headers["Authorization"].removeprefix(f"{SCHEME} ")


def verify(method: str, target: str, headers: Mapping[str, str], *, now: float | None = None
           ) -> SignedRequest:
    """Check a received request's signature; raise SignatureError (or ServiceUnavailable when
    the nonce store is down) unless it was signed for this node, recently, and only once."""
    secret = _secret()
    scheme, _, signature = headers.get("Authorization", "").partition(" ")
    if scheme != SCHEME or not _HEX64.fullmatch(signature):
        raise SignatureError("not a signed peer request")
    node_id = headers.get(NODE_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    content = headers.get(CONTENT_HEADER, "")
    if not (_NODE.fullmatch(node_id) and _TIMESTAMP.fullmatch(stamp) and _NONCE.fullmatch(nonce)
            and (content == STREAMING or _HEX64.fullmatch(content))
            and _METHOD.fullmatch(method)):
        raise SignatureError("malformed signature headers")
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > MAX_SKEW_SECONDS:
        raise SignatureError("timestamp outside the allowed clock skew")
    expected = hmac.new(_key(secret), _canonical(
        method, target, node_id, timestamp, nonce, content,
        {name: headers.get(name, "") for name in SIGNED_HEADERS},
    ).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        raise SignatureError("signature mismatch")
    if node_id != settings.CALLFS.node_id:
        raise SignatureError(f"signed for node {node_id!r}, not this one")
    if not _first_use(nonce):
        raise SignatureError("nonce already used")
    return SignedRequest(node_id, timestamp, nonce, content, signature)


def _first_use(nonce: str) -> bool:
    """Remember a nonce for the window; False if it was already there (an atomic add: Redis
    SET NX when REDIS_URL is set)."""
    try:
        return caches["default"].add(f"peer-nonce:{nonce}", 1, timeout=NONCE_SECONDS)
    except Exception as exc:  # django-redis raises its own and redis-py's errors: fail closed
        logger.warning("replay store unavailable while checking a peer request: %s", exc)
        raise ServiceUnavailable("the replay store (Redis) is unavailable") from None


def _body_mac(signature: str, sha256: str) -> bytes:
    message = f"CALLFS-BODY-v1\n{signature}\n{sha256}".encode()
    return hmac.new(_key(_secret()), message, hashlib.sha256).digest()


def trailed(chunks: Iterable[bytes], signature: str) -> Iterator[bytes]:
    """Sender: a streamed body as it is, then the trailer binding its sha256 to `signature`."""
    digest = hashlib.sha256()
    for chunk in chunks:
        if chunk:
            digest.update(chunk)
            yield chunk
    yield _body_mac(signature, digest.hexdigest())


class TrailedBody:
    """Receiver: iterating yields a "streaming" body without its trailer, in constant memory;
    `matches(sha256)` then tells whether the trailer vouches for bytes with that digest."""

    def __init__(self, chunks: Iterable[bytes], signed: SignedRequest):
        self._chunks = chunks
        self._signature = signed.signature
        self._tail = b""
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        tail = b""
        for chunk in self._chunks:
            if len(tail) + len(chunk) <= TRAILER_BYTES:
                tail += chunk
                continue
            cut = len(chunk) - TRAILER_BYTES
            if cut >= 0:
                out = b"".join((tail, memoryview(chunk)[:cut])) if tail else chunk[:cut]
                tail = chunk[cut:]
                if out:
                    yield out
            else:  # a chunk shorter than the trailer: part of the held-back tail goes out
                combined = tail + chunk
                yield combined[:-TRAILER_BYTES]
                tail = combined[-TRAILER_BYTES:]
        self._tail = tail
        self._complete = True

    def matches(self, sha256: str) -> bool:
        """True if the whole body was read and its trailer is the MAC of `sha256`."""
        return (self._complete and len(self._tail) == TRAILER_BYTES
                and hmac.compare_digest(self._tail, _body_mac(self._signature, sha256)))
