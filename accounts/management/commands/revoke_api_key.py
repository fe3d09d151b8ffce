"""manage.py revoke_api_key USER|KEY_PREFIX"""

from django.core.management.base import BaseCommand, CommandError

from accounts.keys import revoke_api_keys


class Command(BaseCommand):
    help = "Revoke every active key of a user, or the key(s) starting with a prefix."

    def add_arguments(self, parser):
        parser.add_argument("user_or_prefix")

    def handle(self, *args, user_or_prefix, **options):
        count = revoke_api_keys(user_or_prefix)
        if count == 0:
            raise CommandError(f"no active key matches {user_or_prefix!r}")
        self.stdout.write(self.style.SUCCESS(f"Revoked {count} key(s)."))
