"""Consistency between metadata and stored bytes (`manage.py fsck`).

Finds files whose bytes are missing or of the wrong size, blobs no file references (orphans, e.g.
left by a crash between writing bytes and committing metadata, or by a peer that was down when a
file was deleted) and upload temp files left by a crash; `repair` deletes orphans and temp files
older than a grace period (empty blobs an hour longer: they may be unused upload slots). It never
deletes metadata: a file with missing bytes is reported for an operator to decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from filesystem.models import Inode, InodeType
from filesystem.storage import available_backends, get_backend
from filesystem.storage.local import LocalStorage

# A blob younger than this may belong to an upload whose metadata is being committed right now.
GRACE_SECONDS = 15 * 60


@dataclass
class Report:
    checked_files: int = 0
    missing: list[str] = field(default_factory=list)  # paths whose bytes are gone
    wrong_size: list[str] = field(default_factory=list)
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (backend, key)
    stale_temp_files: list[str] = field(default_factory=list)
    repaired: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.wrong_size or self.orphans or self.stale_temp_files)


def check(*, repair: bool = False, grace: float = GRACE_SECONDS,
          progress: Callable[[str], None] | None = None) -> Report:
    """Compare this node's metadata with its backends (its local disk, and S3 if configured)."""
    report = Report()
    now = time.time()
    node = settings.CALLFS.node_id
    for backend_name in available_backends():
        backend = get_backend(backend_name)
        files = Inode.objects.filter(type=InodeType.FILE, backend=backend_name)
        if backend_name == "localfs":
            files = files.filter(node_id=node)
        referenced: set[str] = set()
        for path, key, size in files.values_list("path", "blob_key", "size").iterator():
            report.checked_files += 1
            referenced.add(key)
            try:
                stored = backend.size(key)
            except FileNotFoundError:
                report.missing.append(path)
                continue
            if stored != size:
                report.wrong_size.append(path)
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
            if Inode.objects.filter(backend=backend_name, blob_key=key).exists():
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
    return report
