"""Keeping every local-disk file at CALLFS_REPLICAS good copies: `manage.py repair`, each node's
background repair, and `manage.py drain_node`.

A file's copies are its primary (`Inode.node_id`) and its `Replica` rows. A copy counts when its
node is live and, if checked (`verify`), the node holds the blob at its recorded size. Repair
makes the missing copies on live nodes that hold none, streaming the bytes from a good copy, and
records each under the file's path lock only if the file still has those bytes (an overwrite
meanwhile makes the copy stale: it is removed again). A primary found missing hands its role to
a good replica. Copies beyond CALLFS_REPLICAS on live nodes are trimmed. Several nodes may
repair at once: a copy is written atomically under the blob's own key, and a row recorded twice
is refused by its unique constraint. Blobs that nodes were away for when their file went
(`PendingDiscard`) are deleted first.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Count, F, Q

from callfs_site.errors import CallFSError
from callfs_site.files import flock_within
from callfs_site.locks import distributed_lock
from callfs_site.metrics import REPAIRED_BYTES, REPAIRED_COPIES, UNDER_REPLICATED
from cluster.models import Node
from filesystem.models import CopyState, Inode, InodeType, PendingDiscard, Replica
from filesystem.services.blobs import discard_from, live_nodes, node_store, replicate
from filesystem.services.common import this_node
from filesystem.storage import BackendUnavailable

logger = logging.getLogger(__name__)

BATCH = 500


@dataclass
class Summary:
    checked: int = 0
    copied: int = 0
    copied_bytes: int = 0
    promoted: int = 0
    trimmed: int = 0
    missing: int = 0  # copies found missing or the wrong size
    discarded: int = 0  # blobs of deleted or overwritten files removed from returning nodes
    lost: list[str] = field(default_factory=list)  # files without any good copy reachable
    under_replicated: int = 0  # files still short of copies when the round ended

    def line(self) -> str:
        return (f"{self.checked} files checked, {self.copied} copies made "
                f"({self.copied_bytes} bytes), {self.missing} missing, {self.promoted} "
                f"primaries moved, {self.trimmed} extra copies removed, {self.discarded} stale "
                f"blobs deleted, {len(self.lost)} without a reachable copy, "
                f"{self.under_replicated} under-replicated")


@dataclass
class _File:
    pk: int
    path: str
    primary: str
    blob_key: str
    sha256: str
    size: int
    replicas: dict[str, Replica]  # node -> its row (any state, this version's key)

    @property
    def copies(self) -> list[str]:
        return [self.primary, *(node for node, row in self.replicas.items()
                                if row.state == CopyState.OK)]


def under_replicated() -> int:
    """Local-disk files with fewer good copies on live nodes than CALLFS_REPLICAS."""
    return _short_of_copies(Inode.objects.all(), _reachable()).count()


def _reachable() -> list[str]:
    """The live nodes, and this one: its own disk answers whether or not it has heartbeat
    (a node that never served, a single node without a cluster)."""
    live = live_nodes()
    return live if this_node() in live else [*live, this_node()]


def _short_of_copies(files, live: list[str]):
    files = files.filter(type=InodeType.FILE, backend="localfs")
    if not live:  # no node answers: no file has a good copy
        return files
    good = Count("replicas", filter=Q(replicas__state=CopyState.OK,
                                      replicas__blob_key=F("blob_key"),
                                      replicas__node_id__in=live))
    return (files.annotate(good=good)
            .filter(Q(node_id__in=live, good__lt=settings.CALLFS.replicas - 1)
                    | Q(~Q(node_id__in=live), good__lt=settings.CALLFS.replicas)))


def run(*, verify: bool = True, all_files: bool = True, only: list[int] | None = None,
        progress: Callable[[str], None] | None = None) -> Summary:
    """One repair round over every local-disk file (`all_files`) or, for a node's background
    repair, those short of copies that this node looks after (it is their primary, or their
    primary is away and the file falls to it), or the files `only` names (ids). `verify`: ask
    each copy's node whether it holds the blob at its size (one request per copy), else trust
    the rows."""
    summary = Summary()
    summary.discarded = discard_pending()
    live = _reachable()
    registered = set(Node.objects.values_list("node_id", flat=True))
    # Rows of copies on removed nodes can never be read again.
    Replica.objects.exclude(node_id__in=registered).delete()
    files = Inode.objects.filter(type=InodeType.FILE, backend="localfs")
    if only is not None:
        files = files.filter(pk__in=only)
    elif not all_files:
        files = _short_of_copies(files, live)
    after = 0
    while True:
        batch = list(files.filter(pk__gt=after).order_by("pk")
                     .values_list("pk", "path", "node_id", "blob_key", "sha256", "size")[:BATCH])
        if not batch:
            break
        after = batch[-1][0]
        rows: dict[int, dict[str, Replica]] = {}
        for replica in Replica.objects.filter(inode_id__in=[row[0] for row in batch]):
            rows.setdefault(replica.inode_id, {})[replica.node_id] = replica
        for pk, path, primary, key, sha256, size in batch:
            found = _File(pk, path, primary, key, sha256, size, {
                node: row for node, row in rows.get(pk, {}).items() if row.blob_key == key})
            if not all_files and not _looks_after(found, live):
                continue
            summary.checked += 1
            try:
                _repair_file(found, live, registered, verify, summary)
            except (CallFSError, BackendUnavailable) as exc:
                logger.warning("repair of %s stopped: %s", path, exc)
        if progress:
            progress(f"{summary.checked} files checked, {summary.copied} copies made")
    summary.under_replicated = under_replicated()
    UNDER_REPLICATED.set(summary.under_replicated)
    return summary


def _looks_after(found: _File, live: list[str]) -> bool:
    """Which node's background repair handles a file: its primary's, or if the primary is
    away, one live node picked by the file's id, so that nodes do not all copy the same file."""
    if found.primary in live:
        return found.primary == this_node()
    return bool(live) and sorted(live)[found.pk % len(live)] == this_node()


def _holds(node: str, found: _File) -> bool:
    try:
        return node_store(node).size(found.blob_key) == found.size
    except FileNotFoundError:
        return False


def _repair_file(found: _File, live: list[str], registered: set[str], verify: bool,
                 summary: Summary) -> None:
    wanted = settings.CALLFS.replicas
    good = [node for node in found.copies if node in live]
    if verify:
        missing, silent = [], []
        for node in good:
            try:
                if not _holds(node, found):
                    missing.append(node)
            except BackendUnavailable:  # heartbeating, but not answering now: neither way
                silent.append(node)
        if missing:
            summary.missing += len(missing)
            _record_missing(found, missing)
        good = [node for node in good if node not in missing and node not in silent]
        live = [node for node in live if node not in silent]
    if not good:
        summary.lost.append(found.path)
        logger.error("no reachable good copy of %s (nodes %s)", found.path, found.copies)
        return
    # The primary missing on its live node, or its node removed: a good replica takes over.
    if found.primary not in good and (found.primary in live or found.primary not in registered):
        if _promote(found, good[0]):
            summary.promoted += 1
    takers = set(live_nodes(for_new_copies=True))
    targets = [node for node in live if node not in good and node in takers]
    random.shuffle(targets)
    targets.sort(key=lambda node: node not in found.replicas)  # where a copy was lost, first
    for target in targets[:max(wanted - len(good), 0)]:
        if replicate("localfs", found.blob_key, found.sha256,
                     sorted(good, key=lambda node: node != this_node()), target):
            if _record_copy(found, target):
                good.append(target)
                summary.copied += 1
                summary.copied_bytes += found.size
                REPAIRED_COPIES.inc()
                REPAIRED_BYTES.inc(found.size)
    extra = [node for node in good if node != found.primary][max(wanted - 1, 0):]
    if len(good) > wanted and extra:
        summary.trimmed += _trim(found, extra[:len(good) - wanted])
    lost = [node for node, row in found.replicas.items()
            if row.state == CopyState.MISSING and node not in good]
    if lost and len(good) >= wanted:  # replaced elsewhere: the rows of lost copies go
        _trim(found, lost)


def _locked_current(found: _File) -> Inode | None:
    """Inside the transaction, under the path lock: the file, locked, if it still has the bytes
    repair looked at."""
    return (Inode.objects.select_for_update()
            .filter(pk=found.pk, blob_key=found.blob_key).first())


def _record_missing(found: _File, nodes: list[str]) -> None:
    with distributed_lock(found.path), transaction.atomic():
        if _locked_current(found) is None:
            return
        Replica.objects.filter(inode_id=found.pk, node_id__in=nodes) \
            .update(state=CopyState.MISSING)
    for node in nodes:
        if node in found.replicas:
            found.replicas[node].state = CopyState.MISSING


def _promote(found: _File, node: str) -> bool:
    """A good replica becomes the primary; the old primary's copy, if any is left, goes."""
    with distributed_lock(found.path), transaction.atomic():
        current = _locked_current(found)
        if current is None:
            return False
        old = current.node_id
        Replica.objects.filter(inode_id=found.pk, node_id=node).delete()
        current.node_id = node
        current.save(update_fields=["node_id"])
    logger.info("copy of %s on node %s is now its primary (was %s)", found.path, node, old)
    found.replicas.pop(node, None)
    found.primary = node
    discard_from(old, found.blob_key)
    return True


def _record_copy(found: _File, node: str) -> bool:
    with distributed_lock(found.path), transaction.atomic():
        current = _locked_current(found)
        if current is not None and current.node_id != node:
            try:
                with transaction.atomic():
                    Replica.objects.update_or_create(
                        inode_id=found.pk, node_id=node,
                        defaults={"blob_key": found.blob_key, "sha256": found.sha256,
                                  "state": CopyState.OK})
            except IntegrityError:  # another node's repair recorded it first
                return False
            PendingDiscard.objects.filter(node_id=node, blob_key=found.blob_key).delete()
            return True
    # The file changed (or went) while its bytes were copied: this copy is stale.
    discard_from(node, found.blob_key)
    return False


def _trim(found: _File, nodes: list[str]) -> int:
    with distributed_lock(found.path), transaction.atomic():
        if _locked_current(found) is None:
            return 0
        Replica.objects.filter(inode_id=found.pk, node_id__in=nodes).delete()
    for node in nodes:
        discard_from(node, found.blob_key)
    return len(nodes)


def discard_pending() -> int:
    """Delete the blobs that nodes were away for when their files went: this node's from its
    disk, live peers' through them. A blob some file has (again) on that node stays."""
    deleted = 0
    live = set(_reachable())
    for pending in PendingDiscard.objects.filter(node_id__in=live).order_by("pk")[:10_000]:
        in_use = Inode.objects.filter(node_id=pending.node_id, blob_key=pending.blob_key,
                                      backend="localfs").exists() or \
            Replica.objects.filter(node_id=pending.node_id, blob_key=pending.blob_key).exists()
        if not in_use:
            try:
                node_store(pending.node_id).delete(pending.blob_key)
            except BackendUnavailable:
                continue
            deleted += 1
        pending.delete()
    return deleted


def drain(node_id: str, *, progress: Callable[[str], None] | None = None) -> Summary:
    """Move every copy off `node_id` before it is removed: the node is marked draining (it
    takes no new copies from then on), each file it holds gets its copies on other live nodes
    first, then the node's copy is dropped (a primary hands its role to a replica)."""
    summary = Summary()
    if not Node.objects.filter(node_id=node_id).update(draining=True):
        raise Node.DoesNotExist(f"no node {node_id!r}")
    live = [node for node in live_nodes(for_new_copies=True) if node != node_id]
    holding = Inode.objects.filter(type=InodeType.FILE, backend="localfs").filter(
        Q(node_id=node_id) | Q(replicas__node_id=node_id)).distinct()
    for pk in holding.order_by("pk").values_list("pk", flat=True).iterator():
        inode = Inode.objects.filter(pk=pk).first()
        if inode is None:
            continue
        found = _File(inode.pk, inode.path, inode.node_id, inode.blob_key, inode.sha256,
                      inode.size, {row.node_id: row for row in
                                   Replica.objects.filter(inode_id=pk, blob_key=inode.blob_key)})
        summary.checked += 1
        others = [node for node in found.copies if node != node_id and node in live]
        wanted = max(settings.CALLFS.replicas, 1)
        targets = [node for node in live if node not in found.copies]
        random.shuffle(targets)
        sources = [node_id, *others] if node_id in found.copies else others
        for target in targets[:max(wanted - len(others), 0 if others else 1)]:
            if replicate("localfs", found.blob_key, found.sha256, sources, target) \
                    and _record_copy(found, target):
                others.append(target)
                found.replicas[target] = Replica(node_id=target, state=CopyState.OK)
                summary.copied += 1
                summary.copied_bytes += found.size
        if not others:
            summary.lost.append(found.path)
            continue
        if found.primary == node_id:
            if _promote(found, others[0]):
                summary.promoted += 1
        elif _trim(found, [node_id]):
            summary.trimmed += 1
        if progress and summary.checked % BATCH == 0:
            progress(f"{summary.checked} files moved off {node_id}")
    return summary


def start_background_repair() -> threading.Thread | None:
    """Repair rounds every CALLFS_REPAIR_INTERVAL seconds from a daemon thread (a greenlet in
    the gevent worker). Each worker starts one (gunicorn.conf.py); a lock file under the data
    directory lets one worker of a node run a round at a time. Without replicas a round only
    deletes blobs that nodes were away for."""
    interval = settings.CALLFS.repair_interval
    if not interval or not settings.CALLFS.internal_secret:
        return None
    stop = threading.Event()

    def rounds() -> None:
        # Not all nodes at once: each waits a little more or less.
        while not stop.wait(interval * random.uniform(0.8, 1.2)):  # noqa: S311
            try:
                with _this_nodes_turn() as mine:
                    if not mine:
                        continue
                    if settings.CALLFS.replicas > 1:
                        summary = run(verify=False, all_files=False)
                        if summary.copied or summary.promoted or summary.lost:
                            logger.info("background repair: %s", summary.line())
                    else:
                        discard_pending()
            except Exception as exc:  # the database or a peer may be away: next round
                logger.warning("background repair failed: %s", exc)
            finally:
                close_old_connections()

    thread = threading.Thread(target=rounds, name="callfs-repair", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread


@contextmanager
def _this_nodes_turn() -> Iterator[bool]:
    """This node's repair lock (a non-blocking flock on a file under the data directory):
    true if this process holds it."""
    directory = settings.CALLFS.data_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "repair.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        yield flock_within(fd, time.monotonic(), 0, 0)  # one try: another worker's round runs
    finally:
        os.close(fd)  # releases the flock
