"""The `callfs` command line: ls, stat, cat, cp, mv, rm, mkdir, chmod, chown, chgrp, link.

Remote paths are written `callfs:///path` (commands that only take remote paths also accept a
plain `/path`); local paths are plain. The server and key come from CALLFS_URL / CALLFS_KEY or a
profile (callfs_client.config). `--json` prints machine-readable output. Any error prints one
line on stderr, `callfs: /x: no such file or directory (FILE_NOT_FOUND)`, and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from callfs_client import paths
from callfs_client._version import __version__
from callfs_client.client import Client
from callfs_client.config import ConfigError, resolve
from callfs_client.errors import CallFSError, IsADirectory, NotADirectory, NotFound
from callfs_client.models import format_time, parse_mode
from callfs_client.transfers import Copier, CopyError, Remote, location

# What a POSIX tool would say for the codes that have a POSIX meaning.
_STRERROR = {
    "FILE_NOT_FOUND": "no such file or directory",
    "FILE_ALREADY_EXISTS": "file exists",
    "PERMISSION_DENIED": "permission denied",
    "NOT_A_DIRECTORY": "not a directory",
    "IS_A_DIRECTORY": "is a directory",
    "DIRECTORY_NOT_EMPTY": "directory not empty",
    "AUTHENTICATION_FAILED": "authentication failed: check CALLFS_KEY or the profile's key",
}


def describe(exc: BaseException) -> str:
    """The one line printed after `callfs: ` for an error."""
    if isinstance(exc, CallFSError):
        text = _STRERROR.get(exc.code, exc.message)
        where = exc.path and exc.code != "AUTHENTICATION_FAILED"  # the key's fault, not a path's
        return f"{exc.path}: {text} ({exc.code})" if where else f"{text} ({exc.code})"
    if isinstance(exc, OSError):  # local files
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{(exc.strerror or str(exc)).lower()}"
    return str(exc)


class Failure(click.ClickException):
    """Shown as `callfs: <message>`, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"callfs: {self.message}", err=True)


class CallFSGroup(click.Group):
    """Turns every error of a command into one line on stderr: never a traceback (set
    CALLFS_DEBUG=1 to see one)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`callfs cat x | head`): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except KeyboardInterrupt:
            click.echo("callfs: interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except (CallFSError, ConfigError, CopyError, OSError, ValueError) as exc:
            if os.environ.get("CALLFS_DEBUG"):
                raise
            raise Failure(describe(exc)) from None
        except Exception as exc:
            if os.environ.get("CALLFS_DEBUG"):
                raise
            raise Failure(f"internal error: {type(exc).__name__}: {exc}") from None


class State:
    """What the group's options decided; the client is made on first use, so `--help` and
    usage errors need no server or key."""

    def __init__(self, profile: str | None, as_json: bool, quiet: bool,
                 retries: int | None) -> None:
        self.profile, self.as_json, self.quiet, self.retries = profile, as_json, quiet, retries
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            settings = resolve(self.profile, retries=self.retries)
            self._client = Client(settings.url, settings.key, **settings.client_options())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def show_progress(self) -> bool:
        return not self.quiet and not self.as_json and sys.stdout.isatty()

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], Any] | None]:
        """A byte progress bar on stderr while stdout is a terminal, else nothing."""
        if not self.show_progress():
            yield None
            return
        from tqdm import tqdm

        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                  desc=description, file=sys.stderr, dynamic_ncols=True) as bar:
            yield bar.update


def json_option(function: Callable) -> Callable:
    """`--json` on a command as well as on the group."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON.")(function)


def _state(ctx: click.Context, as_json: bool = False) -> State:
    state: State = ctx.find_object(State)
    state.as_json = state.as_json or as_json
    return state


def remote_path(text: str) -> str:
    """A path of a remote-only command: `callfs:///x` or `/x`."""
    return paths.normalize(text)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=None, ensure_ascii=False))


@click.group(cls=CallFSGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", "-p", envvar="CALLFS_PROFILE", metavar="NAME",
              help="Use this profile of ~/.config/callfs/config.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries.")
@click.option("--retries", type=click.IntRange(0, 20), metavar="N",
              help="Retries of safe requests on connection errors and 429/502/503 "
                   "(default 3, or CALLFS_RETRIES).")
@click.version_option(__version__, prog_name="callfs")
@click.pass_context
def main(ctx: click.Context, profile: str | None, as_json: bool, quiet: bool,
         retries: int | None) -> None:
    """Files on a CallFS server. Remote paths are written callfs:///path; the server and key
    come from CALLFS_URL and CALLFS_KEY, or from a profile (--profile)."""
    ctx.obj = State(profile, as_json, quiet, retries)
    ctx.call_on_close(ctx.obj.close)


@main.command("ls")
@click.option("-l", "long", is_flag=True, help="Long format: mode, owner, group, size, time.")
@click.option("-R", "recursive", is_flag=True, help="The whole subtree (relative paths).")
@click.argument("path", default="callfs:///")
@json_option
@click.pass_context
def ls_command(ctx: click.Context, long: bool, recursive: bool, path: str,
               as_json: bool) -> None:
    """List a directory (or show a file)."""
    state = _state(ctx, as_json)
    remote = remote_path(path)
    try:
        entries = state.client.list(remote, recursive=recursive)
        base = remote
    except NotADirectory:
        entries = [state.client.stat(remote)]
        base = paths.parent(remote)
    if state.as_json:
        emit([entry.to_dict() for entry in entries])
        return
    names = [paths.relative_to(e.path, base) if recursive else e.name for e in entries]
    if not long:
        for name in names:
            click.echo(name)
        return
    rows = [(e.mode_string, e.owner or "?", e.group or "-", "?" if e.size is None else str(e.size),
             e.mtime.astimezone().strftime("%Y-%m-%d %H:%M") if e.mtime else "?", name)
            for e, name in zip(entries, names, strict=True)]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
    for mode, owner, group, size, when, name in rows:
        click.echo(f"{mode} {owner:<{widths[1]}} {group:<{widths[2]}} "
                   f"{size:>{widths[3]}} {when} {name}")


@main.command("stat")
@click.argument("path")
@json_option
@click.pass_context
def stat_command(ctx: click.Context, path: str, as_json: bool) -> None:
    """Every metadata field of a file or directory."""
    state = _state(ctx, as_json)
    info = state.client.stat(remote_path(path))
    if state.as_json:
        emit(info.to_dict())
        return
    fields = [
        ("path", info.path), ("type", info.type),
        ("size", "?" if info.size is None else f"{info.size} bytes"),
        ("mode", f"{info.mode:04o} ({info.mode_string})" if info.mode is not None else "?"),
        ("owner", info.owner or "?"), ("group", info.group or "-"),
        ("modified", format_time(info.mtime) or "?"),
        ("sha256", info.sha256 or "-"), ("etag", info.etag or "-"), ("node", info.node or "-"),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<10}{value}")


@main.command("cat")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def cat_command(ctx: click.Context, paths_: tuple[str, ...]) -> None:
    """Write files' bytes to stdout."""
    state = _state(ctx)
    sys.stdout.flush()
    out = sys.stdout.buffer
    for path in paths_:
        for chunk in state.client.iter_bytes(remote_path(path)):
            out.write(chunk)
    out.flush()


@main.command("cp")
@click.option("-r", "-R", "--recursive", is_flag=True, help="Copy directories and their trees.")
@click.option("--resume", is_flag=True,
              help="Downloads: complete partial local files with Range requests.")
@click.argument("sources", metavar="SRC...", nargs=-1, required=True)
@click.argument("dest", metavar="DST")
@json_option
@click.pass_context
def cp_command(ctx: click.Context, recursive: bool, resume: bool, sources: tuple[str, ...],
               dest: str, as_json: bool) -> None:
    """Copy local -> remote (upload), remote -> local (download) or remote -> remote (a
    server-side copy). Several sources need a directory DST."""
    state = _state(ctx, as_json)
    copier = Copier(state.client, recursive=recursive, resume=resume)
    steps = copier.plan([location(s) for s in sources], location(dest))
    total = sum(step.size for step in steps)
    with state.progress(total, "copying") as progress:
        summary = copier.run(steps, progress)
    if state.as_json:
        emit(summary.to_dict())
    elif (recursive or len(sources) > 1) and not state.quiet:
        click.echo(summary.text())


@main.command("mv")
@click.option("-n", "--no-clobber", is_flag=True, help="Do not replace an existing DST.")
@click.argument("source", metavar="SRC")
@click.argument("dest", metavar="DST")
@json_option
@click.pass_context
def mv_command(ctx: click.Context, no_clobber: bool, source: str, dest: str,
               as_json: bool) -> None:
    """Move or rename a remote file or directory (inside the server). Into DST when DST is a
    directory."""
    state = _state(ctx, as_json)
    src, dst = location(source), location(dest)
    if not isinstance(src, Remote) or not isinstance(dst, Remote):
        raise Failure("mv moves remote paths only (callfs:///...); use cp, then rm")
    target = dst.path
    try:
        if dst.explicit_dir or state.client.stat(dst.path).is_dir:
            target = paths.join(dst.path, paths.basename(src.path))
    except NotFound:
        pass
    moved = state.client.move(src.path, target, overwrite=not no_clobber)
    if state.as_json:
        emit({"path": moved})


@main.command("rm")
@click.option("-r", "-R", "--recursive", is_flag=True, help="Remove directories and their trees.")
@click.option("-f", "--force", is_flag=True, help="Ignore paths that do not exist.")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def rm_command(ctx: click.Context, recursive: bool, force: bool,
               paths_: tuple[str, ...]) -> None:
    """Remove files (and with -r directories)."""
    client = _state(ctx).client
    for path in paths_:
        remote = remote_path(path)
        try:
            if not recursive and client.stat(remote).is_dir:
                raise IsADirectory("IS_A_DIRECTORY", "is a directory (use -r)", None, remote)
            client.remove(remote, recursive=recursive)
        except NotFound:
            if not force:
                raise


@main.command("mkdir")
@click.option("-p", "--parents", is_flag=True,
              help="Make parent directories as needed; no error if it exists.")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def mkdir_command(ctx: click.Context, parents: bool, paths_: tuple[str, ...]) -> None:
    """Make directories."""
    client = _state(ctx).client
    for path in paths_:
        client.mkdir(remote_path(path), parents=parents, exist_ok=parents)


@main.command("chmod")
@click.argument("mode")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def chmod_command(ctx: click.Context, mode: str, paths_: tuple[str, ...]) -> None:
    """Change permission bits: octal (0640) or symbolic (u+x,g-w)."""
    client = _state(ctx).client
    for path in paths_:
        remote = remote_path(path)
        current = None if re.fullmatch(r"[0-7]{1,4}", mode) else client.stat(remote)
        client.chmod(remote, parse_mode(mode, current))


@main.command("chown")
@click.argument("owner", metavar="USER[:GROUP]")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def chown_command(ctx: click.Context, owner: str, paths_: tuple[str, ...]) -> None:
    """Change the owner (superusers only) and/or group (`:GROUP` alone changes the group)."""
    user, _, group = owner.partition(":")
    if not user and not group:
        raise click.BadParameter("give USER, USER:GROUP or :GROUP", param_hint="USER[:GROUP]")
    client = _state(ctx).client
    for path in paths_:
        client.chown(remote_path(path), owner=user or None, group=group or None)


@main.command("chgrp")
@click.argument("group")
@click.argument("paths_", metavar="PATH...", nargs=-1, required=True)
@click.pass_context
def chgrp_command(ctx: click.Context, group: str, paths_: tuple[str, ...]) -> None:
    """Change the group (to one you are in)."""
    client = _state(ctx).client
    for path in paths_:
        client.chgrp(remote_path(path), group)


@main.group("link")
def link_group() -> None:
    """Single-use download links."""


@link_group.command("create")
@click.argument("path")
@click.option("--expires", type=click.IntRange(1, 86400), default=3600, show_default=True,
              metavar="SECONDS", help="How long the link works.")
@json_option
@click.pass_context
def link_create(ctx: click.Context, path: str, expires: int, as_json: bool) -> None:
    """Make a link to a file; prints its URL (shown only now)."""
    state = _state(ctx, as_json)
    link = state.client.create_link(remote_path(path), expires)
    if state.as_json:
        emit(link.to_dict())
    else:
        click.echo(link.url)


@link_group.command("ls")
@json_option
@click.pass_context
def link_ls(ctx: click.Context, as_json: bool) -> None:
    """Your links: id, state, expiry, path."""
    state = _state(ctx, as_json)
    links = state.client.list_links()
    if state.as_json:
        emit([link.to_dict() for link in links])
        return
    width = max((len(link.id) for link in links), default=2)
    for link in links:
        expires = (link.expires_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
                   if link.expires_at else "?")
        click.echo(f"{link.id:<{width}} {link.state:<8} {expires} {link.path}")


@link_group.command("revoke")
@click.argument("link_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
def link_revoke(ctx: click.Context, link_ids: tuple[str, ...]) -> None:
    """Revoke links: their URLs answer 410 from now on."""
    client = _state(ctx).client
    for link_id in link_ids:
        client.revoke_link(link_id)

