"""Response headers set with Django's checks but without their per-header cost."""

from __future__ import annotations

from collections.abc import Mapping

from django.http import HttpResponseBase

from callfs_site import fastpaths


def set_headers(response: HttpResponseBase, headers: Mapping[str, str]) -> None:
    """`response[name] = value` for each pair, with the same result.

    Django checks every name and value in Python on each assignment, and a small download sets
    twenty headers: a noticeable part of its request (measured: BENCHMARKS.md). A printable
    ASCII name and value, which nearly every header here is, holds no CR or LF and encodes
    unchanged, so Django's checks would return it as it is: it goes straight into the header
    store that `ResponseHeaders` itself fills (its private `_store`). Anything else takes
    Django's path, which refuses line breaks and MIME-encodes what Latin-1 cannot hold.. A fast path
    (callfs_site.fastpaths): stock mode takes Django's path for every header."""
    if not fastpaths.enabled():
        for name, value in headers.items():
            response[name] = value
        return
    store = response.headers._store
    for name, value in headers.items():
        if value.isascii() and value.isprintable() and name.isascii() and name.isprintable():
            store[name.lower()] = (name, value)
        else:
            response[name] = value
