"""manage.py repair [--no-verify]"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from filesystem import repair


class Command(BaseCommand):
    help = ("Bring every local-disk file back to CALLFS_REPLICAS good copies on live nodes: "
            "check each copy, copy missing ones from a good one, hand a lost primary's role to "
            "a replica, remove extra copies and delete blobs of files that went while their "
            "node was away. Idempotent; safe to run on several nodes at once.")

    def add_arguments(self, parser):
        parser.add_argument("--no-verify", action="store_true",
                            help="trust the recorded copies instead of asking each node")

    def handle(self, *args, no_verify, **options):
        self.stdout.write(f"repairing to {settings.CALLFS.replicas} copies per file")
        summary = repair.run(verify=not no_verify, progress=self.stdout.write)
        for path in summary.lost:
            self.stdout.write(f"no reachable copy: {path}")
        if summary.lost:
            raise CommandError(summary.line())
        style = self.style.SUCCESS if not summary.under_replicated else self.style.WARNING
        self.stdout.write(style(summary.line()))
