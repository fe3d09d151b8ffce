"""Checks repeated on the locked rows (security review, issue 20 finding 4).

delete, move, chmod/chgrp/chown, uploads checked before their body is read, copies and mkdir
check the caller's rights before they take the path lock, and act on whatever the path holds
once locked (services.authorise). Each test here lets a "concurrent request" run at that moment,
deterministically: `before_lock` runs an action when the operation under test is about to take
its lock, after its first checks. The action swaps the entry for another user's (under the
sticky root) or changes the rights themselves; the operation must be refused and nothing may be
lost.

alice, bob and carol are ordinary users with no group in common; sue is a superuser.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from filesystem import services
from filesystem.services import create, namespace
from filesystem.services.create import SMALL_UPLOAD
from tests.helpers import assert_error, body_of, stored_blobs, upload


def url(path: str) -> str:
    return f"/v1/files/{path.lstrip('/')}"


def patch(client, path: str, body: dict):
    return client.patch(url(path), data=json.dumps(body), content_type="application/json")


@pytest.fixture
def people(make_user, client_for):
    """{name: (user, client)} for alice, bob, carol and the superuser sue."""
    made = {name: make_user(name) for name in ("alice", "bob", "carol")}
    made["sue"] = make_user("sue", superuser=True)
    return {name: (user, client_for(key)) for name, (user, key) in made.items()}


@pytest.fixture
def before_lock(monkeypatch):
    """before_lock(action): run `action` once, just before the next operation takes its path
    lock - after its first checks passed - as a concurrent request could."""
    pending: list = []
    real_lock = namespace.distributed_lock

    @contextmanager
    def lock_after_pending(*names, **options):
        while pending:
            pending.pop(0)()  # popped first: the action's own operations lock normally
        with real_lock(*names, **options):
            yield

    for module in (create, namespace):
        monkeypatch.setattr(module, "distributed_lock", lock_after_pending)
    return pending.append


def put(user, path: str, data: bytes = b"x") -> None:
    services.create_file(user, path, [data])


def state(people, path: str) -> tuple[str, str, bytes] | None:
    """(owner, mode, bytes) at `path` as the superuser sees it, None if nothing is there."""
    sue = people["sue"][1]
    response = sue.get(url(path))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.content[:200]
    return response["X-CallFS-Owner"], response["X-CallFS-Mode"], body_of(response)


def swap_for_carols(people, path: str, data: bytes = b"carol's"):
    """The action: alice's entry at `path` goes (alice removes it) and carol puts her own file
    there. Under the sticky root only carol (or an admin) may remove or rename it then."""
    alice, carol = people["alice"][0], people["carol"][0]

    def action():
        services.delete(alice, path)
        put(carol, path, data)

    return action


# --- move ---------------------------------------------------------------------------------------

def test_move_does_not_replace_a_destination_swapped_for_someone_elses(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"source")
    put(alice, "/dst.txt", b"alice's old destination")
    before_lock(swap_for_carols(people, "/dst.txt"))

    response = patch(client, "/a.txt", {"destination": "/dst.txt", "overwrite": True})

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/dst.txt") == ("carol", "0644", b"carol's")
    assert state(people, "/a.txt") == ("alice", "0644", b"source")


def test_move_does_not_take_a_source_swapped_for_someone_elses(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"alice's")
    before_lock(swap_for_carols(people, "/a.txt"))

    response = patch(client, "/a.txt", {"name": "b.txt"})

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/a.txt") == ("carol", "0644", b"carol's")
    assert state(people, "/b.txt") is None


def test_move_rechecks_the_sticky_bit_set_meanwhile(people, before_lock):
    bob, carol, alice = people["bob"][0], people["carol"][0], people["alice"][0]
    client = people["alice"][1]
    services.make_directory(bob, "/pub")
    services.change_metadata(bob, "/pub", mode=0o777)
    put(carol, "/pub/c.txt", b"carol's")
    put(alice, "/pub/a.txt", b"alice's")
    # Without the sticky bit alice may replace carol's file; bob sets it before alice's lock.
    before_lock(lambda: services.change_metadata(bob, "/pub", mode=0o1777))

    response = patch(client, "/pub/a.txt", {"destination": "/pub/c.txt", "overwrite": True})

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/pub/c.txt") == ("carol", "0644", b"carol's")
    assert state(people, "/pub/a.txt") == ("alice", "0644", b"alice's")


def test_move_onto_a_destination_replaced_by_an_allowed_one_still_works(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"source")
    put(alice, "/dst.txt", b"first")

    def replace():
        services.write_file(alice, "/dst.txt", [b"second"])
        services.delete(alice, "/dst.txt")
        put(alice, "/dst.txt", b"third")

    before_lock(replace)

    response = patch(client, "/a.txt", {"destination": "/dst.txt", "overwrite": True})

    assert response.status_code == 200, response.content
    assert state(people, "/dst.txt") == ("alice", "0644", b"source")
    assert state(people, "/a.txt") is None


# --- delete -------------------------------------------------------------------------------------

def test_delete_does_not_remove_an_entry_swapped_for_someone_elses(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"alice's")
    before_lock(swap_for_carols(people, "/a.txt"))

    response = client.delete(url("/a.txt"))

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/a.txt") == ("carol", "0644", b"carol's")


def test_delete_rechecks_the_parent_made_read_only_meanwhile(people, before_lock):
    bob, alice = people["bob"][0], people["alice"][0]
    client = people["alice"][1]
    services.make_directory(bob, "/pub")
    services.change_metadata(bob, "/pub", mode=0o777)
    put(alice, "/pub/a.txt", b"alice's")
    before_lock(lambda: services.change_metadata(bob, "/pub", mode=0o755))

    response = client.delete(url("/pub/a.txt"))

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/pub/a.txt") == ("alice", "0644", b"alice's")


# --- chmod / chgrp / chown ----------------------------------------------------------------------

def test_chmod_does_not_apply_to_an_entry_swapped_for_someone_elses(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"alice's")
    before_lock(swap_for_carols(people, "/a.txt"))

    response = patch(client, "/a.txt", {"mode": "0666"})

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/a.txt") == ("carol", "0644", b"carol's")


def test_chmod_after_a_chown_meanwhile_is_refused(people, before_lock):
    alice, client = people["alice"]
    sue = people["sue"][0]
    put(alice, "/a.txt", b"alice's")
    before_lock(lambda: services.change_metadata(sue, "/a.txt", owner="bob"))

    response = patch(client, "/a.txt", {"mode": "0666"})

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/a.txt") == ("bob", "0644", b"alice's")


def test_setgid_meant_for_a_directory_is_refused_on_the_file_that_replaced_it(
        people, before_lock):
    alice, client = people["alice"]
    services.make_directory(alice, "/d")

    def replace_with_a_file():
        services.delete(alice, "/d")
        put(alice, "/d", b"now a file")

    before_lock(replace_with_a_file)

    response = patch(client, "/d", {"mode": "2770"})

    assert_error(response, 400, "INVALID_REQUEST")
    assert state(people, "/d") == ("alice", "0644", b"now a file")


def test_chmod_of_a_swapped_entry_the_caller_owns_applies_to_it(people, before_lock):
    alice, client = people["alice"]
    put(alice, "/a.txt", b"first")

    def replace():
        services.delete(alice, "/a.txt")
        put(alice, "/a.txt", b"second")

    before_lock(replace)

    response = patch(client, "/a.txt", {"mode": "0600"})

    assert response.status_code == 200, response.content
    assert state(people, "/a.txt") == ("alice", "0600", b"second")


# --- uploads, copies, mkdir ---------------------------------------------------------------------

LARGE = b"L" * (SMALL_UPLOAD + 1)  # checked before its body is read, and again under the lock


@pytest.fixture
def closing_pub(people):
    """bob's /pub (0777) holding /pub/sub (0777), where anyone may create, and alice's /a.txt;
    returns the action of bob taking `x` on /pub from everyone else."""
    bob, alice = people["bob"][0], people["alice"][0]
    services.make_directory(bob, "/pub/sub")
    for path in ("/pub", "/pub/sub"):
        services.change_metadata(bob, path, mode=0o777)
    put(alice, "/a.txt", b"alice's")
    return lambda: services.change_metadata(bob, "/pub", mode=0o700)


@pytest.mark.parametrize("method", ["post", "put"])
def test_a_large_upload_rechecks_the_way_closed_meanwhile(people, closing_pub, before_lock,
                                                          storage_root, method):
    client = people["alice"][1]
    before = stored_blobs(storage_root)
    before_lock(closing_pub)

    response = upload(client, "/pub/sub/big.bin", LARGE, method=method)

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/pub/sub/big.bin") is None
    assert stored_blobs(storage_root) == before


def test_a_copy_rechecks_the_way_closed_meanwhile(people, closing_pub, before_lock,
                                                  storage_root):
    client = people["alice"][1]
    before = stored_blobs(storage_root)
    before_lock(closing_pub)

    response = client.put(url("/pub/sub/copy.txt"), HTTP_X_CALLFS_COPY_SOURCE="/a.txt")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/pub/sub/copy.txt") is None
    assert stored_blobs(storage_root) == before


def test_mkdir_rechecks_the_way_closed_meanwhile(people, closing_pub, before_lock):
    client = people["alice"][1]
    before_lock(closing_pub)

    response = upload(client, "/pub/sub/made/")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert state(people, "/pub/sub/made") is None
