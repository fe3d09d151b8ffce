"""Link request parsing and the link record of API.md §16.4 (never the token or digest)."""

from rest_framework import serializers
from rest_framework.settings import api_settings

from callfs_site.fields import StrictCharField, StrictIntegerField
from links.models import DownloadLink

# The documented OpenAPI names (§14 item 4), accepted as aliases of the code's names (§16.1).
ALIASES = {"file_path": "path", "expires_in": "expiry_seconds"}


class GenerateLinkRequest(serializers.Serializer):
    """The body of POST /v1/links/generate. Only types are checked here; emptiness and ranges
    are the service's, which must report a missing file before a bad expiry (§7.11)."""

    path = StrictCharField(required=False, allow_blank=True, allow_null=True, trim_whitespace=False,
                           default="")
    expiry_seconds = StrictIntegerField(required=False, allow_null=True, default=0)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["the request body must be a JSON object"]})
        data = dict(data)
        for alias, name in ALIASES.items():
            if alias in data and name not in data:
                data[name] = data.pop(alias)
        values = super().to_internal_value(data)
        # null counts as missing, as in Go: "" is rejected as "path is required", 0 as out of range
        return {"path": values.get("path") or "", "expiry_seconds": values.get("expiry_seconds")
                or 0}


class DownloadLinkSerializer(serializers.ModelSerializer):
    """A link record: who made it for which path, and its lifecycle. `id` is the public id,
    the part of the token before the dot, so a token's holder can find and revoke its link."""

    id = serializers.CharField(source="public_id", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    state = serializers.CharField(read_only=True)

    class Meta:
        model = DownloadLink
        fields = ["id", "path", "created_by", "created_at", "expires_at", "used_at", "revoked_at",
                  "state"]
        read_only_fields = fields
