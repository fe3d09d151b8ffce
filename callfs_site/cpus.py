"""CPU placement of a worker's threads.

gunicorn.conf.py pins each worker process to one CPU, which suits its request threads (less CPU
per small request, BENCHMARKS.md). The helper threads of a large upload must not share that CPU
with the request thread feeding them: pinned, the receiving, hashing and writing of a 1 GiB
upload took turns on one core while the other idled. They run on every CPU the process was
allowed before it was pinned.
"""

from __future__ import annotations

import os

_allowed_before_pinning: frozenset[int] | None = None  # None: this process was never pinned


def pin_process(cpu: int) -> None:
    """Pin the calling thread, a worker's only one so far, to `cpu`; threads it starts later
    inherit the pin."""
    global _allowed_before_pinning
    _allowed_before_pinning = frozenset(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})


def unpin_thread() -> None:
    """Let the calling thread (only it: Linux places each thread) run on every CPU the process
    had before pin_process()."""
    if _allowed_before_pinning is not None:
        try:
            os.sched_setaffinity(0, _allowed_before_pinning)
        except OSError:  # CPUs gone since (hotplug, a cpuset changed): stay where it is
            pass
