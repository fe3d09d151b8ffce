"""API keys and the users they stand for: create, revoke, authenticate, the internal user and
the CALLFS_API_KEYS bootstrap."""

from __future__ import annotations

import hmac
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey

logger = logging.getLogger(__name__)

INTERNAL_USERNAME = "internal-proxy"
LAST_USED_RESOLUTION = timedelta(minutes=1)
MIN_KEY_LENGTH = 16


class ApiKeyError(ValueError):
    """A key cannot be created or revoked as asked."""


def create_api_key(username: str, *, key: str | None = None, superuser: bool = False,
                   groups: list[str] | None = None, name: str = "") -> tuple[ApiKey, str]:
    """Create the user if needed and a new key for it; return the row and the key (shown once)."""
    if username in ("root", INTERNAL_USERNAME):
        raise ApiKeyError(f"{username!r} is reserved and cannot hold API keys")
    if key is not None and (len(key) < MIN_KEY_LENGTH or key.strip() != key):
        raise ApiKeyError(f"a key must be at least {MIN_KEY_LENGTH} characters, without "
                        "surrounding spaces")
    key = key or ApiKey.generate_key()
    with transaction.atomic():
        user, _ = get_user_model().objects.get_or_create(username=username)
        if superuser and not user.is_superuser:
            user.is_superuser = user.is_staff = True
            user.save(update_fields=["is_superuser", "is_staff"])
        for group_name in groups or []:
            group, _ = Group.objects.get_or_create(name=group_name)
            user.groups.add(group)
        if ApiKey.objects.matching(key).exists():
            raise ApiKeyError("that key is already in use")
        api_key = ApiKey(user=user, name=name)
        api_key.set_key(key)
        api_key.save()
    return api_key, key


def revoke_api_keys(user_or_prefix: str) -> int:
    """Revoke every active key of a user, or the keys with a given prefix (at least 6
    characters) or the given whole key; return how many were revoked."""
    active = ApiKey.objects.active()
    query = active.filter(user__username=user_or_prefix)
    if not query.exists():
        query = active.matching(user_or_prefix)
    if not query.exists() and len(user_or_prefix) >= 6:
        query = active.filter(prefix__startswith=user_or_prefix[: ApiKey.PREFIX_LENGTH])
    return revoke_keys(query)


def revoke_keys(queryset) -> int:
    """Revoke exactly these keys (the active ones among them); return how many."""
    revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    forget_authentications()  # at once in this worker; the others follow within 5 s
    return revoked


def internal_user() -> AbstractBaseUser:
    """The admin user the internal secret authenticates as (created on first use)."""
    user, created = get_user_model().objects.get_or_create(
        username=INTERNAL_USERNAME, defaults={"is_superuser": True, "is_staff": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def ensure_bootstrap_key(key: str, username: str) -> None:
    """Make sure a CALLFS_API_KEYS entry exists as a user and key (idempotent, race-safe)."""
    if ApiKey.objects.matching(key).exists():
        return
    try:
        create_api_key(username, key=key, name="CALLFS_API_KEYS")
    except (IntegrityError, ApiKeyError):
        pass  # another worker created it first


def ensure_bootstrap_keys() -> None:
    """Create every user and key named by CALLFS_API_KEYS."""
    for key, username in settings.CALLFS.api_keys.items():
        ensure_bootstrap_key(key, username)


# Authentication results are kept this long per process: a key lookup costs a query and a
# compiled join on every request otherwise. A revoked key therefore stops working within
# AUTH_CACHE_SECONDS on every worker (at once in the worker that revoked it).
AUTH_CACHE_SECONDS = 5.0
_AUTH_CACHE_LIMIT = 10_000
_authenticated: dict[str, tuple[float, AbstractBaseUser]] = {}


def forget_authentications() -> None:
    """Drop cached authentications (after revoking keys, and between tests)."""
    _authenticated.clear()


def authenticate_key(key: str) -> AbstractBaseUser | None:
    """The active user a presented key belongs to, or None."""
    secret = settings.CALLFS.internal_secret
    if secret and hmac.compare_digest(key.encode(), secret.encode()):
        return internal_user()
    digest = ApiKey.digest_for(key)
    now = time.monotonic()
    cached = _authenticated.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    user = _lookup(key, digest)
    if user is not None:
        if len(_authenticated) >= _AUTH_CACHE_LIMIT:
            _authenticated.clear()
        _authenticated[digest] = (now + AUTH_CACHE_SECONDS, user)
    return user


def _lookup(key: str, digest: str) -> AbstractBaseUser | None:
    found = ApiKey.objects.active().filter(digest=digest).select_related("user").first()
    if found is None:
        username = settings.CALLFS.api_keys.get(key)
        if username is None:
            return None
        ensure_bootstrap_key(key, username)
        found = ApiKey.objects.active().filter(digest=digest).select_related("user").first()
        if found is None:
            return None
    if not found.user.is_active:
        return None
    now = timezone.now()
    if found.last_used_at is None or now - found.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=found.pk).update(last_used_at=now)
    return found.user
