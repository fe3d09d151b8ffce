"""The permission matrix of filesystem.access (API.md §16.2), on in-memory inodes.

Users and groups are saved (group membership is a database relation); inodes are never saved:
`access` decides from `owner_id`, `group_id` and `mode` alone.

Cast: alice owns every inode under test; bob is in its group "team"; carol is in neither
("other"); dave owns entries inside alice's directories; sue is a Django superuser.
"""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group

from accounts.keys import authenticate_key
from filesystem import access
from filesystem.exceptions import PermissionDenied
from filesystem.models import Inode, InodeType

R, W, X = 4, 2, 1
INTERNAL_SECRET = "x" * 20

# Which user stands in which permission class of an inode owned by alice with group "team".
CLASS_MEMBER = {"owner": "alice", "group": "bob", "other": "carol"}
CLASS_SHIFT = {"owner": 6, "group": 3, "other": 0}


@pytest.fixture
def cast(db, settings):
    User = get_user_model()
    team, staff, outsiders = (Group.objects.create(name=n) for n in ("team", "staff", "outsiders"))
    alice = User.objects.create(username="alice")
    alice.groups.add(team, staff)
    bob = User.objects.create(username="bob")
    bob.groups.add(team)
    carol = User.objects.create(username="carol")
    dave = User.objects.create(username="dave")
    dave.groups.add(team)
    sue = User.objects.create(username="sue", is_superuser=True, is_staff=True)
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret=INTERNAL_SECRET)
    internal = authenticate_key(INTERNAL_SECRET)
    assert internal is not None and internal.get_username() == "internal-proxy"
    root = User.objects.get(username="root")
    return SimpleNamespace(alice=alice, bob=bob, carol=carol, dave=dave, sue=sue,
                           internal=internal, root=root, anonymous=AnonymousUser(),
                           team=team, staff=staff, outsiders=outsiders)


def octal(value):
    """Test ids: modes in octal."""
    return f"{value:04o}" if type(value) is int else None


def node(owner, mode: int, *, kind: str = InodeType.FILE, group=None, name: str = "n") -> Inode:
    """An unsaved inode."""
    return Inode(owner=owner, group=group, mode=mode, type=kind, name=name, path=f"/{name}")


def traverse(user, *directories: Inode) -> None:
    """The check path resolution makes on each directory it passes through (services.lookup)."""
    for directory in directories:
        access.require_traverse(user, directory)


def allowed(call) -> bool:
    """Run an access check: True if it passes, False if it raises PermissionDenied."""
    try:
        result = call()
    except PermissionDenied:
        return False
    return result is not False  # can_descend answers a bool instead of raising


# --- one check per operation, on a target owned by alice, group team --------------------------

def _op_read_file(c, user, mode):
    return access.require_read(user, node(c.alice, mode, group=c.team))


def _op_list_dir(c, user, mode):
    return access.require_read(user, node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY))


def _op_traverse(c, user, mode):
    return traverse(user, node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY))


def _op_descend(c, user, mode):
    return access.can_descend(user, node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY))


def _op_write_file(c, user, mode):
    return access.require_write(user, node(c.alice, mode, group=c.team))


def _op_create_in_dir(c, user, mode):
    return access.require_create_in(
        user, node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY))


def _op_remove_from_dir(c, user, mode):
    # The entry belongs to dave: without the sticky bit only the parent's bits matter.
    parent = node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY, name="d")
    return access.require_remove(user, node(c.dave, 0o644, group=c.team, name="e"), parent)


def _op_move_dir(c, user, mode):
    # Moving a directory to a new parent rewrites its `..`: `w` on the directory itself.
    return access.require_move_directory(
        user, node(c.alice, mode, group=c.team, kind=InodeType.DIRECTORY))


OPERATIONS = {
    "read-file": (R, _op_read_file),
    "list-dir": (R, _op_list_dir),
    "traverse": (X, _op_traverse),
    "descend": (R | X, _op_descend),
    "write-file": (W, _op_write_file),
    "create-in-dir": (W | X, _op_create_in_dir),
    "remove-from-dir": (W | X, _op_remove_from_dir),
    "move-dir-to-new-parent": (W, _op_move_dir),
}


def _matrix():
    """Every class x every rwx combination x every operation. The caller's class gets `perm`;
    the two other classes get exactly the complement, so consulting the wrong class flips the
    answer for every operation that needs a bit."""
    for cls, perm, op in itertools.product(CLASS_SHIFT, range(8), OPERATIONS):
        complement = ~perm & 7
        mode = sum((perm if c == cls else complement) << s for c, s in CLASS_SHIFT.items())
        needed = OPERATIONS[op][0]
        yield pytest.param(cls, mode, op, needed & perm == needed,
                           id=f"{cls}-{perm:o}({mode:04o})-{op}")


@pytest.mark.parametrize(("cls", "mode", "op", "expected"), list(_matrix()))
def test_permission_matrix(cast, cls, mode, op, expected):
    user = getattr(cast, CLASS_MEMBER[cls])
    assert allowed(lambda: OPERATIONS[op][1](cast, user, mode)) is expected


@pytest.mark.parametrize(("who", "mode", "op", "expected"), [
    # The owner class is chosen for the owner even when the group/other bits would allow.
    ("alice", 0o077, "read-file", False),
    ("alice", 0o077, "write-file", False),
    ("alice", 0o070, "list-dir", False),  # alice is also in "team": owner class still wins
    ("alice", 0o477, "write-file", False),
    # The group class for members, even when "other" would allow.
    ("bob", 0o707, "read-file", False),
    ("bob", 0o707, "create-in-dir", False),
    ("bob", 0o070, "create-in-dir", True),
    # "other" gets only the last three bits.
    ("carol", 0o770, "read-file", False),
    ("carol", 0o770, "traverse", False),
    ("carol", 0o001, "traverse", True),
    # Setuid/setgid bits grant nothing; the sticky bit does not change read/write/create.
    ("carol", 0o6000, "read-file", False),
    ("carol", 0o7000, "create-in-dir", False),
    ("carol", 0o1777, "create-in-dir", True),
    ("bob", 0o2770, "create-in-dir", True),
], ids=octal)
def test_class_precedence(cast, who, mode, op, expected):
    assert allowed(lambda: OPERATIONS[op][1](cast, getattr(cast, who), mode)) is expected


@pytest.mark.parametrize(("who", "expected"), [("alice", 0), ("bob", 5), ("carol", 5)])
def test_no_group_on_the_inode_means_other(cast, who, expected):
    # group None: nobody is in the group class; only the owner escapes "other".
    assert access.permission_bits(getattr(cast, who), cast.alice.pk, None, 0o075) == expected


@pytest.mark.parametrize(("who", "group", "mode", "expected"), [
    ("alice", "team", 0o751, 7),
    ("bob", "team", 0o751, 5),
    ("carol", "team", 0o751, 1),
    ("dave", "team", 0o751, 5),
    ("bob", "staff", 0o751, 1),  # bob is not in staff
    ("alice", "staff", 0o640, 6),
])
def test_permission_bits(cast, who, group, mode, expected):
    group_id = getattr(cast, group).pk
    assert access.permission_bits(getattr(cast, who), cast.alice.pk, group_id, mode) == expected


@pytest.mark.parametrize(("chain", "expected"), [
    ((0o1777, 0o755, 0o711, 0o701), True),
    ((0o1777, 0o755, 0o700, 0o777), False),  # one ancestor without x for carol blocks it
    ((0o1777, 0o754, 0o777), False),
    ((0o1776, 0o777), False),
    ((), True),
])
def test_traverse_needs_x_on_every_ancestor(cast, chain, expected):
    directories = [node(cast.alice, mode, group=cast.team, kind=InodeType.DIRECTORY,
                        name=f"d{i}") for i, mode in enumerate(chain)]
    assert allowed(lambda: traverse(cast.carol, *directories)) is expected


# --- sticky bit ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("parent_mode", "caller", "expected"), [
    # Without the sticky bit, w+x on the parent is enough to remove anyone's entry.
    (0o777, "bob", True),    # the entry's owner
    (0o777, "alice", True),  # the directory's owner
    (0o777, "carol", True),  # neither
    # With it, only the entry's owner or the directory's owner (or an admin).
    (0o1777, "bob", True),
    (0o1777, "alice", True),
    (0o1777, "carol", False),
    (0o1777, "dave", False),  # in the directory's group, still neither owner
    (0o1777, "sue", True),
    (0o1777, "internal", True),
    # Owning the entry does not replace w+x on the parent.
    (0o1755, "bob", False),
    (0o1776, "bob", False),  # w but no x
    (0o1773, "bob", True),
    (0o1700, "alice", True),
    (0o1500, "alice", False),  # the directory owner without w
], ids=octal)
def test_sticky_directory(cast, parent_mode, caller, expected):
    parent = node(cast.alice, parent_mode, kind=InodeType.DIRECTORY, name="sticky")
    entry = node(cast.bob, 0o600, name="bobs")
    assert allowed(lambda: access.require_remove(getattr(cast, caller), entry, parent)) \
        is expected


def test_sticky_root_only_owner_removes(cast):
    root = Inode.objects.get(parent__isnull=True)
    assert root.mode == 0o1777 and root.owner.username == "root"
    top = node(cast.alice, 0o777, kind=InodeType.DIRECTORY, name="top")
    assert allowed(lambda: access.require_remove(cast.alice, top, root))
    assert not allowed(lambda: access.require_remove(cast.bob, top, root))
    assert allowed(lambda: access.require_create_in(cast.bob, root))
    assert allowed(lambda: access.require_remove(cast.sue, top, root))


# --- chmod / chgrp / chown -------------------------------------------------------------------

@pytest.mark.parametrize(("caller", "expected"), [
    ("alice", True), ("bob", False), ("carol", False), ("dave", False),
    ("sue", True), ("internal", True),
])
def test_chmod_owner_only(cast, caller, expected):
    # Mode 0777 and group team: having every bit does not make bob or dave the owner.
    target = node(cast.alice, 0o777, group=cast.team)
    assert allowed(lambda: access.require_chmod(getattr(cast, caller), target)) is expected


@pytest.mark.parametrize(("caller", "group", "expected"), [
    ("alice", "staff", True),      # owner, to a group she is in
    ("alice", "team", True),
    ("alice", "outsiders", False),  # owner, not a member
    ("bob", "team", False),         # member of the group but not the owner
    ("carol", "outsiders", False),
    ("sue", "outsiders", True),
    ("internal", "outsiders", True),
])
def test_chgrp(cast, caller, group, expected):
    target = node(cast.alice, 0o777, group=cast.team)
    assert allowed(lambda: access.require_chgrp(getattr(cast, caller), target,
                                                getattr(cast, group).pk)) is expected


@pytest.mark.parametrize(("caller", "expected"), [
    ("alice", False), ("bob", False), ("carol", False), ("sue", True), ("internal", True),
])
def test_chown_superuser_only(cast, caller, expected):
    assert allowed(lambda: access.require_chown(getattr(cast, caller))) is expected


# --- bypass -------------------------------------------------------------------------------------

def _every_check(c, user):
    """Every check, against alice's inodes of mode 0000 (and a sticky 1000 parent)."""
    closed_dir = node(c.alice, 0o000, kind=InodeType.DIRECTORY, group=c.team, name="dir")
    sticky = node(c.alice, 0o1000, kind=InodeType.DIRECTORY, name="sticky")
    closed_file = node(c.alice, 0o000, group=c.team)
    return [
        lambda: access.require_read(user, closed_file),
        lambda: access.require_read(user, closed_dir),
        lambda: traverse(user, closed_dir, sticky),
        lambda: access.can_descend(user, closed_dir),
        lambda: access.require_write(user, closed_file),
        lambda: access.require_create_in(user, closed_dir),
        lambda: access.require_remove(user, node(c.dave, 0), closed_dir),
        lambda: access.require_remove(user, node(c.dave, 0), sticky),
        lambda: access.require_move_directory(user, closed_dir),
        lambda: access.require_chmod(user, closed_file),
        lambda: access.require_chgrp(user, closed_file, c.outsiders.pk),
        lambda: access.require_chown(user),
    ]


@pytest.mark.parametrize("who", ["sue", "internal", "root"])
def test_admins_bypass_every_check(cast, who):
    user = getattr(cast, who)
    assert access.is_admin(user)
    results = [allowed(check) for check in _every_check(cast, user)]
    assert results == [True] * len(results)


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
def test_ordinary_users_are_not_admins(cast, who):
    user = getattr(cast, who)
    assert not access.is_admin(user)
    results = [allowed(check) for check in _every_check(cast, user)]
    # Mode 0000 shuts out even the owner; of the rest alice may only chmod her own inode
    # (chgrp is to "outsiders", which she is not in).
    expected = [False] * len(results)
    if who == "alice":
        expected[9] = True  # require_chmod
    assert results == expected


@pytest.mark.parametrize("check", ["read", "write", "create", "traverse"])
def test_anonymous_is_denied_even_on_0777(cast, check):
    open_dir = node(cast.alice, 0o777, kind=InodeType.DIRECTORY)
    open_file = node(cast.alice, 0o777)
    call = {
        "read": lambda: access.require_read(cast.anonymous, open_file),
        "write": lambda: access.require_write(cast.anonymous, open_file),
        "create": lambda: access.require_create_in(cast.anonymous, open_dir),
        "traverse": lambda: traverse(cast.anonymous, open_dir),
    }[check]
    assert not allowed(call)
