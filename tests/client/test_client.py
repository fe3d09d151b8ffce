"""callfs_client.Client against a real node: every method, its errors, and (against a scripted
stub) the retry and resume rules."""

from __future__ import annotations

import hashlib
import io
import pickle

import pytest
import requests
from callfs_client import (
    AlreadyExists,
    AuthenticationFailed,
    CallFSError,
    ChecksumMismatch,
    Client,
    ConnectionFailed,
    DirectoryNotEmpty,
    InvalidRequest,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
)
from callfs_client.paths import InvalidPath

from tests.client.stub import Request, stub_server
from tests.servers import free_port

pytestmark = pytest.mark.blackbox

DATA = bytes(range(256)) * 64  # 16 KiB, every byte value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- metadata and listings ------------------------------------------------------------------


def test_stat_gives_every_field(client, root):
    client.upload(DATA, f"{root}/a.bin")
    info = client.stat(f"callfs://{root}/a.bin")
    assert (info.path, info.name, info.type, info.size) == (f"{root}/a.bin", "a.bin", "file",
                                                           len(DATA))
    assert info.mode == 0o644 and info.mode_string == "-rw-r--r--"
    assert info.owner == "alice" and info.group == ""
    assert info.mtime is not None and info.mtime.tzinfo is not None
    assert info.sha256 == sha(DATA) and info.etag == f'"{sha(DATA)}"'
    assert info.node
    directory = client.stat(root)
    assert directory.is_dir and directory.mode == 0o755 and directory.sha256 is None
    assert client.stat("/").mode == 0o1777
    assert client.exists(f"{root}/a.bin") and not client.exists(f"{root}/nope")


def test_list_recursive_depth_and_pages(client, root):
    for name in ("b.txt", "a.txt", "d1/x.txt", "d1/d2/y.txt", "d1/d2/d3/z.txt"):
        client.upload(name.encode(), f"{root}/{name}")
    children = client.list(root)
    assert [e.name for e in children] == ["a.txt", "b.txt", "d1"]
    assert children[0].size == 5 and children[2].is_dir
    everything = [e.path[len(root) + 1:] for e in client.list(root, recursive=True)]
    assert sorted(everything) == sorted(["a.txt", "b.txt", "d1", "d1/x.txt", "d1/d2",
                                         "d1/d2/y.txt", "d1/d2/d3", "d1/d2/d3/z.txt"])
    shallow = {e.path[len(root) + 1:] for e in client.list(root, recursive=True, max_depth=1)}
    assert shallow == {"a.txt", "b.txt", "d1", "d1/x.txt", "d1/d2"}
    # Pages of two: the same entries in the same order as one answer.
    paged = list(client.iter_list(root, recursive=True, page_size=2))
    assert [e.path for e in paged] == [e.path for e in client.list(root, recursive=True)]
    with pytest.raises(NotADirectory) as raised:
        client.list(f"{root}/a.txt")
    assert raised.value.code == "NOT_A_DIRECTORY" and raised.value.status == 400


def test_list_follows_next_cursor_and_takes_whole_answers(client):
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], None)}

    def answer(request: Request, attempt: int) -> None:
        cursor = request.path.split("cursor=")[1] if "cursor=" in request.path else None
        names, following = pages[cursor]
        body = {"path": "/", "type": "directory", "recursive": False, "count": len(names),
                "items": [{"name": n, "path": f"/{n}", "type": "file"} for n in names]}
        if following:
            body["next_cursor"] = following
        request.reply(200, body)

    with stub_server(answer) as (url, received):
        assert [e.name for e in Client(url, "k" * 20).list("/")] == ["a", "b", "c"]
    assert "limit=1000" in received[0].path and "cursor=c1" in received[1].path

    # A server without pages ignores `limit` and answers everything at once.
    def whole(request: Request, attempt: int) -> None:
        request.reply(200, {"path": "/", "type": "directory", "recursive": False, "count": 3,
                            "items": [{"name": n, "path": f"/{n}", "type": "directory"}
                                      for n in "xyz"]})

    with stub_server(whole) as (url, received):
        assert [e.name for e in Client(url, "k" * 20).list("/")] == ["x", "y", "z"]
    assert len(received) == 1


# --- bytes ----------------------------------------------------------------------------------


def test_read_ranges(client, root):
    client.upload(DATA, f"{root}/r.bin")
    path = f"{root}/r.bin"
    assert client.read(path) == DATA
    assert client.read(path, 100, 200) == DATA[100:200]
    assert client.read(path, 16000) == DATA[16000:]
    assert client.read(path, -10) == DATA[-10:]
    assert client.read(path, 20000) == b""  # past the end: empty, as a slice
    assert client.read(path, 5, 5) == b""
    assert b"".join(client.iter_bytes(path, chunk_size=1000)) == DATA
    client.upload(b"", f"{root}/empty")
    assert client.read(f"{root}/empty") == b""
    assert client.read(path, 0, 4, if_match=sha(DATA)) == DATA[:4]
    with pytest.raises(PreconditionFailed):
        client.read(path, 0, 4, if_match=sha(b"other"))
    with pytest.raises(IsADirectory):
        client.read(root)


def test_download_to_file_and_stream(client, root, tmp_path):
    client.upload(DATA, f"{root}/d.bin")
    seen = []
    result = client.download(f"{root}/d.bin", tmp_path / "d.bin", progress=seen.append)
    assert (tmp_path / "d.bin").read_bytes() == DATA
    assert result.sha256 == sha(DATA) and result.size == len(DATA) and sum(seen) == len(DATA)
    buffer = io.BytesIO()
    client.download(f"{root}/d.bin", buffer)
    assert buffer.getvalue() == DATA
    with pytest.raises(NotFound):
        client.download(f"{root}/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()  # no empty file left behind
    with pytest.raises(IsADirectory):
        client.download(root, tmp_path / "dir")


def test_download_resumes_a_partial_file(client, root, tmp_path):
    client.upload(DATA, f"{root}/big.bin")
    local = tmp_path / "big.bin"
    local.write_bytes(DATA[:5000])
    seen = []
    client.download(f"{root}/big.bin", local, resume=True, progress=seen.append)
    assert local.read_bytes() == DATA and sum(seen) == len(DATA)
    # Already complete: nothing to fetch, still verified.
    client.download(f"{root}/big.bin", local, resume=True)
    assert local.read_bytes() == DATA
    # A partial file from another version: detected by the sha256, fetched again whole.
    local.write_bytes(b"x" * 5000)
    client.download(f"{root}/big.bin", local, resume=True)
    assert local.read_bytes() == DATA
    # Longer than the file: started over.
    local.write_bytes(DATA + b"tail")
    client.download(f"{root}/big.bin", local, resume=True)
    assert local.read_bytes() == DATA


def test_upload_sources_and_checksum(client, root, tmp_path):
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    first = client.upload(path, f"{root}/p.bin")
    assert first.created and first.sha256 == sha(DATA) and first.size == len(DATA)
    assert client.read(f"{root}/p.bin") == DATA
    again = client.upload(DATA[:10], f"{root}/p.bin")
    assert again.created is False and client.read(f"{root}/p.bin") == DATA[:10]
    with open(path, "rb") as handle:
        handle.seek(100)  # from the file object's position on
        client.upload(handle, f"{root}/f.bin")
    assert client.read(f"{root}/f.bin") == DATA[100:]
    chunks = iter([DATA[:7000], b"", DATA[7000:]])
    streamed = client.upload(chunks, f"{root}/deep/er/g.bin")  # chunked, parents made
    assert streamed.sha256 == sha(DATA) and streamed.size == len(DATA)
    assert client.read(f"{root}/deep/er/g.bin") == DATA
    # Bytes that do not match the announced sha256 are refused and nothing is stored.
    with pytest.raises(ChecksumMismatch) as raised:
        client.upload(iter([b"abc"]), f"{root}/bad.bin", sha256=sha(b"abd"))
    assert raised.value.code == "CHECKSUM_MISMATCH" and raised.value.status == 400
    assert not client.exists(f"{root}/bad.bin")


def test_upload_create_only_and_if_match(client, root):
    client.upload(b"one", f"{root}/c.txt", create_only=True)
    with pytest.raises(AlreadyExists) as raised:
        client.upload(b"two", f"{root}/c.txt", create_only=True)
    assert raised.value.code == "FILE_ALREADY_EXISTS" and isinstance(raised.value,
                                                                      FileExistsError)
    client.upload(b"three", f"{root}/c.txt", if_match=sha(b"one"))
    with pytest.raises(PreconditionFailed):
        client.upload(b"four", f"{root}/c.txt", if_match=sha(b"one"))
    assert client.read(f"{root}/c.txt") == b"three"


# --- the namespace --------------------------------------------------------------------------


def test_mkdir_remove(client, root):
    with pytest.raises(NotFound):
        client.mkdir(f"{root}/a/b")  # no parent
    assert client.mkdir(f"{root}/a/b", parents=True) is True
    with pytest.raises(AlreadyExists):
        client.mkdir(f"{root}/a/b")
    assert client.mkdir(f"{root}/a/b", exist_ok=True) is False
    client.upload(b"x", f"{root}/a/b/f")
    with pytest.raises(NotADirectory):
        client.mkdir(f"{root}/a/b/f/g")
    with pytest.raises(DirectoryNotEmpty) as raised:
        client.remove(f"{root}/a")
    assert raised.value.code == "DIRECTORY_NOT_EMPTY" and raised.value.status == 409
    client.remove(f"{root}/a/b/f")
    client.remove(f"{root}/a/b")  # empty directory
    client.upload(b"x", f"{root}/a/c/d/e")
    client.remove(f"{root}/a", recursive=True)
    assert not client.exists(f"{root}/a")
    with pytest.raises(NotFound):
        client.remove(f"{root}/a")


def test_move_rename_copy(client, root):
    client.upload(DATA, f"{root}/src/f.bin")
    assert client.rename(f"{root}/src/f.bin", "g.bin") == f"{root}/src/g.bin"
    assert client.move(f"{root}/src", f"{root}/x/y/dst", create_parents=True) \
        == f"{root}/x/y/dst"
    assert client.read(f"{root}/x/y/dst/g.bin") == DATA and not client.exists(f"{root}/src")
    client.upload(b"old", f"{root}/other.bin")
    with pytest.raises(AlreadyExists):
        client.move(f"{root}/x/y/dst/g.bin", f"{root}/other.bin")
    client.move(f"{root}/x/y/dst/g.bin", f"{root}/other.bin", overwrite=True)
    assert client.read(f"{root}/other.bin") == DATA
    assert client.copy(f"{root}/other.bin", f"{root}/copies/c.bin") is True
    assert client.copy(f"{root}/other.bin", f"{root}/copies/c.bin") is False
    assert client.read(f"{root}/copies/c.bin") == DATA
    with pytest.raises(AlreadyExists):
        client.copy(f"{root}/other.bin", f"{root}/copies/c.bin", overwrite=False)
    with pytest.raises(NotFound) as raised:
        client.copy(f"{root}/none", f"{root}/copies/n.bin")
    assert raised.value.path == f"{root}/none"
    with pytest.raises(IsADirectory):
        client.copy(f"{root}/copies", f"{root}/dircopy")
    with pytest.raises(ValueError):
        client.rename(f"{root}/other.bin", "a/b")


def test_chmod_chown_chgrp(node, client, root):
    client.upload(b"x", f"{root}/m.txt")
    assert client.chmod(f"{root}/m.txt", 0o600).mode == 0o600
    assert client.chmod(f"{root}/m.txt", "0640").mode_string == "-rw-r-----"
    assert client.chgrp(f"{root}/m.txt", "staff").group == "staff"
    with pytest.raises(InvalidRequest) as raised:
        client.chgrp(f"{root}/m.txt", "no-such-group")
    assert raised.value.status == 400
    with pytest.raises(InvalidRequest):
        client.chmod(f"{root}/m.txt", "9999")
    with pytest.raises(PermissionDenied) as raised:
        client.chown(f"{root}/m.txt", owner="admin")  # superusers only
    assert raised.value.code == "PERMISSION_DENIED" and raised.value.status == 403
    with Client(node.base_url, node.admin_key) as admin:
        info = admin.chown(f"{root}/m.txt", owner="admin", group="staff")
    assert (info.owner, info.group) == ("admin", "staff")


def test_links_create_list_revoke(client, root):
    client.upload(DATA, f"{root}/l.bin")
    link = client.create_link(f"{root}/l.bin", expires=60)
    assert link.path == f"{root}/l.bin" and link.url.endswith(link.token)
    records = {record.id: record for record in client.list_links()}
    assert records[link.id].state == "active" and records[link.id].path == f"{root}/l.bin"
    assert requests.get(link.url, timeout=10).content == DATA  # no key needed, once
    assert requests.get(link.url, timeout=10).status_code == 410
    assert client.get_link(link.id).state == "used"
    second = client.create_link(f"{root}/l.bin", expires=60)
    client.revoke_link(second.id)
    assert client.get_link(second.id).state == "revoked"
    assert requests.get(second.url, timeout=10).json()["code"] == "LINK_EXPIRED"
    with pytest.raises(NotFound):
        client.revoke_link("no-such-link")
    with pytest.raises(NotFound):
        client.create_link(f"{root}/none")


# --- errors ---------------------------------------------------------------------------------


def test_errors_carry_code_message_and_status(node, client, root):
    with pytest.raises(NotFound) as raised:
        client.stat(f"{root}/nope")
    error = raised.value
    assert (error.code, error.status, error.path) == ("FILE_NOT_FOUND", 404, f"{root}/nope")
    assert isinstance(error, FileNotFoundError) and isinstance(error, CallFSError)
    assert str(error) == f"{root}/nope: no such file or directory (FILE_NOT_FOUND)"
    with pytest.raises(NotFound) as raised:
        client.read(f"{root}/nope")
    assert raised.value.message == "metadata not found"  # the server's own text
    assert pickle.loads(pickle.dumps(raised.value)).code == "FILE_NOT_FOUND"  # noqa: S301
    with Client(node.base_url, "not-a-key-0123456789") as stranger:
        with pytest.raises(AuthenticationFailed) as raised:
            stranger.list("/")
    assert raised.value.status == 401 and raised.value.code == "AUTHENTICATION_FAILED"
    with pytest.raises(InvalidPath):
        client.stat("/../etc/passwd")
    client.upload(b"x", f"{root}/mine")
    with Client(node.base_url, node.bob_key) as bob, pytest.raises(PermissionDenied):
        bob.upload(b"y", f"{root}/mine")


def test_a_server_that_is_down(tmp_path):
    port = free_port()
    with Client(f"http://127.0.0.1:{port}", "k" * 20, retries=1, backoff=0.01) as nobody:
        with pytest.raises(ConnectionFailed) as raised:
            nobody.stat("/x")
    assert raised.value.code == "CONNECTION_ERROR" and raised.value.status is None
    assert str(raised.value) == \
        f"cannot reach http://127.0.0.1:{port}: connection refused (CONNECTION_ERROR)"
    with pytest.raises(ValueError):
        Client("ftp://x", "k" * 20)
    with pytest.raises(ValueError):
        Client("http://x", "")


# --- retries (scripted stub) ---------------------------------------------------------------


def _busy_then(status: int, body: bytes | dict = b"", headers: dict | None = None,
               busy: int = 2):
    def answer(request: Request, attempt: int) -> None:
        if attempt <= busy:
            request.reply(503, {"code": "LOCK_TIMEOUT", "message": "busy"})
        else:
            request.reply(status, body, headers)
    return answer


def test_safe_requests_are_retried_on_503(tmp_path):
    headers = {"X-CallFS-Type": "file", "X-CallFS-Size": "3"}
    with stub_server(_busy_then(200, b"abc", headers)) as (url, received):
        assert Client(url, "k" * 20, retries=3, backoff=0.01).read("/f") == b"abc"
    assert len(received) == 3
    with stub_server(_busy_then(200)) as (url, received):
        Client(url, "k" * 20, retries=3, backoff=0.01).upload(b"data", "/f")  # PUT of bytes
    assert [r.body for r in received] == [b"data"] * 3
    source = tmp_path / "f"
    source.write_bytes(b"from a file")
    with stub_server(_busy_then(201)) as (url, received):
        Client(url, "k" * 20, retries=3, backoff=0.01).upload(source, "/f")  # rewound
    assert [r.body for r in received] == [b"from a file"] * 3
    with stub_server(_busy_then(200, busy=5)) as (url, received):
        with pytest.raises(Unavailable) as raised:
            Client(url, "k" * 20, retries=2, backoff=0.01).stat("/f")
    assert len(received) == 3 and raised.value.status == 503


def test_unsafe_requests_are_sent_once(tmp_path):
    for call in (lambda c: c.upload(b"x", "/f", create_only=True),  # POST create
                 lambda c: c.upload(iter([b"x"]), "/f"),             # one-shot body
                 lambda c: c.move("/a", "/b")):
        with stub_server(_busy_then(201)) as (url, received):
            with pytest.raises(Unavailable):
                call(Client(url, "k" * 20, retries=3, backoff=0.01))
        assert len(received) == 1


def test_a_broken_download_goes_on_by_range(tmp_path):
    tag = f'"{sha(DATA)}"'

    def answer(request: Request, attempt: int) -> None:
        headers = {"X-CallFS-Type": "file", "ETag": tag, "X-CallFS-SHA256": sha(DATA)}
        if attempt == 1:
            request.reply(200, DATA[:6000], {**headers, "Content-Length": str(len(DATA))})
            request.cut()
        else:
            start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
            request.reply(206, DATA[start:], {
                **headers, "Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"})

    with stub_server(answer) as (url, received):
        Client(url, "k" * 20, retries=2, backoff=0.01).download("/f", tmp_path / "f",
                                                                chunk_size=1000)
    assert (tmp_path / "f").read_bytes() == DATA
    assert received[1].headers["Range"] == "bytes=6000-"
    assert received[1].headers["If-Range"] == tag


def test_no_key_in_repr_or_errors(node):
    client = Client(node.base_url, node.alice_key)
    assert node.alice_key not in repr(client)
    with pytest.raises(NotFound) as raised:
        client.stat("/definitely/not/here")
    assert node.alice_key not in str(raised.value)
    client.close()
