"""Consistency between metadata and stored bytes (`manage.py fsck`).

Finds copies on this node (of the files it is primary of, and its replicas of others) whose bytes
are missing, of the wrong size or corrupt (their sha256, when asked), blobs no file references
(orphans, e.g. left by a crash between writing bytes and committing metadata) and upload temp
files left by a crash; `repair` replaces damaged copies from good ones on other nodes (with
CALLFS_REPLICAS > 1) and deletes orphans and temp files older than a grace period (empty blobs
an hour longer: they may be unused upload slots). It never deletes metadata: a file with no good
copy left is reported for an operator to decide.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import F

from filesystem import repair as replicas
from filesystem.models import Inode, InodeType, Replica
from filesystem.storage import available_backends, get_backend
from filesystem.storage.local import LocalStorage

# A blob younger than this may belong to an upload whose metadata is being committed right now.
GRACE_SECONDS = 15 * 60


@dataclass
class Report:
    checked_files: int = 0
    missing: list[str] = field(default_factory=list)  # paths whose bytes are gone
    wrong_size: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # copies whose sha256 differs
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (backend, key)
    stale_temp_files: list[str] = field(default_factory=list)
    repaired: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.wrong_size or self.corrupt or self.orphans
                    or self.stale_temp_files)


def check(*, repair: bool = False, grace: float = GRACE_SECONDS, checksums: bool = False,
          progress: Callable[[str], None] | None = None) -> Report:
    """Compare this node's metadata with its backends (its local disk, and S3 if configured):
    the files it holds the primary copy of and its replicas of others. `checksums`: read every
    copy here and compare its sha256 too. With `repair`, a damaged copy here is replaced from a
    good one elsewhere (with replicas), and orphans and stale temp files go."""
    report = Report()
    now = time.time()
    node = settings.CALLFS.node_id
    damaged: list[int] = []
    for backend_name in available_backends():
        backend = get_backend(backend_name)
        files = Inode.objects.filter(type=InodeType.FILE, backend=backend_name)
        columns = ("pk", "path", "blob_key", "size", "sha256")
        copies = files.order_by().values_list(*columns)
        if backend_name == "localfs":  # its primary copies, and its replicas of others
            copies = copies.filter(node_id=node).union(
                files.order_by().filter(replicas__node_id=node, replicas__blob_key=F("blob_key"))
                .values_list(*columns))
        referenced: set[str] = set()
        for pk, path, key, size, sha256 in copies.iterator():
            report.checked_files += 1
            referenced.add(key)
            # S3 keeps its own checksums: only local copies are read back whole.
            problem = _problem(backend, key, size,
                               sha256 if checksums and backend_name == "localfs" else "")
            if problem:
                getattr(report, problem).append(path)
                if backend_name == "localfs":
                    damaged.append(pk)
        if progress:
            progress(f"{backend_name}: {len(referenced)} files checked")
        for key in backend.keys():
            if key in referenced:
                continue
            try:
                age = now - backend.modified_at(key)
                if age < grace:
                    continue
                # An empty file may be a running process's unused upload slot (a slot is written
                # at most SLOT_LIFETIME after it was made; the grace covers that write's commit).
                if isinstance(backend, LocalStorage) and backend.may_be_upload_slot(key,
                                                                                    age - grace):
                    continue
            except FileNotFoundError:
                continue
            # Referenced by a file committed after we read the list? Then it is no orphan.
            if Inode.objects.filter(backend=backend_name, blob_key=key).exists() or (
                    backend_name == "localfs"
                    and Replica.objects.filter(node_id=node, blob_key=key).exists()):
                continue
            report.orphans.append((backend_name, key))
            if repair:
                backend.delete(key)
                report.repaired += 1
        if isinstance(backend, LocalStorage):
            for temp in backend.stale_temp_files(older_than=now - grace):
                report.stale_temp_files.append(str(temp))
                if repair:
                    temp.unlink(missing_ok=True)
                    report.repaired += 1
    if repair and damaged and settings.CALLFS.replicas > 1:
        for key in Inode.objects.filter(pk__in=damaged).values_list("blob_key", flat=True):
            get_backend("localfs").delete(key)  # a damaged copy here: a good one replaces it
        summary = replicas.run(verify=True, only=damaged)
        report.repaired += summary.copied + summary.promoted
    return report


def _problem(backend, key: str, size: int, sha256: str) -> str | None:
    """What is wrong with a copy: "missing", "wrong_size", "corrupt" (its sha256), or None."""
    try:
        if backend.size(key) != size:
            return "wrong_size"
        if sha256:
            digest = hashlib.sha256()
            with backend.open(key) as reader:
                while chunk := reader.read(1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() != sha256:
                return "corrupt"
    except FileNotFoundError:
        return "missing"
    return None
