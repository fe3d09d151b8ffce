"""Validation of the small inputs of the file API: query parameters and PATCH bodies."""

from __future__ import annotations

import re

from rest_framework import serializers

from callfs_site.fields import StrictBooleanField, StrictCharField
from filesystem import paths
from filesystem.api.listing import MAX_LIMIT
from filesystem.exceptions import InvalidPath


class ListingParams(serializers.Serializer):
    """Query of /v1/directories: `recursive=true` (exact, as upstream), `max_depth`, and the
    pages of §16.5 (`limit`, `cursor`)."""

    recursive = serializers.CharField(
        required=False, default="false",
        help_text='"true" (exactly) lists the whole subtree; anything else the children only')
    max_depth = serializers.IntegerField(
        required=False, min_value=0, default=None, allow_null=True,
        help_text="recursive listings only: levels below the children to enter; 0 = the "
                  "children only; default 100; values over 1000 count as 1000")
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_LIMIT, default=None, allow_null=True,
        help_text="answer one page of at most this many entries, with `next_cursor` when more "
                  "follow; without it the listing is complete")
    cursor = serializers.CharField(
        required=False, default="", allow_blank=True, trim_whitespace=False, max_length=16384,
        help_text="the `next_cursor` of the previous page (same path, recursive and max_depth); "
                  "the listing goes on just after that page's last entry")

    def validate_recursive(self, value: str) -> bool:
        return value == "true"


class MoveRequest(serializers.Serializer):
    """Body of PATCH /v1/files/{path} (API.md §7.7): exactly one of `name` / `destination`."""

    name = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    destination = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    backend = StrictCharField(required=False)
    instance = StrictCharField(required=False)
    overwrite = StrictBooleanField(required=False, default=False)
    create_parents = StrictBooleanField(required=False, default=False)

    def validate_name(self, value: str) -> str:
        if value and ("/" in value or value in (".", "..")):
            raise serializers.ValidationError("name must be a single path segment")
        if value and not paths.is_valid_name(value):
            raise serializers.ValidationError("name contains invalid characters")
        return value

    def validate_destination(self, value: str) -> str:
        if not value:
            return value
        try:
            return paths.canonical(value if value.startswith("/") else "/" + value)
        except InvalidPath:
            raise serializers.ValidationError("destination is not a valid path") from None

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("name")) == bool(attrs.get("destination")):
            raise serializers.ValidationError("exactly one of name or destination is required")
        return attrs


class MetadataRequest(serializers.Serializer):
    """PATCH body that changes metadata (§16.2): `mode` as an octal string, `group`, `owner`."""

    mode = StrictCharField(required=False)
    group = StrictCharField(required=False)
    owner = StrictCharField(required=False)

    FIELDS = ("mode", "group", "owner")

    def validate_mode(self, value: str) -> int:
        if not re.fullmatch(r"0?[0-7]{3,4}", value) or int(value, 8) > 0o7777:
            raise serializers.ValidationError('must be an octal string such as "0640"')
        return int(value, 8)


_NEEDS_X = (" Absent when the caller may read the listed directory but not traverse it "
            "(r without x).")


class FileInfoSerializer(serializers.Serializer):
    """A listing entry (API.md §5.2, plus `group`); documentation only: listings are built from
    tuples for speed (`filesystem.api.listing`). In a directory the caller may read (`r`) but not
    traverse (`x`), entries carry only `name`, `path` and `type`, as POSIX readdir gives."""

    name = serializers.CharField()
    path = serializers.CharField()
    type = serializers.ChoiceField(["file", "directory"])
    size = serializers.IntegerField(required=False,
                                    help_text="bytes; 0 for directories." + _NEEDS_X)
    mode = serializers.CharField(required=False, help_text='octal, e.g. "0644".' + _NEEDS_X)
    owner = serializers.CharField(required=False, help_text="user name." + _NEEDS_X)
    group = serializers.CharField(required=False, help_text="group name." + _NEEDS_X)
    mtime = serializers.CharField(required=False, help_text="RFC 3339, seconds, UTC." + _NEEDS_X)


class DirectoryListingSerializer(serializers.Serializer):
    """The body of GET /v1/directories/{path} (API.md §7.10, §16.5); documentation only."""

    path = serializers.CharField()
    type = serializers.CharField()
    recursive = serializers.BooleanField()
    max_depth = serializers.IntegerField(required=False, help_text="recursive listings only")
    count = serializers.IntegerField(
        help_text="the number of `items`; it follows `items` when the listing is streamed")
    items = FileInfoSerializer(many=True)
    next_cursor = serializers.CharField(
        required=False, help_text="pages only, when more entries follow: pass it as `cursor`")
