"""manage.py create_api_key USER [--key KEY | --key-file F] [--superuser] [--groups G1,G2]"""

import os

from django.core.management.base import BaseCommand, CommandError

from accounts.keys import ApiKeyError, create_api_key


class Command(BaseCommand):
    help = "Create the user if needed and a new API key for it; the key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("user")
        parser.add_argument("--key", help="use this key (at least 16 characters); prefer "
                            "--key-file or CALLFS_NEW_API_KEY to keep it out of the process list")
        parser.add_argument("--key-file", help="read the key from this file")
        parser.add_argument("--superuser", action="store_true", help="make the user a superuser")
        parser.add_argument("--groups", default="", help="comma-separated groups to join")
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, user, key, key_file, superuser, groups, name, **options):
        if key_file:
            with open(key_file, encoding="utf-8") as handle:
                key = handle.read().strip()
        key = key or os.environ.get("CALLFS_NEW_API_KEY") or None
        try:
            api_key, secret = create_api_key(
                user, key=key, superuser=superuser, name=name,
                groups=[g.strip() for g in groups.split(",") if g.strip()])
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created API key {api_key.prefix}… for {user}."))
        self.stdout.write(secret)
