"""manage.py drain_node NODE_ID"""

from django.core.management.base import BaseCommand, CommandError

from filesystem import repair


class Command(BaseCommand):
    help = ("Move every copy of every file off a node, onto other live nodes, before it is "
            "removed (manage.py remove_node). Files it holds the primary copy of get a new "
            "primary. Safe to run again.")

    def add_arguments(self, parser):
        parser.add_argument("node_id")

    def handle(self, *args, node_id, **options):
        summary = repair.drain(node_id, progress=self.stdout.write)
        for path in summary.lost:
            self.stdout.write(f"not moved (no other live node could take it): {path}")
        line = (f"{summary.checked} files held by {node_id}: {summary.copied} copies made "
                f"elsewhere, {summary.promoted} primaries moved, {summary.trimmed} copies "
                f"removed, {len(summary.lost)} left")
        if summary.lost:
            raise CommandError(line)
        self.stdout.write(self.style.SUCCESS(line))
