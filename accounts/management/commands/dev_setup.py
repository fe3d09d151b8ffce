"""manage.py dev_setup: the development superuser and a fresh API key for `make run`."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.keys import create_api_key, ensure_bootstrap_keys
from accounts.models import ApiKey

DEV_USER = "admin"
DEV_KEY_NAME = "make run"


class Command(BaseCommand):
    help = ("Ensure the development superuser 'admin' exists and print a new API key for it "
            "(the previous 'make run' key is revoked).")

    def handle(self, *args, **options):
        ensure_bootstrap_keys()
        User = get_user_model()
        user = User.objects.filter(username=DEV_USER).first()
        password = None
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(DEV_USER, password=password)
        ApiKey.objects.active().filter(user=user, name=DEV_KEY_NAME).delete()
        _, key = create_api_key(DEV_USER, name=DEV_KEY_NAME)
        self.stdout.write(self.style.SUCCESS("CallFS development credentials"))
        self.stdout.write(f"  API key (user {DEV_USER}): {key}")
        if password:
            self.stdout.write(f"  Admin login: {DEV_USER} / {password}  (shown only now)")
        else:
            self.stdout.write(f"  Admin login: {DEV_USER} (password shown when first created; "
                              f"reset it with 'manage.py changepassword {DEV_USER}')")
        if settings.CALLFS.secret_key_file is not None:
            # Made by the first manage.py of a fresh checkout (callfs_site.config); API keys are
            # hashed with it, so losing it revokes them all.
            self.stdout.write(f"  Secret key: {settings.CALLFS.secret_key_file} (generated for "
                              "this installation; DJANGO_SECRET_KEY overrides it)")
