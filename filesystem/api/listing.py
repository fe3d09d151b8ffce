"""Listings as HTTP answers (API.md §7.3, §7.10, §16.5): whole when short, streamed in constant
memory when long, and pages that end with a signed cursor.

A listing answered whole is the upstream object byte for byte, `count` before `items`, with
`X-CallFS-Count` and `Content-Length`. A longer one streams while its rows are read; its count
is known only at the end, so it follows the items (JSON objects are unordered) and the header is
left out: counting first would take a second walk of the tree, with every permission check, and
could disagree with the items sent if entries came or went in between. Counted as it is sent,
`count` is always the number of `items`.

A page (`limit`) is answered whole; `next_cursor` names the position after its last entry, as
S3's continuation token does, signed with the site's secret key and bound to the listing's path,
`recursive` and `max_depth`. Going on from a position re-reads the tree from there: every
directory is checked for the caller again, and an entry deleted meanwhile still marks where
the next page starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from json.encoder import encode_basestring

from django.core import signing
from django.http import HttpResponse, StreamingHttpResponse

from callfs_site.db import release_connections
from callfs_site.headers import set_headers
from filesystem.exceptions import InvalidRequest
from filesystem.services.lookup import Entry, Listing, Position

# Up to this many entries a listing is answered whole; longer ones stream.
WHOLE_ANSWER_ENTRIES = 1000
# Entries per piece of a streamed body (about 80 KB of JSON).
CHUNK_ENTRIES = 500
MAX_LIMIT = 10_000
CURSOR_SALT = "filesystem.listing.cursor"
JSON = "application/json"


def directory_response(listing: Listing, *, limit: int | None = None,
                       cursor: str = "") -> HttpResponse:
    """The answer of GET /v1/directories/{path}: the listing object (§7.10), a page of it with
    `limit`, from just after `cursor`. Everything that can fail with an error status (the
    cursor, the first rows) is done before the first byte."""
    after = read_cursor(cursor, listing) if cursor else None
    entries = listing.entries(after)
    encode = _full if listing.full else _names_only
    head = f'{{"path":{_js_safe(encode_basestring(listing.path))},"type":"directory","recursive":'
    head += "true" if listing.recursive else "false"
    if listing.recursive:
        head += f',"max_depth":{listing.max_depth}'
    headers = {"X-CallFS-Type": "directory",
               "X-CallFS-Recursive": "true" if listing.recursive else "false"}
    tail = "}"
    if limit is not None:
        items = list(islice(entries, limit + 1))
        if len(items) > limit:
            del items[limit:]
            tail = f',"next_cursor":"{make_cursor(listing, listing.position(items[-1]))}"}}'
    else:
        items = list(islice(entries, WHOLE_ANSWER_ENTRIES + 1))
        if len(items) > WHOLE_ANSWER_ENTRIES:
            response = StreamingHttpResponse(
                _streamed_object(head, chain(items, entries), encode), content_type=JSON)
            set_headers(response, headers)
            return response
    body = f'{head},"count":{len(items)},"items":[{",".join(map(encode, items))}]{tail}'
    response = HttpResponse(_js_safe(body).encode(), content_type=JSON)
    set_headers(response, {**headers, "X-CallFS-Count": str(len(items))})
    return response


def children_response(listing: Listing) -> HttpResponse:
    """The answer of GET /v1/files/{directory}: a bare JSON array of its children (§7.3), whole
    when short, streamed when long (the same bytes either way)."""
    entries = listing.entries()
    encode = _full if listing.full else _names_only
    items = list(islice(entries, WHOLE_ANSWER_ENTRIES + 1))
    if len(items) <= WHOLE_ANSWER_ENTRIES:
        return HttpResponse(_js_safe(f"[{','.join(map(encode, items))}]").encode(),
                            content_type=JSON)
    return StreamingHttpResponse(_streamed_array(chain(items, entries), encode),
                                 content_type=JSON)


def make_cursor(listing: Listing, position: Position) -> str:
    """The opaque `next_cursor` of a page: the position after its last entry, signed and bound
    to this listing (its path, `recursive` and `max_depth`)."""
    return signing.dumps({"path": listing.path, "recursive": listing.recursive,
                          "max_depth": listing.max_depth, "after": "/".join(position.names),
                          "type": position.type}, salt=CURSOR_SALT, compress=True)


def read_cursor(cursor: str, listing: Listing) -> Position:
    """The position a cursor of this listing names; 400 INVALID_REQUEST for anything else."""
    try:
        data = signing.loads(cursor, salt=CURSOR_SALT)
    except signing.BadSignature:
        raise InvalidRequest("cursor: not a cursor this server gave") from None
    if not isinstance(data, dict) or [data.get(key) for key in (
            "path", "recursive", "max_depth")] != [listing.path, listing.recursive,
                                                   listing.max_depth]:
        raise InvalidRequest("cursor: it belongs to another listing (path, recursive or "
                             "max_depth differ)")
    after, kind = data.get("after"), data.get("type")
    if not isinstance(after, str) or not isinstance(kind, str):
        raise InvalidRequest("cursor: not a position in this listing")
    try:
        return listing.position_at(after, kind)
    except InvalidRequest as exc:
        raise InvalidRequest(f"cursor: {exc.detail}") from None


def _streamed_object(head: str, entries: Iterable[Entry], encode) -> Iterator[bytes]:
    count = 0
    opening = f'{head},"items":['
    for text, size in _pieces(entries, encode):
        yield (opening + text).encode()
        opening = ","
        count += size
    yield f'{"" if count else opening}],"count":{count}}}'.encode()


def _streamed_array(entries: Iterable[Entry], encode) -> Iterator[bytes]:
    opening = "["
    for text, _ in _pieces(entries, encode):
        yield (opening + text).encode()
        opening = ","
    yield b"]" if opening == "," else b"[]"


def _pieces(entries: Iterable[Entry], encode) -> Iterator[tuple[str, int]]:
    """The entries as JSON, CHUNK_ENTRIES at a time (text, number of entries). While a piece
    travels the listing holds no pooled database connection (its queries fetch whole pages, no
    cursor stays open): a client reading a long listing slowly must not keep one of a worker's
    few from everyone else (callfs_site.db). Between pieces the worker's other connections get
    their turn (under gevent, sleep(0) yields to them): listing a large tree costs seconds of
    CPU, which must not stall everything else."""
    entries = iter(entries)
    while True:
        batch = list(islice(entries, CHUNK_ENTRIES))
        if not batch:
            return
        release_connections(long_transfer=False)
        yield _js_safe(",".join(map(encode, batch))), len(batch)
        time.sleep(0)


def _full(entry: Entry) -> str:
    name, path, kind, size, mode, owner, group, mtime = entry
    return (f'{{"name":{encode_basestring(name)},"path":{encode_basestring(path)},'
            f'"type":"{kind}","size":{size},"mode":"{mode:04o}",'
            f'"owner":{encode_basestring(owner)},"group":{encode_basestring(group)},'
            f'"mtime":"{mtime}"}}')


def _names_only(entry: Entry) -> str:
    """An entry of a directory the caller may read but not traverse: what readdir gives."""
    return (f'{{"name":{encode_basestring(entry[0])},"path":{encode_basestring(entry[1])},'
            f'"type":"{entry[2]}"}}')


def _js_safe(text: str) -> str:
    """U+2028 and U+2029 escaped, as DRF's JSONRenderer does (JavaScript reads them as line
    ends), so that a listing is the same bytes however it is built."""
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
