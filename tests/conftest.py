"""Shared fixtures: users with API keys, authenticated clients, an isolated data directory."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.keys import create_api_key, forget_authentications
from cluster import peers
from filesystem.rows import row_cache
from filesystem.services import blobs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under `make test` (CALLFS_REQUIRE_SERVICES=1) a skipped test is a failure, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CALLFS_REQUIRE_SERVICES") == "1" and report.skipped \
            and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CALLFS_REQUIRE_SERVICES=1: {report.longrepr}"


@pytest.fixture(autouse=True)
def _fresh_authentications():
    """Authentications, looked-up rows and live nodes are cached per process; each test's
    database starts over."""
    forget_authentications()
    row_cache.clear()
    yield
    forget_authentications()
    row_cache.clear()
    peers._failed_at.clear()  # which nodes failed to answer, and which are live, per process
    blobs._live = (0.0, [])


@pytest.fixture(autouse=True)
def storage_root(tmp_path, settings):
    """Every test gets its own data directory (blobs, temp files, lock files) and its own place
    in the S3 bucket, which other test runs may share."""
    root = tmp_path / "data"
    settings.CALLFS = dataclasses.replace(django_settings.CALLFS, data_dir=root,
                                          s3_prefix=f"test-{uuid.uuid4().hex}/")
    return root


@pytest.fixture
def make_user(db):
    """make_user(name, **options) -> (user, key): a user with a fresh API key."""

    def make(username: str, **options):
        api_key, key = create_api_key(username, **options)
        return api_key.user, key

    return make


@pytest.fixture
def api_client():
    return APIClient()


def _client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def user_and_key(make_user):
    return make_user("alice")


@pytest.fixture
def user(user_and_key):
    return user_and_key[0]


@pytest.fixture
def auth_client(user_and_key):
    """A client authenticated as alice."""
    return _client_for(user_and_key[1])


@pytest.fixture
def other_client(make_user):
    """A client authenticated as bob, a second ordinary user."""
    return _client_for(make_user("bob")[1])


@pytest.fixture
def client_for():
    return _client_for


DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings):
    """Locks and readiness pointed at a Redis that does not answer (the default cache stays
    in-process, so only the code that needs Redis sees the outage)."""
    settings.CALLFS = dataclasses.replace(django_settings.CALLFS, redis_url=DEAD_REDIS)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "locks": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": DEAD_REDIS,
                  "OPTIONS": {"IGNORE_EXCEPTIONS": False, "SOCKET_CONNECT_TIMEOUT": 1,
                              "SOCKET_TIMEOUT": 2}},
    }
    return DEAD_REDIS


REDIS_CACHE = {"BACKEND": "django_redis.cache.RedisCache",
               "OPTIONS": {"IGNORE_EXCEPTIONS": False, "SOCKET_CONNECT_TIMEOUT": 1,
                           "SOCKET_TIMEOUT": 2}}


@pytest.fixture(params=["file", "redis"])
def lock_backend(request, settings):
    """Run a test with host-local file locks, then with Redis locks (REDIS_URL required)."""
    if request.param == "redis":
        url = os.environ.get("CALLFS_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set (make test starts Redis)")
        settings.CALLFS = dataclasses.replace(settings.CALLFS, redis_url=url)
        prefix = f"{request.module.__name__}-{os.getpid()}"  # each module's locks its own
        with override_settings(CACHES={"default": {**REDIS_CACHE, "LOCATION": url},
                                       "locks": {**REDIS_CACHE, "LOCATION": url,
                                                 "KEY_PREFIX": prefix}}):
            yield "redis"
    else:
        settings.CALLFS = dataclasses.replace(settings.CALLFS, redis_url=None)
        yield "file"
