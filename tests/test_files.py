"""callfs_site.files: the fsync and flock helpers the SQLite backend, locks and storage share."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from callfs_site.files import flock_within, fsync_directory, fsync_path


def test_flock_within_waits_for_the_holder_and_gives_up_at_the_deadline(tmp_path):
    path = tmp_path / "lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waiter = os.open(path, os.O_RDWR)
    try:
        assert flock_within(holder, time.monotonic() + 1, 0.001, 0.01)
        started = time.monotonic()
        assert not flock_within(waiter, started + 0.2, 0.001, 0.01)
        assert 0.2 <= time.monotonic() - started < 1

        threading.Timer(0.1, fcntl.flock, (holder, fcntl.LOCK_UN)).start()
        assert flock_within(waiter, time.monotonic() + 5, 0.001, 0.01)
    finally:
        os.close(waiter)
        os.close(holder)


def test_fsync_takes_files_and_directories_by_name(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    (tmp_path / "file").write_bytes(b"kept")
    fsync_path(tmp_path / "file")
    fsync_directory(tmp_path)
    assert synced == [str(tmp_path / "file"), str(tmp_path)]
