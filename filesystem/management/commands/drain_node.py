"""manage.py drain_node NODE_ID [--cancel]"""

from django.core.management.base import BaseCommand, CommandError

from cluster.models import Node
from filesystem import repair


class Command(BaseCommand):
    help = ("Move every copy of every file off a node, onto other live nodes, before it is "
            "removed (manage.py remove_node). The node is marked draining: it takes no new "
            "copies from then on (take it out of your load balancer too: files written "
            "through it start there). Files it holds the primary copy of get a new primary. "
            "Safe to run again; --cancel ends the draining.")

    def add_arguments(self, parser):
        parser.add_argument("node_id")
        parser.add_argument("--cancel", action="store_true",
                            help="the node stays: it takes new copies again")

    def handle(self, *args, node_id, cancel, **options):
        if cancel:
            if not Node.objects.filter(node_id=node_id).update(draining=False):
                raise CommandError(f"no node {node_id!r}")
            self.stdout.write(self.style.SUCCESS(f"{node_id} takes new copies again"))
            return
        try:
            summary = repair.drain(node_id, progress=self.stdout.write)
        except Node.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        for path in summary.lost:
            self.stdout.write(f"not moved (no other live node could take it): {path}")
        line = (f"{summary.checked} files held by {node_id}: {summary.copied} copies made "
                f"elsewhere, {summary.promoted} primaries moved, {summary.trimmed} copies "
                f"removed, {len(summary.lost)} left")
        if summary.lost:
            raise CommandError(line)
        self.stdout.write(self.style.SUCCESS(line))
