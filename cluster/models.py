"""The nodes of a CallFS cluster."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

# A node heartbeats every HEARTBEAT_INTERVAL; one silent for DOWN_AFTER is shown as down.
HEARTBEAT_INTERVAL = timedelta(seconds=10)
DOWN_AFTER = timedelta(seconds=30)


class NodeQuerySet(models.QuerySet):
    def up(self) -> NodeQuerySet:
        return self.filter(last_heartbeat__gte=timezone.now() - DOWN_AFTER)


class Node(models.Model):
    """A CallFS process group that keeps files on its own disk, reachable by peers at `url`."""

    node_id = models.CharField(max_length=64, unique=True)
    url = models.URLField(max_length=500, help_text="base URL peers use, e.g. http://10.0.0.2:8000")
    version = models.CharField(max_length=32, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    draining = models.BooleanField(
        default=False, help_text="leaving the cluster (manage.py drain_node): its copies are "
        "moved elsewhere and it receives no new ones")

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["node_id"]

    def __str__(self) -> str:
        return self.node_id

    @property
    def is_up(self) -> bool:
        return self.last_heartbeat is not None and \
            timezone.now() - self.last_heartbeat <= DOWN_AFTER

    @property
    def state(self) -> str:
        return "up" if self.is_up else "down"
