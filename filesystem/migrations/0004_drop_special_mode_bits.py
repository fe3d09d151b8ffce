"""Issue 20: setuid on any entry and setgid on files mean nothing here (Inode.mode_problem), and
are now refused; entries stored with them before lose those bits, as a chmod would drop them."""

from django.db import migrations
from django.db.models import F

SETUID, SETGID = 0o4000, 0o2000


def drop_special_bits(apps, schema_editor):
    inode = apps.get_model("filesystem", "Inode")
    with_setuid = inode.objects.annotate(special=F("mode").bitand(SETUID)).filter(special=SETUID)
    with_setuid.update(mode=F("mode").bitand(0o7777 & ~SETUID))
    files_with_setgid = inode.objects.filter(type="file").annotate(
        special=F("mode").bitand(SETGID)).filter(special=SETGID)
    files_with_setgid.update(mode=F("mode").bitand(0o7777 & ~SETGID))


class Migration(migrations.Migration):
    dependencies = [("filesystem", "0003_inode_generation")]

    operations = [migrations.RunPython(drop_special_bits, migrations.RunPython.noop)]
