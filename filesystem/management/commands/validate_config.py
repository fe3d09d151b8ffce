"""manage.py validate_config: every setting checked, printed with secrets masked; settings that
work but are unsafe in production are warned about on stderr."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from filesystem.storage import available_backends, get_backend


class Command(BaseCommand):
    help = ("Load and check every setting (a bad one stops manage.py before this runs, naming "
            "it), print them with secrets masked, then check the database, Redis and backends; "
            "warn about settings unsafe in production.")

    def handle(self, *args, **options):
        config = settings.CALLFS
        for name, value in config.masked().items():
            shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
            self.stdout.write(f"{name:18} {shown}")
        problems = []
        try:
            connection.ensure_connection()
        except Exception as exc:
            problems.append(f"DATABASE_URL: cannot connect ({exc.__class__.__name__}: {exc})")
        if config.redis_url:
            from django_redis import get_redis_connection

            try:
                get_redis_connection("locks").ping()
            except Exception as exc:
                problems.append(f"REDIS_URL: cannot connect ({exc.__class__.__name__}: {exc})")
        for name in available_backends():
            try:
                get_backend(name).check()
            except Exception as exc:
                setting = "CALLFS_DATA_DIR" if name == "localfs" else "CALLFS_S3_BUCKET"
                problems.append(f"{setting}: backend {name} unusable ({exc})")
        problems = [problem.splitlines()[0] for problem in problems]
        if problems:
            raise CommandError(problems[0])
        warnings = config.production_warnings()
        for warning in warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        suffix = f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""
        self.stdout.write(self.style.SUCCESS(f"configuration OK{suffix}"))
