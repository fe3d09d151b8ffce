from rest_framework import serializers

from cluster.models import Node


class NodeSerializer(serializers.ModelSerializer):
    """A node as GET /v1/nodes/ shows it (API.md §16.4)."""

    id = serializers.CharField(source="node_id")
    last_seen = serializers.DateTimeField(source="last_heartbeat")

    class Meta:
        model = Node
        fields = ["id", "url", "state", "draining", "last_seen", "version"]
