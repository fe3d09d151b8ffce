"""How the admin shows inodes: `ls -l` modes, human sizes, browser URLs. Pure functions."""

from __future__ import annotations

import stat
from urllib.parse import urlencode

from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from filesystem import paths
from filesystem.models import InodeType

_TYPE_BITS = {InodeType.DIRECTORY: stat.S_IFDIR, InodeType.FILE: stat.S_IFREG}


def mode_string(kind: str, mode: int) -> str:
    """`ls -l` notation: 0o755 for a directory is `drwxr-xr-x`, 0o1777 `drwxrwxrwt`."""
    return stat.filemode(_TYPE_BITS.get(kind, 0) | mode)


def human_size(size: int) -> str:
    """1536 is `1.5 KB` (binary units, as Django's `filesizeformat`)."""
    return filesizeformat(size)


def browse_url(path: str = paths.ROOT, **params) -> str:
    """The browser page of a directory (a file's path lands on its entry page)."""
    return _url("admin:filesystem_inode_browse", path, params)


def entry_url(path: str, **params) -> str:
    """The page of one file or directory: metadata, links and actions."""
    return _url("admin:filesystem_inode_entry", path, params)


def action_url(action: str, path: str) -> str:
    """Where an entry's forms post: `download`, `chmod`, `move`, `delete` or `mkdir`."""
    return _url(f"admin:filesystem_inode_{action}", path, {})


def _url(name: str, path: str, params: dict) -> str:
    query = {"path": path, **{k: v for k, v in params.items() if v not in (None, "")}}
    return f"{reverse(name)}?{urlencode(query)}"


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """(label, path) for `/` and each directory down to `path`."""
    crumbs = [("/", paths.ROOT)]
    if path != paths.ROOT:
        crumbs += [(paths.name_of(p), p) for p in [*paths.ancestors(path)[1:], path]]
    return crumbs
