"""The `callfs` command line against a real node: every command in-process (click's CliRunner),
and the installed script as a real process for exit codes and tracebacks."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

pytestmark = pytest.mark.blackbox

SCRIPT = Path(sys.executable).parent / "callfs"
MiB = 1024 * 1024


def sha_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MiB):
            hasher.update(block)
    return hasher.hexdigest()


def tree_digests(top: Path) -> dict[str, str | None]:
    """Every entry below `top`: relative path -> sha256 (None for directories)."""
    return {p.relative_to(top).as_posix(): None if p.is_dir() else sha_file(p)
            for p in sorted(top.rglob("*"))}


def ok(result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    return result.stdout


def failed(result, line: str) -> None:
    assert result.exit_code == 1, result.stdout
    assert result.stderr == f"callfs: {line}\n"


def test_ls_plain_long_recursive_and_json(callfs, client, root):
    client.upload(b"hello", f"{root}/b.txt")
    client.upload(b"x" * 1234, f"{root}/sub/deep/a.bin")
    assert ok(callfs("ls", f"callfs://{root}")) == "b.txt\nsub\n"
    lines = ok(callfs("ls", "-l", f"callfs://{root}")).splitlines()
    assert re.fullmatch(r"-rw-r--r-- alice - 5 \d{4}-\d\d-\d\d \d\d:\d\d b\.txt", lines[0])
    assert re.fullmatch(r"drwxr-xr-x alice - 0 \d{4}-\d\d-\d\d \d\d:\d\d sub", lines[1])
    assert ok(callfs("ls", "-R", f"callfs://{root}")).splitlines() == [
        "b.txt", "sub", "sub/deep", "sub/deep/a.bin"]
    long_tree = ok(callfs("ls", "-lR", f"callfs://{root}")).splitlines()
    assert long_tree[-1].startswith("-rw-r--r-- alice - 1234 ") and \
        long_tree[-1].endswith(" sub/deep/a.bin")
    entries = json.loads(ok(callfs("ls", "--json", f"callfs://{root}")))
    assert [(e["name"], e["type"], e["size"], e["mode"]) for e in entries] == [
        ("b.txt", "file", 5, "0644"), ("sub", "directory", 0, "0755")]
    assert json.loads(ok(callfs("--json", "ls", f"{root}/b.txt")))[0]["path"] == f"{root}/b.txt"
    assert ok(callfs("ls", f"callfs://{root}/b.txt")) == "b.txt\n"  # a file shows itself


def test_stat_prints_every_field(callfs, client, root):
    client.upload(b"hello", f"{root}/s.txt")
    text = ok(callfs("stat", f"callfs://{root}/s.txt"))
    fields = dict(line.split(":", 1) for line in text.splitlines())
    fields = {key: value.strip() for key, value in fields.items()}
    digest = hashlib.sha256(b"hello").hexdigest()
    assert fields["path"] == f"{root}/s.txt" and fields["type"] == "file"
    assert fields["size"] == "5 bytes" and fields["mode"] == "0644 (-rw-r--r--)"
    assert fields["owner"] == "alice" and fields["group"] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields["modified"])
    assert fields["sha256"] == digest and fields["etag"] == f'"{digest}"' and fields["node"]
    data = json.loads(ok(callfs("stat", "--json", f"callfs://{root}/s.txt")))
    assert data["sha256"] == digest and data["size"] == 5 and data["mode"] == "0644"
    assert set(data) == {"path", "name", "type", "size", "mode", "owner", "group", "mtime",
                         "sha256", "etag", "node"}


def test_cat(callfs, client, root):
    client.upload(b"one\n", f"{root}/1")
    client.upload(bytes(range(256)), f"{root}/2")
    assert callfs("cat", f"callfs://{root}/1", f"callfs://{root}/2").stdout_bytes == \
        b"one\n" + bytes(range(256))
    failed(callfs("cat", f"callfs://{root}/none"),
           f"{root}/none: no such file or directory (FILE_NOT_FOUND)")


def test_cp_files_every_direction(callfs, client, root, tmp_path):
    local = tmp_path / "f.txt"
    local.write_bytes(b"local bytes")
    ok(callfs("cp", str(local), f"callfs://{root}/up.txt"))
    assert client.read(f"{root}/up.txt") == b"local bytes"
    client.mkdir(f"{root}/dir")
    ok(callfs("cp", str(local), f"callfs://{root}/dir"))  # into an existing directory
    assert client.read(f"{root}/dir/f.txt") == b"local bytes"
    ok(callfs("cp", f"callfs://{root}/up.txt", str(tmp_path / "down.txt")))
    assert (tmp_path / "down.txt").read_bytes() == b"local bytes"
    ok(callfs("cp", f"callfs://{root}/up.txt", str(tmp_path)))  # into a local directory
    assert (tmp_path / "up.txt").read_bytes() == b"local bytes"
    ok(callfs("cp", f"callfs://{root}/up.txt", f"callfs://{root}/copied.txt"))  # server-side
    assert client.read(f"{root}/copied.txt") == b"local bytes"
    second = tmp_path / "g.txt"
    second.write_bytes(b"g")
    out = ok(callfs("cp", str(local), str(second), f"callfs://{root}/many/"))
    assert out.startswith("copied 2 files (12 B) and 0 directories in ")
    assert client.read(f"{root}/many/g.txt") == b"g"
    summary = json.loads(ok(callfs("--json", "cp", str(local), f"callfs://{root}/j.txt")))
    assert summary["files"] == 1 and summary["bytes"] == 11
    # Partial local file completed with a Range request.
    (tmp_path / "partial").write_bytes(b"local")
    ok(callfs("cp", "--resume", f"callfs://{root}/up.txt", str(tmp_path / "partial")))
    assert (tmp_path / "partial").read_bytes() == b"local bytes"


def test_cp_refusals(callfs, client, root, tmp_path):
    client.mkdir(f"{root}/d")
    failed(callfs("cp", f"callfs://{root}/d", str(tmp_path / "x")),
           f"callfs://{root}/d: is a directory (use -r to copy it)")
    failed(callfs("cp", str(tmp_path), f"callfs://{root}/x"),
           f"{tmp_path}: is a directory (use -r to copy it)")
    failed(callfs("cp", str(tmp_path / "a"), str(tmp_path / "b")),
           "one of SRC and DST must be a remote path (callfs:///...)")
    failed(callfs("cp", str(tmp_path / "none"), f"callfs://{root}/x"),
           f"{tmp_path / 'none'}: no such file or directory")
    failed(callfs("cp", "-r", f"callfs://{root}", f"callfs://{root}/d/inside"),
           f"cannot copy {root} into itself ({root}/d/inside)")
    assert not (tmp_path / "x").exists()


def test_cp_recursive_round_trip_of_a_tree(callfs, client, root, tmp_path):
    """A tree with nested and empty directories and a 50 MiB file: up, server-side copy,
    down, compared by sha256."""
    source = tmp_path / "tree"
    (source / "docs" / "deep" / "deeper").mkdir(parents=True)
    (source / "empty").mkdir()
    (source / "top.txt").write_text("top\n")
    (source / "docs" / "a.txt").write_text("a\n")
    (source / "docs" / "deep" / "deeper" / "z.bin").write_bytes(os.urandom(4096))
    with open(source / "docs" / "big.bin", "wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(MiB))
    expected = tree_digests(source)

    up = ok(callfs("cp", "-r", str(source), f"callfs://{root}/"))
    assert re.fullmatch(r"copied 4 files \(50\.0 MiB\) and 5 directories in [\d.]+ s\n", up)
    assert client.stat(f"{root}/tree/docs/big.bin").sha256 == expected["docs/big.bin"]
    assert client.list(f"{root}/tree/empty") == []

    ok(callfs("cp", "-r", f"callfs://{root}/tree", f"callfs://{root}/copy"))
    down = ok(callfs("cp", "-r", f"callfs://{root}/copy", str(tmp_path / "back")))
    assert down.startswith("copied 4 files (50.0 MiB) and 5 directories")
    assert tree_digests(tmp_path / "back") == expected

    # Into an existing local directory: the tree arrives under its own name.
    (tmp_path / "into").mkdir()
    ok(callfs("-q", "cp", "-r", f"callfs://{root}/tree/docs/deep", str(tmp_path / "into")))
    assert (tmp_path / "into" / "deep" / "deeper" / "z.bin").read_bytes() == \
        (source / "docs" / "deep" / "deeper" / "z.bin").read_bytes()


def test_mv_rm_mkdir(callfs, client, root):
    client.upload(b"m", f"{root}/m.txt")
    ok(callfs("mv", f"callfs://{root}/m.txt", f"callfs://{root}/n.txt"))
    assert client.read(f"{root}/n.txt") == b"m" and not client.exists(f"{root}/m.txt")
    ok(callfs("mkdir", f"callfs://{root}/dir"))
    ok(callfs("mv", f"callfs://{root}/n.txt", f"callfs://{root}/dir"))  # into a directory
    assert client.exists(f"{root}/dir/n.txt")
    client.upload(b"other", f"{root}/o.txt")
    failed(callfs("mv", "-n", f"callfs://{root}/o.txt", f"callfs://{root}/dir/n.txt"),
           f"{root}/o.txt: file exists (FILE_ALREADY_EXISTS)")
    failed(callfs("mv", f"callfs://{root}/o.txt", "/tmp/x"),
           "mv moves remote paths only (callfs:///...); use cp, then rm")

    failed(callfs("mkdir", f"callfs://{root}/dir"), f"{root}/dir: file exists "
                                                     "(FILE_ALREADY_EXISTS)")
    failed(callfs("mkdir", f"callfs://{root}/a/b/c"),
           f"{root}/a/b: no such file or directory (FILE_NOT_FOUND)")
    ok(callfs("mkdir", "-p", f"callfs://{root}/a/b/c", f"callfs://{root}/dir"))
    assert client.stat(f"{root}/a/b/c").is_dir

    failed(callfs("rm", f"callfs://{root}/dir"), f"{root}/dir: is a directory (IS_A_DIRECTORY)")
    ok(callfs("rm", f"callfs://{root}/dir/n.txt"))
    ok(callfs("rm", "-r", f"callfs://{root}/dir", f"callfs://{root}/a"))
    assert not client.exists(f"{root}/dir") and not client.exists(f"{root}/a")
    failed(callfs("rm", f"callfs://{root}/gone"),
           f"{root}/gone: no such file or directory (FILE_NOT_FOUND)")
    ok(callfs("rm", "-f", f"callfs://{root}/gone"))


def test_chmod_chown_chgrp(callfs, client, root, node, monkeypatch):
    client.upload(b"c", f"{root}/c.txt")
    ok(callfs("chmod", "600", f"callfs://{root}/c.txt"))
    assert client.stat(f"{root}/c.txt").mode == 0o600
    ok(callfs("chmod", "g+r,o+r", f"callfs://{root}/c.txt"))
    assert client.stat(f"{root}/c.txt").mode == 0o644
    ok(callfs("chmod", "u+x,go-r", f"callfs://{root}/c.txt"))
    assert client.stat(f"{root}/c.txt").mode_string == "-rwx------"
    ok(callfs("chmod", "a=r", f"callfs://{root}/c.txt"))
    assert client.stat(f"{root}/c.txt").mode == 0o444
    failed(callfs("chmod", "u+q", f"callfs://{root}/c.txt"), "'u+q': invalid mode")
    ok(callfs("chgrp", "staff", f"callfs://{root}/c.txt"))
    assert client.stat(f"{root}/c.txt").group == "staff"
    failed(callfs("chown", "admin", f"callfs://{root}/c.txt"),
           f"{root}/c.txt: permission denied (PERMISSION_DENIED)")
    monkeypatch.setenv("CALLFS_KEY", node.admin_key)
    ok(callfs("chown", "admin:staff", f"callfs://{root}/c.txt"))
    info = client.stat(f"{root}/c.txt")
    assert (info.owner, info.group) == ("admin", "staff")
    assert callfs("chown", ":", f"callfs://{root}/c.txt").exit_code == 2  # usage error


def test_links(callfs, client, root):
    client.upload(b"linked", f"{root}/l.txt")
    url = ok(callfs("link", "create", f"callfs://{root}/l.txt", "--expires", "120")).strip()
    assert requests.get(url, timeout=10).content == b"linked"
    created = json.loads(ok(callfs("link", "create", "--json", f"callfs://{root}/l.txt")))
    assert set(created) == {"id", "url", "token", "path", "expires_at"}
    listing = ok(callfs("link", "ls"))
    assert re.search(rf"^{re.escape(created['id'])} +active +\S+ \S+ {re.escape(root)}/l\.txt$",
                     listing, re.M)
    records = {r["id"]: r for r in json.loads(ok(callfs("--json", "link", "ls")))}
    assert records[created["id"]]["state"] == "active"
    assert records[url.rsplit("/", 1)[1].split(".")[0]]["state"] == "used"
    ok(callfs("link", "revoke", created["id"]))
    assert requests.get(created["url"], timeout=10).status_code == 410
    failed(callfs("link", "revoke", "nope"), "link not found (LINK_NOT_FOUND)")
    assert callfs("link", "create", f"callfs://{root}/l.txt", "--expires", "0").exit_code == 2


def test_errors_are_one_line(callfs, cli_env, monkeypatch, tmp_path, node):
    failed(callfs("stat", "callfs:///no/such/thing"),
           "/no/such/thing: no such file or directory (FILE_NOT_FOUND)")
    failed(callfs("ls", "callfs:///../x"),
           "/../x: the path escapes the root directory (INVALID_PATH)")
    monkeypatch.setenv("CALLFS_KEY", "not-a-valid-key-0123456789")
    failed(callfs("ls"), "authentication failed: check CALLFS_KEY or the profile's key "
                         "(AUTHENTICATION_FAILED)")
    monkeypatch.delenv("CALLFS_KEY")
    failed(callfs("ls"), f"no API key: set CALLFS_KEY or use a profile in "
                         f"{tmp_path / 'no-config.toml'} (--profile)")


def test_profiles_from_the_config_file(callfs, cli_env, monkeypatch, tmp_path, node, root):
    config = tmp_path / "config.toml"
    config.write_text(f'default = "here"\n[profiles.here]\nurl = "{node.base_url}"\n'
                      f'key = "{node.alice_key}"\n[profiles.bob]\nurl = "{node.base_url}"\n'
                      f'key = "{node.bob_key}"\n')
    monkeypatch.setenv("CALLFS_CONFIG", str(config))
    monkeypatch.delenv("CALLFS_URL")
    monkeypatch.delenv("CALLFS_KEY")
    ok(callfs("mkdir", f"callfs://{root}/by-default"))
    ok(callfs("--profile", "bob", "mkdir", f"callfs://{node.prefix}-bob"))  # / is 1777
    owners = {e["name"]: e["owner"] for e in json.loads(ok(callfs("ls", "--json",
                                                                   f"callfs://{root}")))}
    assert owners == {"by-default": "alice"}
    assert json.loads(ok(callfs("-p", "bob", "stat", "--json",
                                f"callfs://{node.prefix}-bob")))["owner"] == "bob"
    failed(callfs("--profile", "nobody", "ls"), f"no profile 'nobody' in {config}")


def test_progress_bars_only_on_a_terminal(cli_env, node, tmp_path):
    """With stdout on a terminal a transfer draws a byte progress bar on stderr; piped, the
    output is only what was asked for."""
    source = tmp_path / "p.bin"
    source.write_bytes(os.urandom(3 * MiB))
    target = f"callfs://{node.prefix}/progress.bin"
    controller, terminal = pty.openpty()
    try:
        shown = subprocess.run([str(SCRIPT), "cp", str(source), target], env=cli_env,
                               stdout=terminal, stderr=subprocess.PIPE, timeout=60,
                               check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert shown.returncode == 0
    assert "copying" in shown.stderr.decode() and "3.00M" in shown.stderr.decode()
    piped = _run_script("cp", str(source), target, env=cli_env)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == ""


def _run_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_installed_script_exits_1_without_a_traceback(cli_env, node, tmp_path):
    assert SCRIPT.exists(), "the client is not installed: .venv/bin/pip install -e client"
    missing = _run_script("cat", "callfs:///no/such/file", env=cli_env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == "callfs: /no/such/file: no such file or directory " \
                             "(FILE_NOT_FOUND)\n"
    no_key = _run_script("ls", env={**cli_env, "CALLFS_KEY": ""})
    assert no_key.returncode == 1 and no_key.stderr.startswith("callfs: no API key: ")
    port = free_port()
    down = _run_script("--retries", "1", "ls", "callfs:///",
                       env={**cli_env, "CALLFS_URL": f"http://127.0.0.1:{port}"})
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr == (f"callfs: cannot reach http://127.0.0.1:{port}: connection refused "
                           "(CONNECTION_ERROR)\n")
    upload = tmp_path / "piped.txt"
    upload.write_text("via the real script\n")
    assert _run_script("cp", str(upload), "callfs:///" + node.prefix.strip("/") + "/p.txt",
                       env=cli_env).returncode == 0
    shown = _run_script("cat", f"callfs://{node.prefix}/p.txt", env=cli_env)
    assert shown.returncode == 0 and shown.stdout == "via the real script\n"
