"""manage.py list_nodes"""

from django.core.management.base import BaseCommand

from cluster.models import Node


class Command(BaseCommand):
    help = "List the cluster's nodes with their URL, state and last heartbeat."

    def handle(self, *args, **options):
        nodes = list(Node.objects.all())
        if not nodes:
            self.stdout.write("no nodes registered")
            return
        self.stdout.write(f"{'NODE':20} {'STATE':6} {'LAST HEARTBEAT':27} URL")
        for node in nodes:
            seen = node.last_heartbeat.isoformat(timespec="seconds") if node.last_heartbeat \
                else "never"
            state = f"{node.state}, draining" if node.draining else node.state
            self.stdout.write(f"{node.node_id:20} {state:6} {seen:27} {node.url}")
