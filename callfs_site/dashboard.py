"""`{% callfs_dashboard %}`: the totals on the admin index (the default AdminSite has no hook
for extra index context, so the template asks for them).

It counts files, links and nodes, so it stands above every app, beside the URL conf; the
template engine loads it as the `callfs_dashboard` library (TEMPLATES in settings)."""

from django import template
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from cluster.models import Node
from filesystem import repair, stats
from filesystem.admin import display
from links.models import DownloadLink

register = template.Library()


@register.inclusion_tag("callfs_admin/dashboard.html")
def callfs_dashboard():
    totals = stats.totals()
    nodes = list(Node.objects.all())
    by_node = dict(totals.by_node)
    node_rows = [(node, by_node.pop(node.node_id, stats.Usage())) for node in nodes]
    unregistered = sorted(by_node.items())  # files of node ids no node registered under
    return {
        "totals": totals,
        "total_size": filesizeformat(totals.bytes),
        "backends": [(name, usage.files, filesizeformat(usage.bytes))
                     for name, usage in totals.by_backend.items()],
        "nodes": [(node.node_id, node.state, usage.files, filesizeformat(usage.bytes))
                  for node, usage in node_rows],
        "unregistered": [(node_id or "(none)", usage.files, filesizeformat(usage.bytes))
                         for node_id, usage in unregistered],
        "active_links": DownloadLink.objects.redeemable(timezone.now()).count(),
        "nodes_up": sum(node.is_up for node in nodes),
        "nodes_down": sum(not node.is_up for node in nodes),
        "browse_url": display.browse_url(),
        "replicas": settings.CALLFS.replicas,
        "under_replicated": repair.under_replicated() if settings.CALLFS.replicas > 1 else 0,
    }
