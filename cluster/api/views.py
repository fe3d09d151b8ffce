from rest_framework import mixins, viewsets

from callfs_site.views import CallFSView
from cluster.api.serializers import NodeSerializer
from cluster.models import Node


class NodeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet,
                  CallFSView):
    """GET /v1/nodes/ and /v1/nodes/{id}: the cluster's nodes, read-only."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    lookup_field = "node_id"
    lookup_value_regex = "[^/]+"
