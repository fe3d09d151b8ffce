"""manage.py purge_links [--older-than DAYS]: delete links that ended (used, revoked, expired)."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from links import services


class Command(BaseCommand):
    help = ("Delete download links that were used, revoked or expired more than DAYS ago "
            "(default 1). Their tokens then answer 404 instead of 410. Safe to run any time.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=1.0, metavar="DAYS",
                            help="days since the link ended (default 1; 0 = every ended link)")

    def handle(self, *args, older_than: float, **options):
        if older_than < 0:
            raise CommandError("--older-than must not be negative")
        count = services.purge(timedelta(days=older_than))
        self.stdout.write(self.style.SUCCESS(f"{count} download link(s) purged"))
