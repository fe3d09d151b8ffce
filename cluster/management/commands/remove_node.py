"""manage.py remove_node NODE_ID"""

from django.core.management.base import BaseCommand, CommandError

from cluster.models import Node
from cluster.services import NodeInUse, remove_node


class Command(BaseCommand):
    help = "Remove a node that holds no files, or refuse and say why."

    def add_arguments(self, parser):
        parser.add_argument("node_id")

    def handle(self, *args, node_id, **options):
        try:
            remove_node(node_id)
        except (NodeInUse, Node.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Removed node {node_id}."))
