"""manage.py fsck: metadata against stored bytes."""

from __future__ import annotations

import os
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from filesystem.models import Inode
from filesystem.storage import get_backend
from tests.helpers import upload


def run(*args) -> str:
    out = StringIO()
    call_command("fsck", *args, stdout=out)
    return out.getvalue()


def age(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_clean_store_is_clean(auth_client):
    upload(auth_client, "/a.txt", b"hello")
    assert "1 files checked, 0 missing, 0 wrong size, 0 corrupt, 0 orphan blobs" in run()


def test_orphans_are_reported_then_repaired_after_the_grace_time(auth_client, storage_root):
    backend = get_backend("localfs")
    old, fresh = backend.new_key(), backend.new_key()
    backend.write(old, [b"stranded"])
    backend.write(fresh, [b"being committed"])
    age(backend._path(old), 3600)
    temp = storage_root / "tmp" / ".upload-crashed"
    temp.write_bytes(b"partial")
    age(temp, 3600)

    report = run()
    assert f"orphan blob: localfs {old}" in report
    assert fresh not in report  # younger than the grace period
    assert "stale temp file" in report
    run("--repair")
    assert not backend._path(old).exists()
    assert backend._path(fresh).exists()
    assert not temp.exists()


def test_empty_blobs_may_be_upload_slots_for_an_hour_past_the_grace(auth_client):
    """Another process may hold an empty blob as an unused upload slot: fsck leaves it alone for
    as long as a slot lives (plus the grace time), then treats it as any orphan."""
    backend = get_backend("localfs")
    young_slot, old_slot = backend.new_upload_key(), backend.new_upload_key()
    stranded = backend.new_key()
    backend.write(stranded, [b"bytes"])
    age(backend._path(young_slot), 3600)  # older than the grace, younger than a slot's life
    age(backend._path(old_slot), 3600 + 16 * 60)
    age(backend._path(stranded), 3600)

    report = run()
    assert young_slot not in report
    assert f"orphan blob: localfs {old_slot}" in report
    assert f"orphan blob: localfs {stranded}" in report  # not empty: no slot


def test_missing_and_wrong_sized_bytes_fail_the_check(auth_client):
    upload(auth_client, "/gone.txt", b"gone")
    upload(auth_client, "/short.txt", b"short")
    backend = get_backend("localfs")
    backend.delete(Inode.objects.get(path="/gone.txt").blob_key)
    Inode.objects.filter(path="/short.txt").update(size=999)
    with pytest.raises(CommandError, match="1 missing, 1 wrong size"):
        run("--repair")
    assert Inode.objects.filter(path="/gone.txt").exists()  # metadata is never deleted
