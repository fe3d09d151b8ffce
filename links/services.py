"""Download links: issue, redeem, list, revoke, purge (API.md §7.11, §7.12, §10, §16.4).

A token is `<public id>.<secret>`, both unpadded base64url. Only the public id and
HMAC-SHA256(key = SHA-256(CALLFS_LINK_SECRET), id ␀ path ␀ secret) are stored, so a database
reader cannot download anything, and a row whose path was altered no longer verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from callfs_site.metrics import LINK_CONSUMPTIONS, LINK_GENERATIONS, series
from filesystem import access, paths
from filesystem import services as fs
from filesystem.access import User
from filesystem.exceptions import FileNotFound, IsADirectory
from filesystem.models import Inode
from links.exceptions import InvalidRequest, LinkExpired, LinkNotFound
from links.models import DownloadLink

logger = logging.getLogger(__name__)

MIN_EXPIRY_SECONDS = 1
MAX_EXPIRY_SECONDS = 86400
PUBLIC_ID_BYTES = 16
SECRET_BYTES = 32
# What we mint: 22 + 1 + 43 characters. Anything else is unknown without a database query.
_GONE = "failed to get file metadata: metadata not found"  # upstream's message (§7.12 row 8)
_TOKEN = re.compile(r"\A(?P<public_id>[A-Za-z0-9_-]{22})\.(?P<secret>[A-Za-z0-9_-]{43})\Z")


@dataclass(frozen=True)
class IssuedLink:
    """A new link and its token; the token exists only here, never in the database."""

    link: DownloadLink
    token: str


@dataclass(frozen=True)
class Download:
    """A consumed link's open file, ready to stream."""

    inode: Inode
    reader: BinaryIO
    filename: str


def _signing_key() -> bytes:
    return hashlib.sha256(settings.CALLFS.link_secret.encode()).digest()


def _digest(public_id: str, path: str, secret: str) -> str:
    """The stored proof of a token: binds its id and secret to the path it was made for."""
    message = "\0".join((public_id, path, secret)).encode("utf-8", "surrogatepass")
    return hmac.new(_signing_key(), message, hashlib.sha256).hexdigest()


def format_expiry(moment: datetime) -> str:
    """RFC 3339 in UTC with fractional seconds and trailing zeros trimmed, as Go's time.Time."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def issue(user: User, path: str, expiry_seconds: int) -> IssuedLink:
    """Create a link to the entry at `path` (canonicalised here) for a user who may read it,
    valid for `expiry_seconds` (1..86400). Checks run in upstream's order (§7.11): path
    missing, path invalid, entry missing (404), then expiry, so a missing file with a bad expiry
    is a 404."""
    if not path:
        raise InvalidRequest("path is required")
    path = paths.canonical(path)
    inode = fs.stat(user, path)  # 404 if missing, 403 if an ancestor cannot be traversed
    access.require_read(user, inode)  # §16.2: sharing needs what a download would need
    if not MIN_EXPIRY_SECONDS <= expiry_seconds <= MAX_EXPIRY_SECONDS:
        raise InvalidRequest(f"expiry_seconds must be between {MIN_EXPIRY_SECONDS} and "
                             f"{MAX_EXPIRY_SECONDS}")
    public_id = secrets.token_urlsafe(PUBLIC_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    now = timezone.now()
    link = DownloadLink.objects.create(
        public_id=public_id, digest=_digest(public_id, path, secret), inode=inode, path=path,
        created_by=user, created_at=now, expires_at=now + timedelta(seconds=expiry_seconds),
    )
    LINK_GENERATIONS.inc()
    logger.info("download link %s issued for %s by %s", public_id, path, user.get_username())
    return IssuedLink(link, f"{public_id}.{secret}")


def _verified(token: str) -> DownloadLink:
    """The link a token names, if the token is genuine; LinkNotFound otherwise."""
    match = _TOKEN.match(token)
    link = None
    if match is not None:
        link = (DownloadLink.objects.select_related("created_by")
                .filter(public_id=match["public_id"]).first())
    if link is None:
        series(LINK_CONSUMPTIONS, "not_found").inc()
        raise LinkNotFound()
    if not hmac.compare_digest(link.digest, _digest(link.public_id, link.path, match["secret"])):
        # A guessed secret for a known id, or a row whose path was altered: never reveal state.
        series(LINK_CONSUMPTIONS, "invalid").inc()
        raise LinkNotFound()
    return link


def redeem(token: str) -> Download:
    """Consume a link and open its file. At most one caller ever gets past the conditional
    UPDATE; the link stays consumed even if the file then turns out to be gone (§10)."""
    link = _verified(token)
    now = timezone.now()
    if link.expires_at <= now:  # expiry is reported before the used state (§7.12)
        series(LINK_CONSUMPTIONS, "expired").inc()
        raise LinkExpired()
    if link.used_at is not None or link.revoked_at is not None:
        series(LINK_CONSUMPTIONS, "invalid").inc()
        raise LinkExpired("link already used" if link.used_at else "link revoked")
    if not link.created_by.is_active:
        # A link acts for its creator; a deactivated one ends it as a revocation would (the
        # signal in links.signals revokes at deactivation; a bulk UPDATE sends none).
        revoke_links(DownloadLink.objects.filter(pk=link.pk))
        series(LINK_CONSUMPTIONS, "invalid").inc()
        raise LinkExpired("link revoked")
    won = DownloadLink.objects.redeemable(now).filter(pk=link.pk).update(used_at=now)
    if won != 1:  # another request consumed (or revoked) it since we read the row
        series(LINK_CONSUMPTIONS, "invalid").inc()
        raise LinkExpired("link already used")
    series(LINK_CONSUMPTIONS, "success").inc()
    logger.info("download link %s consumed", link.public_id)

    # The creator's access is checked again (traverse here, read in open_file): a link never
    # reads more than its creator still may.
    def look_up() -> Inode:
        try:
            inode = fs.stat(link.created_by, link.path)
        except FileNotFound:
            raise FileNotFound(_GONE) from None
        # Links name a path and never follow a file elsewhere; another entry now at that path
        # (deleted and re-created, or replaced by a move) is not what the creator shared.
        if inode.pk != link.inode_id:
            raise FileNotFound(_GONE)
        if inode.is_dir:
            # Upstream answers 500 here (§7.12 row 7); §16.1 gives every non-crash a specific
            # code.
            raise IsADirectory(f"{inode.path} is a directory and cannot be downloaded")
        return inode

    # An overwrite of the file (same inode, new bytes) while it is opened: the new version.
    return fs.on_current_version(look_up, lambda inode: Download(
        inode, fs.open_file(link.created_by, inode), paths.name_of(inode.path)))


def links_for(user: User) -> QuerySet[DownloadLink]:
    """The links a user may see, newest first: their own; admins see every link."""
    links = DownloadLink.objects.select_related("created_by").order_by("-created_at", "-id")
    return links if access.is_admin(user) else links.filter(created_by_id=user.pk)


def get_link(user: User, public_id: str) -> DownloadLink:
    """One link the user may see; LinkNotFound for others' links as for unknown ids."""
    link = links_for(user).filter(public_id=public_id).first()
    if link is None:
        raise LinkNotFound()
    return link


def revoke(user: User, public_id: str) -> DownloadLink:
    """Revoke a link the user may see, so later downloads answer 410. Idempotent: a link that is
    already used or revoked is left as it is."""
    link = get_link(user, public_id)
    revoke_links(DownloadLink.objects.filter(pk=link.pk))
    link.refresh_from_db()
    return link


def revoke_links(links: QuerySet[DownloadLink]) -> int:
    """Revoke every link of `links` that is not used or revoked yet; return how many. The
    condition is part of the UPDATE, so a concurrent download either wins or finds it revoked."""
    count = links.filter(used_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    if count:
        logger.info("%s download link(s) revoked", count)
    return count


def revoke_links_of(user: User) -> int:
    """Revoke every link `user` made that could still download (their deactivation)."""
    return revoke_links(DownloadLink.objects.filter(created_by_id=user.pk))


def purge(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete links that ended (used, revoked or expired) more than `older_than` ago; their
    tokens then answer 404 instead of 410, as upstream's purge job does. Returns the count."""
    deleted, _ = DownloadLink.objects.finished_before(timezone.now() - older_than).delete()
    return deleted
