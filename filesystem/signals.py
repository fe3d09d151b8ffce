"""Receivers filesystem connects to signals of the apps below it."""

from __future__ import annotations

from django.dispatch import receiver

from cluster.services import NodeInUse
from cluster.signals import node_removing
from filesystem.models import Inode


@receiver(node_removing, dispatch_uid="filesystem-keep-nodes-holding-files")
def keep_nodes_holding_files(sender, node_id: str, **kwargs) -> None:
    """A node whose disk holds files stays registered: its peers reach those bytes through it."""
    holding = Inode.objects.filter(node_id=node_id, backend="localfs", type="file").count()
    if holding:
        raise NodeInUse(f"node {node_id!r} still holds {holding} file(s); move them away "
                        "first (PATCH with \"instance\") or delete them")
