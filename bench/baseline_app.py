"""The bench's host baseline: tests/worker_app.py's bare WSGI app, served with gunicorn.conf.py
exactly as CallFS is. Django's apps are loaded only because that file's post_worker_init hook
(the node heartbeat) needs them; no request goes through Django."""

import django

django.setup()

from tests.worker_app import app  # noqa: E402

__all__ = ["app"]
