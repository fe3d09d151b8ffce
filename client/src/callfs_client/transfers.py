"""`callfs cp`: files and whole trees from the local disk to the server, back, or inside the
server (a server-side copy, no bytes through the client). Planned first, then carried out, so
a progress bar knows the total and nothing is half-decided when the first byte moves."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callfs_client import paths
from callfs_client.client import Client
from callfs_client.errors import NotFound
from callfs_client.models import FileInfo


class CopyError(Exception):
    """A source or destination that cannot be copied as asked: one line for the user."""


@dataclass(frozen=True)
class Local:
    path: Path
    text: str

    @property
    def explicit_dir(self) -> bool:
        return self.text.endswith(os.sep) or self.text.endswith("/")


@dataclass(frozen=True)
class Remote:
    path: str
    text: str

    @property
    def explicit_dir(self) -> bool:
        return paths.has_trailing_slash(self.text)


Location = Local | Remote


def location(text: str) -> Location:
    """`callfs:///x` is remote, anything else a local path."""
    if paths.is_remote(text):
        return Remote(paths.normalize(text), text)
    return Local(Path(text), text)


@dataclass
class Step:
    kind: str  # mkdir-remote | mkdir-local | upload | download | copy
    source: Any
    target: Any
    size: int = 0


@dataclass
class Summary:
    files: int = 0
    directories: int = 0
    bytes: int = 0
    seconds: float = 0.0
    steps: list[Step] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "directories": self.directories, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        files = f"{self.files} file{'s' if self.files != 1 else ''} ({human_size(self.bytes)})"
        dirs = f"{self.directories} director{'ies' if self.directories != 1 else 'y'}"
        return f"copied {files} and {dirs} in {self.seconds:.1f} s"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable


class Copier:
    """Plans and runs one `cp`: `sources` into `dest`, following cp(1): a directory source
    needs `recursive`; an existing directory destination receives the sources by name."""

    def __init__(self, client: Client, *, recursive: bool = False, resume: bool = False) -> None:
        self.client = client
        self.recursive = recursive
        self.resume = resume

    def plan(self, sources: list[Location], dest: Location) -> list[Step]:
        if isinstance(dest, Local) and all(isinstance(s, Local) for s in sources):
            raise CopyError("one of SRC and DST must be a remote path (callfs:///...)")
        into = self._is_dir(dest) or len(sources) > 1
        if len(sources) > 1 and not into:
            raise CopyError(f"{dest.text}: not a directory (several sources need one)")
        steps: list[Step] = []
        for source in sources:
            if isinstance(source, Local):
                if not isinstance(dest, Remote):
                    raise CopyError("local to local copies are not callfs's job: use cp")
                steps += self._plan_upload(source, dest, into)
            else:
                steps += self._plan_from_remote(source, dest, into)
        return steps

    def run(self, steps: list[Step], progress: Callable[[int], Any] | None = None) -> Summary:
        summary = Summary(steps=steps)
        started = time.monotonic()
        for step in steps:
            if step.kind == "mkdir-remote":
                self.client.mkdir(step.target, parents=True, exist_ok=True)
            elif step.kind == "mkdir-local":
                Path(step.target).mkdir(parents=True, exist_ok=True)
            elif step.kind == "upload":
                self.client.upload(step.source, step.target, progress=progress)
            elif step.kind == "download":
                self.client.download(step.source, step.target, resume=self.resume,
                                     progress=progress)
            else:
                self.client.copy(step.source, step.target)
                if progress:
                    progress(step.size)
            if step.kind.startswith("mkdir"):
                summary.directories += 1
            else:
                summary.files += 1
                summary.bytes += step.size
        summary.seconds = time.monotonic() - started
        return summary

    # -- planning ------------------------------------------------------------------------

    def _is_dir(self, where: Location) -> bool:
        if isinstance(where, Local):
            return where.explicit_dir or where.path.is_dir()
        if where.explicit_dir:
            return True
        try:
            return self.client.stat(where.path).is_dir
        except NotFound:
            return False

    def _plan_upload(self, source: Local, dest: Remote, into: bool) -> list[Step]:
        local = source.path
        if not local.exists():
            raise CopyError(f"{source.text}: no such file or directory")
        name = local.resolve().name
        target = paths.join(dest.path, name) if into else dest.path
        if not local.is_dir():
            return [Step("upload", local, target, local.stat().st_size)]
        if not self.recursive:
            raise CopyError(f"{source.text}: is a directory (use -r to copy it)")
        steps = [Step("mkdir-remote", local, target)]
        for root, dirs, files in os.walk(local):
            dirs.sort()
            here = Path(root)
            below = here.relative_to(local).as_posix()
            base = target if below == "." else paths.join(target, below)
            steps += [Step("mkdir-remote", here / d, paths.join(base, d)) for d in dirs]
            for name in sorted(files):
                path = here / name
                steps.append(Step("upload", path, paths.join(base, name), path.stat().st_size))
        return steps

    def _plan_from_remote(self, source: Remote, dest: Location, into: bool) -> list[Step]:
        info = self.client.stat(source.path)
        name = info.name if info.path != "/" else "root"
        if isinstance(dest, Local):
            target: Any = dest.path / name if into else dest.path
            join: Callable[[Any, str], Any] = _local_join
            file_step, dir_step = "download", "mkdir-local"
        else:
            target = paths.join(dest.path, name) if into else dest.path
            join = paths.join
            file_step, dir_step = "copy", "mkdir-remote"
            if info.is_dir and paths.is_within(target, source.path):
                raise CopyError(f"cannot copy {source.path} into itself ({target})")
        if not info.is_dir:
            return [Step(file_step, source.path, target, info.size or 0)]
        if not self.recursive:
            raise CopyError(f"{source.text}: is a directory (use -r to copy it)")
        steps = [Step(dir_step, source.path, target)]
        for entry in self._tree(source.path):
            rel = paths.relative_to(entry.path, source.path)
            kind = dir_step if entry.is_dir else file_step
            steps.append(Step(kind, entry.path, join(target, rel), entry.size or 0))
        return steps

    def _tree(self, path: str) -> Iterator[FileInfo]:
        return self.client.iter_list(path, recursive=True)


def _local_join(base: Path, rel: str) -> Path:
    return base / rel
