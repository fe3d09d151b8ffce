"""Nodes in the admin: registered by the nodes themselves (or `register_node`), with how many
local-disk files and bytes each holds; a node silent for DOWN_AFTER is flagged down.

Here rather than in cluster because of those counts: cluster sits below filesystem and knows
nothing of inodes.

A node's id and URL decide where this node sends other nodes' bytes (and signed requests), so
only superusers add nodes or change those two fields; other staff see them read-only."""

from django.contrib import admin
from django.db import models
from django.db.models import BigIntegerField, Count, OuterRef, Subquery, Sum
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from cluster.models import Node
from filesystem.models import Inode


def _per_node(aggregate):
    """A subquery of one aggregate over the node's local-disk files."""
    rows = (Inode.objects.filter(type="file", backend="localfs", node_id=OuterRef("node_id"))
            .order_by().values("node_id").annotate(value=aggregate).values("value"))
    return Subquery(rows, output_field=BigIntegerField())


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("node_id", "state", "draining", "url", "last_heartbeat", "files", "bytes",
                    "version")
    search_fields = ("node_id", "url")
    readonly_fields = ("registered_at", "last_heartbeat", "version")
    # Django 5's default for a URL typed without a scheme, kept explicit (6.0 changes it).
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    # Where this node sends bytes and signed requests: superusers only change them (issue 20).
    routing_fields = ("node_id", "url")

    class Media:
        css = {"all": ["callfs_admin/admin.css"]}

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*self.routing_fields, *fields)

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            file_count=_per_node(Count("pk")), byte_count=_per_node(Sum("size")))

    @admin.display(description="state")
    def state(self, obj):
        state = obj.state
        return format_html('<span class="callfs-badge callfs-node-{}">{}</span>', state, state)

    @admin.display(description="files", ordering="file_count")
    def files(self, obj):
        return getattr(obj, "file_count", None) or 0

    @admin.display(description="bytes", ordering="byte_count")
    def bytes(self, obj):
        size = getattr(obj, "byte_count", None) or 0
        return format_html('<span title="{} bytes">{}</span>', size, filesizeformat(size))
