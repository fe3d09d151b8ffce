"""Nodes in the admin: registered by the nodes themselves (or `register_node`)."""

from django.contrib import admin

from cluster.models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("node_id", "url", "state", "last_heartbeat", "version")
    search_fields = ("node_id", "url")
    readonly_fields = ("registered_at", "last_heartbeat", "version")

    @admin.display(description="state")
    def state(self, obj):
        return obj.state
