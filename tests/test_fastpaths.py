"""The performance layer (callfs_site.fastpaths): the server refuses library releases its
shortcuts were not written against, a lean view cannot silently skip permissions or throttles,
and each shortcut gives what the plain code it replaces gives. (The whole suite also runs in
stock mode: scripts/test.sh.)"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import override_settings
from django.utils import timezone
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.throttling import AnonRateThrottle

from callfs_site import fastpaths
from callfs_site.config import load_config
from callfs_site.headers import set_headers
from callfs_site.views import CallFSView
from filesystem.models import Inode, InodeRow, InodeType
from tests.helpers import upload


@contextmanager
def stock(on: bool):
    with override_settings(CALLFS=dataclasses.replace(settings.CALLFS, stock=on)):
        assert fastpaths.enabled() is not on
        yield


def test_the_installed_releases_are_the_ones_written_against():
    assert fastpaths.version_mismatches() == []


def test_another_release_is_refused_unless_stock_mode(monkeypatch):
    monkeypatch.setitem(fastpaths.WRITTEN_AGAINST, "Django", "4.2")
    assert fastpaths.version_mismatches() == [
        f"Django {__import__('django').__version__} is installed; the fast paths were written "
        "against 4.2.x"]
    with pytest.raises(ImproperlyConfigured, match=r"CALLFS_STOCK: Django .* set CALLFS_STOCK=1"):
        load_config({"DJANGO_SECRET_KEY": "x" * 50})
    assert load_config({"DJANGO_SECRET_KEY": "x" * 50, "CALLFS_STOCK": "1"}).stock


def test_stock_mode_runs_djangos_own_sqlite_backend_durably():
    database = load_config({"DJANGO_SECRET_KEY": "x" * 50, "CALLFS_STOCK": "1",
                            "DATABASE_URL": "sqlite:////tmp/x.sqlite3"}).database
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert "synchronous=FULL" in database["OPTIONS"]["init_command"]
    fast = load_config({"DJANGO_SECRET_KEY": "x" * 50,
                        "DATABASE_URL": "sqlite:////tmp/x.sqlite3"}).database
    assert fast["ENGINE"] == "callfs_site.sqlite"


@pytest.mark.parametrize("setting", [{"throttle_classes": [AnonRateThrottle]},
                                     {"permission_classes": [AllowAny]},
                                     {"permission_classes": [IsAuthenticated, AllowAny]}])
def test_a_lean_view_may_not_set_what_the_lean_path_skips(setting):
    view = type("Careless", (CallFSView,), {"lean_methods": frozenset({"GET"}), **setting})
    with pytest.raises(ImproperlyConfigured, match="Careless: lean_methods skip"):
        view.as_view()
    type("Careful", (CallFSView,), setting).as_view()  # without lean methods, DRF runs them


def test_an_inode_row_is_every_column_then_the_owner_and_group_names():
    assert InodeRow._fields == (*(field.attname for field in Inode._meta.concrete_fields),
                                "owner_name", "group_name")


@pytest.mark.django_db
def test_path_lookups_give_the_same_rows_either_way(auth_client):
    for path in ("/a/", "/a/b.txt", "/a/c/", "/a/c/ü.txt"):
        assert upload(auth_client, path, b"x").status_code == 201
    Inode.objects.filter(path="/a/c").update(group_id=None)
    wanted = ["/", "/a", "/a/b.txt", "/a/c", "/a/c/ü.txt", "/missing"]
    with stock(False):
        fast_rows = Inode.objects.rows_at(wanted)
    with stock(True):
        plain_rows = Inode.objects.rows_at(wanted)
    assert len(fast_rows) == len(plain_rows) == 5
    assert {type(row) for row in fast_rows + plain_rows} == {InodeRow}

    def described(inode: Inode) -> tuple:
        return (*(getattr(inode, name) for name in
                  [field.attname for field in Inode._meta.concrete_fields]),
                inode.owner_name, inode.group_name)

    assert (sorted(described(Inode.from_row(row)) for row in fast_rows)
            == sorted(described(Inode.from_row(row)) for row in plain_rows))


@pytest.mark.django_db
@pytest.mark.parametrize("on", [False, True], ids=["fast", "stock"])
def test_inserts_and_updates_store_the_same_either_way(on, user):
    root = Inode.objects.get(path="/")
    now = timezone.now()
    with stock(on):
        inode = Inode.objects.insert(Inode(parent=root, name="n", path="/n", type=InodeType.FILE,
                                           owner=user, mode=0o640, ctime=now, mtime=now,
                                           backend="localfs", blob_key="k", size=3))
        inode.size, inode.sha256 = 5, "ab" * 32
        Inode.objects.update_fields(inode, ["size", "sha256"])
    stored = Inode.objects.get(pk=inode.pk)
    assert (stored.path, stored.path_hash, stored.size, stored.sha256, stored.mode,
            stored.owner_id, stored.mtime) == ("/n", inode.path_hash, 5, "ab" * 32, 0o640,
                                               user.pk, now)
    assert Inode.objects.at("/n").get() == stored


@pytest.mark.parametrize("value", ["plain", "ünïcode", "with\ttab", "x" * 300])
def test_headers_come_out_the_same_either_way(value):
    headers = {"X-One": value, "Content-Type": "text/plain", "X-Two": "2"}
    answers = []
    for on in (False, True):
        with stock(on):
            response = HttpResponse()
            set_headers(response, headers)
            answers.append(dict(response.headers))
    assert answers[0] == answers[1]
