"""Who is calling: the API keys that identify users (users and groups are Django's own)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


@functools.lru_cache(maxsize=4)
def _pepper(secret_key: str) -> bytes:
    return hashlib.sha256(f"callfs-api-key:{secret_key}".encode()).digest()


def _api_key_digest(key: str) -> str:
    return hmac.new(_pepper(settings.SECRET_KEY), key.encode(), hashlib.sha256).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def matching(self, key: str) -> ApiKeyQuerySet:
        return self.filter(digest=ApiKey.digest_for(key))


class ApiKey(models.Model):
    """A Bearer credential of one user. Only a keyed hash is stored; the key is shown once."""

    PREFIX_LENGTH = 10

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        # The table of the filesystem app, where keys were first kept: cluster nodes share one
        # database and upgrade one by one, and a node not yet upgraded still reads this table
        # (see migration 0001).
        db_table = "filesystem_apikey"
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def generate_key() -> str:
        return "cfs_" + secrets.token_urlsafe(32)

    @staticmethod
    def digest_for(key: str) -> str:
        """The keyed hash a key is stored and looked up by."""
        return _api_key_digest(key)

    def set_key(self, key: str) -> None:
        self.prefix = key[: self.PREFIX_LENGTH]
        self.digest = _api_key_digest(key)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
