"""`callfs://` through fsspec and pandas against a real node: URLs, block reads by Range,
streamed writes (one upload, aborted on error), the namespace methods, pandas CSV and Parquet."""

from __future__ import annotations

import hashlib
import os
import threading

import fsspec
import pandas as pd
import pytest
from callfs_client import Client
from callfs_client.fsspec_fs import CallFSFileSystem

pytestmark = pytest.mark.blackbox

MiB = 1024 * 1024


@pytest.fixture(autouse=True, scope="module")
def _close_cached_filesystems(node):
    """fsspec keeps every filesystem it made (pandas' too); their idle keep-alive connections
    would hold the node's graceful stop for seconds."""
    yield
    for instance in list(CallFSFileSystem._cache.values()):
        instance.client.close()
    CallFSFileSystem.clear_instance_cache()


@pytest.fixture
def fs(node):
    filesystem = CallFSFileSystem(url=node.base_url, key=node.alice_key,
                                  skip_instance_cache=True)
    yield filesystem
    filesystem.client.close()


@pytest.fixture
def env(node, monkeypatch, tmp_path):
    """url and key only in the environment, as a pandas user would set them."""
    monkeypatch.setenv("CALLFS_URL", node.base_url)
    monkeypatch.setenv("CALLFS_KEY", node.alice_key)
    monkeypatch.setenv("CALLFS_CONFIG", str(tmp_path / "none.toml"))


def test_the_protocol_is_registered(node, env):
    assert fsspec.get_filesystem_class("callfs") is CallFSFileSystem
    first = fsspec.filesystem("callfs")
    assert first.client.url == node.base_url
    # Instances are cached by the server and key they resolved to, not by empty arguments.
    assert fsspec.filesystem("callfs") is first
    other = fsspec.filesystem("callfs", url=node.base_url, key=node.bob_key)
    assert other is not first


def test_open_with_options_and_from_the_environment(node, client, root, env, monkeypatch):
    with fsspec.open(f"callfs://{root}/x.txt", "wb", url=node.base_url,
                     key=node.alice_key) as handle:
        handle.write(b"written through fsspec")
    assert client.read(f"{root}/x.txt") == b"written through fsspec"
    with fsspec.open(f"callfs://{root}/x.txt", "rt") as handle:  # CALLFS_URL / CALLFS_KEY
        assert handle.read() == "written through fsspec"
    with fsspec.open(f"callfs://{root.lstrip('/')}/x.txt", "rb") as handle:  # no third slash
        assert handle.read(7) == b"written"
    monkeypatch.delenv("CALLFS_KEY")
    with pytest.raises(Exception, match="no API key"):
        fsspec.filesystem("callfs", url=node.base_url, skip_instance_cache=True)


def test_random_access_reads_use_ranges(fs, client, root):
    data = os.urandom(3 * MiB + 123)
    client.upload(data, f"{root}/r.bin")
    with fs.open(f"{root}/r.bin", "rb", block_size=MiB) as handle:
        assert handle.size == len(data)
        handle.seek(2 * MiB + 5)
        assert handle.read(100) == data[2 * MiB + 5:2 * MiB + 105]
        handle.seek(-10, 2)
        assert handle.read() == data[-10:]
        handle.seek(0)
        assert handle.read(MiB // 2) == data[:MiB // 2]
    assert fs.cat_file(f"{root}/r.bin", 10, 20) == data[10:20]
    assert fs.cat_file(f"{root}/r.bin", -5) == data[-5:]
    assert fs.cat_file(f"{root}/r.bin", 0, -5) == data[:-5]
    assert fs.cat_file(f"{root}/r.bin", len(data) + 10) == b""
    assert fs.head(f"{root}/r.bin", 4) == data[:4] and fs.tail(f"{root}/r.bin", 4) == data[-4:]
    with pytest.raises(IsADirectoryError):
        fs.open(root, "rb")


def test_a_file_replaced_while_read_fails_rather_than_mixing(fs, client, root):
    client.upload(b"a" * (2 * MiB), f"{root}/v.bin")
    handle = fs.open(f"{root}/v.bin", "rb", block_size=MiB, cache_type="none")
    assert handle.read(10) == b"a" * 10
    client.upload(b"b" * (2 * MiB), f"{root}/v.bin")
    with pytest.raises(OSError, match="changed while being read"):
        handle.read(10)
    handle.close()


def test_a_large_write_streams_as_one_upload(fs, client, root):
    """32 MiB in 1 MiB writes: the upload runs while the writer writes, so bytes are on the
    wire before close (the writer holds at most a few blocks), and arrive whole."""
    data = os.urandom(32 * MiB)
    threads_before = threading.active_count()
    with fs.open(f"{root}/big.bin", "wb", block_size=4 * MiB) as handle:
        for offset in range(0, len(data), MiB):
            handle.write(data[offset:offset + MiB])
            if offset == 16 * MiB:
                assert threading.active_count() == threads_before + 1  # the upload thread
                assert handle.buffer.tell() < 4 * MiB
    info = client.stat(f"{root}/big.bin")
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert threading.active_count() == threads_before


def test_an_exception_inside_with_stores_nothing(fs, client, root):
    client.upload(b"old", f"{root}/keep.bin")
    for size in (10, 9 * MiB):  # one block (never sent) and a streaming upload (aborted)
        with pytest.raises(RuntimeError), fs.open(f"{root}/keep.bin", "wb",
                                                  block_size=4 * MiB) as handle:
            handle.write(b"n" * size)
            raise RuntimeError("the writer failed")
        assert client.read(f"{root}/keep.bin") == b"old"
    assert not fs.exists(f"{root}/new.bin")


def test_exclusive_writes_and_transactions(fs, client, root):
    with fs.open(f"{root}/x.bin", "xb") as handle:
        handle.write(b"first")
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/x.bin", "xb")
    fs.pipe_file(f"{root}/p.bin", b"data")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{root}/p.bin", b"again", mode="create")
    with fs.transaction:
        with fs.open(f"{root}/t1.bin", "wb") as handle:
            handle.write(b"one")
        assert not fs.exists(f"{root}/t1.bin")  # not until the transaction ends
    assert fs.cat_file(f"{root}/t1.bin") == b"one"
    assert [e["name"] for e in fs.ls(root)] == [f"{root}/p.bin", f"{root}/t1.bin",
                                                f"{root}/x.bin"]
    with pytest.raises(NotImplementedError):
        fs.open(f"{root}/x.bin", "ab")


def test_namespace_methods_map_to_the_api(fs, client, root, tmp_path):
    fs.mkdir(f"{root}/a/b")
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/a/b")
    fs.makedirs(f"{root}/a/b", exist_ok=True)
    with pytest.raises(FileNotFoundError):
        fs.mkdir(f"{root}/none/x", create_parents=False)
    fs.pipe({f"{root}/a/1.txt": b"1", f"{root}/a/b/2.txt": b"22"})
    info = fs.info(f"callfs://{root}/a/b/2.txt")
    assert (info["name"], info["size"], info["type"]) == (f"{root}/a/b/2.txt", 2, "file")
    assert info["sha256"] == hashlib.sha256(b"22").hexdigest() and info["mode"] == 0o644
    assert fs.checksum(f"{root}/a/b/2.txt") == int(info["sha256"], 16)
    assert fs.modified(f"{root}/a/b/2.txt").tzinfo is not None
    assert fs.ls(f"{root}/a", detail=False) == [f"{root}/a/1.txt", f"{root}/a/b"]
    assert fs.find(f"{root}/a") == [f"{root}/a/1.txt", f"{root}/a/b/2.txt"]
    assert fs.find(f"{root}/a", withdirs=True, maxdepth=1) == [
        f"{root}/a", f"{root}/a/1.txt", f"{root}/a/b"]
    assert fs.find(f"{root}/a/1.txt") == [f"{root}/a/1.txt"]
    assert fs.glob(f"{root}/a/**/*.txt") == [f"{root}/a/1.txt", f"{root}/a/b/2.txt"]
    assert fs.du(f"{root}/a") == 3
    assert fs.isdir(f"{root}/a") and fs.isfile(f"{root}/a/1.txt")
    assert not fs.exists(f"{root}/a/zz")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/a/zz")

    fs.cp_file(f"{root}/a/1.txt", f"{root}/c/1.txt")  # server-side
    fs.cp(f"{root}/a", f"{root}/tree", recursive=True)
    assert fs.find(f"{root}/tree") == [f"{root}/tree/1.txt", f"{root}/tree/b/2.txt"]
    fs.mv(f"{root}/tree", f"{root}/moved")  # one server-side move of the whole directory
    assert fs.cat(f"{root}/moved/b/2.txt") == b"22" and not fs.exists(f"{root}/tree")
    fs.mv(f"{root}/c/1.txt", f"{root}/moved/")
    assert fs.exists(f"{root}/moved/1.txt")

    fs.get(f"{root}/moved", str(tmp_path / "got"), recursive=True)
    assert (tmp_path / "got" / "b" / "2.txt").read_bytes() == b"22"
    fs.put(str(tmp_path / "got"), f"{root}/put", recursive=True)
    assert fs.cat(f"{root}/put/b/2.txt") == b"22"
    fs.touch(f"{root}/t")
    assert fs.size(f"{root}/t") == 0

    with pytest.raises(OSError):
        fs.rmdir(f"{root}/moved")  # not empty
    fs.rm(f"{root}/moved/1.txt")
    fs.rm(f"{root}/moved", recursive=True)  # one recursive DELETE
    fs.rm(f"{root}/put/*", recursive=True)
    assert fs.ls(f"{root}/put") == []
    fs.rmdir(f"{root}/put")
    assert not fs.exists(f"{root}/moved") and not fs.exists(f"{root}/put")


def test_sign_makes_a_download_link(fs, client, root):
    import requests

    client.upload(b"signed", f"{root}/s.txt")
    url = fs.sign(f"{root}/s.txt", expiration=60)
    assert requests.get(url, timeout=10).content == b"signed"


def test_pandas_csv_and_parquet(node, client, root, env):
    client.upload(b"city,people\nParis,2100000\nLyon,520000\n", f"{root}/cities.csv")
    frame = pd.read_csv(f"callfs://{root}/cities.csv")
    assert frame["people"].sum() == 2620000 and list(frame["city"]) == ["Paris", "Lyon"]

    big = pd.DataFrame({"n": range(200_000), "s": [f"row {i}" for i in range(200_000)],
                        "f": [i / 7 for i in range(200_000)]})
    big.to_parquet(f"callfs://{root}/out/big.parquet")
    assert client.stat(f"{root}/out/big.parquet").size > 0
    back = pd.read_parquet(f"callfs://{root}/out/big.parquet")
    pd.testing.assert_frame_equal(back, big)
    # Only some columns: pyarrow reads the footer and those column chunks by range.
    assert list(pd.read_parquet(f"callfs://{root}/out/big.parquet", columns=["n"])["n"])[-1] \
        == 199_999

    frame.to_csv(f"callfs://{root}/out/cities.csv", index=False,
                 storage_options={"url": node.base_url, "key": node.alice_key})
    assert client.read(f"{root}/out/cities.csv") == b"city,people\nParis,2100000\nLyon,520000\n"


def test_errors_reach_fsspec_as_builtins(node, root):
    stranger = CallFSFileSystem(url=node.base_url, key="not-a-key-0123456789")
    with pytest.raises(PermissionError):
        stranger.ls("/")
    bob = CallFSFileSystem(url=node.base_url, key=node.bob_key)
    with pytest.raises(PermissionError):
        bob.pipe_file(f"{root}/bobs.txt", b"no")  # alice's 0755 directory
    with pytest.raises(FileNotFoundError):
        bob.cat_file(f"{root}/none")


def test_the_filesystem_pickles(node, fs, root, client):
    import pickle

    client.upload(b"p", f"{root}/p")
    copy = pickle.loads(pickle.dumps(fs))  # noqa: S301 - our own object (Dask ships it so)
    assert copy.cat_file(f"{root}/p") == b"p"
    assert isinstance(copy.client, Client)
    copy.client.close()
