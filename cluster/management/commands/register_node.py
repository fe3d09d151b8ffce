"""manage.py register_node NODE_ID URL"""

from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from cluster.services import register_node


class Command(BaseCommand):
    help = "Add or update a cluster node (nodes also register themselves at start-up)."

    def add_arguments(self, parser):
        parser.add_argument("node_id")
        parser.add_argument("url", help="the base URL peers use, e.g. http://10.0.0.2:8000")

    def handle(self, *args, node_id, url, **options):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"{url!r} is not an http(s) URL")
        node, created = register_node(node_id, url)
        verb = "Registered" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} node {node.node_id} at {node.url}."))
