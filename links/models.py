"""Single-use download links (API.md §7.11, §7.12, §10, §16.4).

A link row never holds its token: only a public id (the part of the token before the dot, used
to find the row) and an HMAC digest binding that id, the canonical path and the token's secret
part. The token is shown once, in the generate response.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class LinkState(models.TextChoices):
    ACTIVE = "active", "active"
    USED = "used", "used"
    EXPIRED = "expired", "expired"
    REVOKED = "revoked", "revoked"


class DownloadLinkQuerySet(models.QuerySet):
    def redeemable(self, now) -> DownloadLinkQuerySet:
        """Links a download may still consume at `now`: not used, not revoked, not expired."""
        return self.filter(used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)

    def finished_before(self, moment) -> DownloadLinkQuerySet:
        """Links that stopped being redeemable (used, revoked or expired) before `moment`."""
        return self.filter(
            Q(used_at__lt=moment) | Q(revoked_at__lt=moment) | Q(expires_at__lt=moment)
        )


class DownloadLink(models.Model):
    """A time-limited, single-use public URL for one file. It downloads at most once: consuming
    is one conditional UPDATE (`used_at` is set only while the link is still redeemable)."""

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False,
                              help_text="HMAC-SHA256 of public id, path and the token's secret")
    inode = models.ForeignKey(
        "filesystem.Inode", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="download_links",
        help_text="the file the link was made for; a link never follows it to another path",
    )
    path = models.TextField(help_text="canonical path the link was made for")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="download_links"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = DownloadLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "download link"
        indexes = [
            models.Index(fields=["created_by", "-created_at"], name="link_by_creator"),
        ]
        constraints = [
            # A link ends one way only: consumed or revoked, never both.
            models.CheckConstraint(condition=Q(used_at__isnull=True) | Q(revoked_at__isnull=True),
                                   name="link_used_or_revoked_not_both"),
            models.CheckConstraint(condition=~Q(public_id="") & ~Q(digest=""),
                                   name="link_has_id_and_digest"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} → {self.path}"

    @property
    def state(self) -> str:
        """active, used, expired or revoked; a used or revoked link stays so after its expiry."""
        if self.revoked_at is not None:
            return LinkState.REVOKED
        if self.used_at is not None:
            return LinkState.USED
        if self.expires_at <= timezone.now():
            return LinkState.EXPIRED
        return LinkState.ACTIVE
