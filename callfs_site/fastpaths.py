"""The performance layer: every shortcut past Django's and DRF's public APIs, listed here and
switched off together by `CALLFS_STOCK=1`.

Each was measured before it landed (BENCHMARKS.md) and each has a plain equivalent, which stock
mode runs instead. `make test` runs the suite on SQLite in both modes, so every shortcut is
proven to give the answers of the code it replaces.

The shortcuts, where they live, and what stock mode runs instead:

- SQLite: queued writers, commits flushed after the write lock and sharing their flushes, a
  connection pool, checkpoints outside the lock (`callfs_site.sqlite`) / Django's
  `django.db.backends.sqlite3` in WAL mode with `synchronous=FULL`.
- Path lookups in one hand-written query and the per-process row cache, inode INSERT and
  UPDATE written out (`filesystem.rows`) / one ORM query, no cache, `Model.save()`.
- Lean dispatch of the byte-moving methods: no request wrapper, negotiation or permission
  objects (`callfs_site.views.CallFSView`) / DRF's `APIView.dispatch`.
- Response headers put straight into Django's header store (`callfs_site.headers`) /
  `response[name] = value`.
- A gunicorn worker's settings read once (`callfs_site.workers.SettledConfig`, installed by
  gunicorn.conf.py) / gunicorn's `Config`, asked on every request.

The gevent worker (`callfs_site.workers`) is not switched: it is the server model, not a
shortcut, and its hooks into gunicorn are tested against gunicorn's own bytes
(tests/test_worker.py). It is version-checked here with the rest: a shortcut written against
one release of a library may silently misbehave on another, so the server refuses to start on
other releases unless stock mode is on.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from django.conf import settings

# The releases (major.minor) whose internals the shortcuts use.
WRITTEN_AGAINST = {"Django": "5.2", "djangorestframework": "3.18", "gunicorn": "27.0"}


def enabled() -> bool:
    """Are the shortcuts on (not stock mode)? Read per call, so tests may switch it."""
    return not settings.CALLFS.stock


def version_mismatches() -> list[str]:
    """What differs from WRITTEN_AGAINST among the installed packages, one line each."""
    found = []
    for package, expected in WRITTEN_AGAINST.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            continue  # gunicorn is absent where nothing serves (a management command's image)
        if installed.split(".")[:2] != expected.split("."):
            found.append(f"{package} {installed} is installed; the fast paths were written "
                         f"against {expected}.x")
    return found
