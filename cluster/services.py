"""Node registration, heartbeats and removal."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections
from django.utils import timezone

from cluster.models import HEARTBEAT_INTERVAL, Node
from cluster.signals import node_removing

logger = logging.getLogger(__name__)
VERSION = "0.1.0"


def register_node(node_id: str, url: str, *, heartbeat: bool = False) -> tuple[Node, bool]:
    """Add or update a node; with `heartbeat` it is marked alive now."""
    defaults: dict[str, object] = {"url": url.rstrip("/"), "version": VERSION}
    if heartbeat:
        defaults["last_heartbeat"] = timezone.now()
    return Node.objects.update_or_create(node_id=node_id, defaults=defaults)


def heartbeat(node_id: str, url: str) -> None:
    """Mark this node alive (registering it if an operator removed it meanwhile)."""
    updated = Node.objects.filter(node_id=node_id).update(last_heartbeat=timezone.now(),
                                                          url=url.rstrip("/"))
    if not updated:
        register_node(node_id, url, heartbeat=True)


class NodeInUse(Exception):
    """A node that still holds file bytes cannot be removed."""


def remove_node(node_id: str) -> None:
    """Forget a node that holds no files; refuse (NodeInUse, raised by a `node_removing`
    receiver) while it still holds some."""
    node_removing.send(sender=Node, node_id=node_id)
    deleted, _ = Node.objects.filter(node_id=node_id).delete()
    if not deleted:
        raise Node.DoesNotExist(f"no node {node_id!r}")


def start_heartbeat(node_id: str, url: str) -> threading.Thread:
    """Register now and keep heartbeating from a daemon thread. Each gunicorn worker starts one
    (gunicorn.conf.py's post_worker_init), a greenlet there; the master runs none."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                heartbeat(node_id, url)
            except Exception as exc:  # the database may be away: try again next interval
                logger.warning("heartbeat of node %s failed: %s", node_id, exc)
            finally:
                close_old_connections()
            stop.wait(HEARTBEAT_INTERVAL.total_seconds())

    thread = threading.Thread(target=beat, name="callfs-heartbeat", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
