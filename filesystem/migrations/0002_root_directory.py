"""The `root` user and the root directory `/` (owned by root, mode 1777 like /tmp: API.md §16.2)."""

import hashlib

from django.db import migrations
from django.utils import timezone


def create_root(apps, schema_editor):
    User = apps.get_model("auth", "User")
    Inode = apps.get_model("filesystem", "Inode")
    root_user, created = User.objects.get_or_create(username="root", defaults={"is_active": False})
    if created:
        root_user.password = "!"  # unusable: nobody logs in as root
        root_user.save(update_fields=["password"])
    if not Inode.objects.filter(parent__isnull=True).exists():
        now = timezone.now()
        Inode.objects.create(
            parent=None, name="", path="/", path_hash=hashlib.sha256(b"/").hexdigest(),
            type="directory", size=0, owner=root_user, mode=0o1777, ctime=now, mtime=now,
            backend="localfs", node_id="",
        )


class Migration(migrations.Migration):
    dependencies = [("filesystem", "0001_initial")]

    operations = [migrations.RunPython(create_root, migrations.RunPython.noop)]
