"""filesystem.rows.row_cache: path lookups on SQLite are answered from memory while the inode
generation (kept by the triggers of migration 0003) stands, and never across a change.

Transactional tests: the cache is off inside transactions, where every other test runs. Other
databases keep nothing (migration 0003 adds no counter there): on them these tests check that
every lookup queries."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiKey
from cluster.models import Node
from filesystem import services
from filesystem.models import Inode
from filesystem.rows import row_cache
from tests.helpers import run_in_threads

# serialized_rollback: the flush after each test would drop the root directory from migration 0002.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True),
              pytest.mark.fastpaths]


def cached() -> bool:
    return connection.vendor == "sqlite"


def no_counter_elsewhere() -> bool:
    """On other databases: true, once it is checked that migration 0003 made no counter."""
    if cached():
        return False
    assert "filesystem_inode_generation" not in connection.introspection.table_names()
    return True


def generation() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM filesystem_inode_generation")
        return cursor.fetchone()[0]


def paths_found(*path_list: str) -> set[str]:
    return {row.path for row in Inode.objects.rows_at(list(path_list))}


def test_every_change_a_lookup_reads_moves_the_generation(make_user):
    if no_counter_elsewhere():
        return
    alice, _ = make_user("alice")
    group = Group.objects.create(name="team")
    steps = {
        "inode insert": lambda: services.make_directory(alice, "/made"),
        "inode update": lambda: Inode.objects.filter(path="/made").update(mode=0o700),
        "inode delete": lambda: services.delete(alice, "/made"),
        "user rename": lambda: User.objects.filter(pk=alice.pk).update(username="alicia"),
        "group rename": lambda: Group.objects.filter(pk=group.pk).update(name="crew"),
        "group delete": lambda: group.delete(),
        "user delete": lambda: User.objects.create(username="gone").delete(),
    }
    for name, step in steps.items():
        before = generation()
        step()
        assert generation() > before, name


def test_bookkeeping_writes_leave_the_generation_alone(make_user):
    if no_counter_elsewhere():
        return
    alice, _ = make_user("alice")
    before = generation()
    Node.objects.create(node_id="n1", url="http://127.0.0.1:1")
    Node.objects.filter(node_id="n1").update(last_heartbeat=timezone.now())  # heartbeats
    ApiKey.objects.filter(user=alice).update(last_used_at=timezone.now())
    User.objects.filter(pk=alice.pk).update(last_login=timezone.now())
    assert generation() == before


def test_known_paths_and_absences_cost_no_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert paths_found("/", "/absent") == {"/"}
    with django_assert_num_queries(0 if cached() else 2):
        assert paths_found("/", "/absent") == {"/"}
        assert paths_found("/absent") == set()
    with django_assert_num_queries(1):  # one path not yet known: all are looked up
        assert paths_found("/", "/other") == {"/"}


def test_a_commit_from_another_connection_is_seen_at_once(make_user):
    alice, _ = make_user("alice")
    assert paths_found("/elsewhere") == set()

    def create() -> None:  # a thread: its own database connection
        try:
            services.make_directory(alice, "/elsewhere")
        finally:
            connection.close()

    run_in_threads(create)
    assert paths_found("/elsewhere") == {"/elsewhere"}
    Inode.objects.filter(path="/elsewhere").update(mode=0o700)
    assert Inode.from_row(Inode.objects.rows_at(["/elsewhere"])[0]).mode == 0o700


def test_nothing_is_kept_inside_a_transaction_or_from_a_rolled_back_one(
        make_user, django_assert_num_queries):
    alice, _ = make_user("alice")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.make_directory(alice, "/undone")
        with django_assert_num_queries(1):
            assert paths_found("/undone") == {"/undone"}
        with django_assert_num_queries(1):
            assert paths_found("/undone") == {"/undone"}
        raise RuntimeError("rolled back")
    assert paths_found("/undone") == set()


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr("filesystem.rows.ROW_CACHE_ENTRIES", 10)
    for number in range(30):
        paths_found(f"/p{number}")
    kept = row_cache.current(connection)
    assert (0 < len(kept) <= 10) if cached() else kept is None


def test_without_all_its_triggers_the_cache_stays_off(caplog, django_assert_num_queries):
    """Django remakes a table on SQLite to alter it, which drops the table's triggers."""
    if no_counter_elsewhere():
        return
    migration = importlib.import_module("filesystem.migrations.0003_inode_generation")
    name, create = next(trigger for trigger in migration._triggers(apps)
                        if trigger[0].endswith("_inode_update"))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {name}")
    try:
        row_cache.clear()
        paths_found("/")
        with django_assert_num_queries(1):
            paths_found("/")
        assert "has 6 of the 7 inode generation triggers" in caplog.text
    finally:
        with connection.cursor() as cursor:
            cursor.execute(create)
        row_cache.clear()
    paths_found("/")
    with django_assert_num_queries(0):
        paths_found("/")
