"""Receivers filesystem connects to signals of the apps below it."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef
from django.dispatch import receiver

from cluster.services import NodeInUse
from cluster.signals import node_removing
from filesystem.models import CopyState, Inode, InodeType, Replica


@receiver(node_removing, dispatch_uid="filesystem-keep-nodes-holding-files")
def keep_nodes_holding_files(sender, node_id: str, **kwargs) -> None:
    """A node whose disk holds the only copy of a file stays registered: its peers reach those
    bytes through it. Files it holds the primary copy of, with a good replica elsewhere, may
    go with it: reads use the replica, and repair makes it the primary."""
    replicated_elsewhere = Replica.objects.filter(
        inode_id=OuterRef("pk"), blob_key=F("inode__blob_key"), state=CopyState.OK,
    ).exclude(node_id=node_id)
    holding = (Inode.objects.filter(node_id=node_id, backend="localfs", type=InodeType.FILE)
               .exclude(Exists(replicated_elsewhere)).count())
    if holding:
        raise NodeInUse(f"node {node_id!r} still holds the only copy of {holding} file(s); "
                        "run manage.py drain_node first, or move them away (PATCH with "
                        "\"instance\") or delete them")
