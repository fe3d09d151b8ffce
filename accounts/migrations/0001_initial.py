"""API keys move here from the filesystem app (issue 22); their table and rows stay as they are.

The model keeps its table, `filesystem_apikey` (`ApiKey.Meta.db_table`), so this migration changes
Django's state only and runs no DDL. Renaming the table instead would break authentication on
every node not yet upgraded: the nodes of a cluster share one database and are upgraded one at a
time, and the previous release asks for this table by name. Kept, old and new releases read the
same rows, and undoing the move has nothing to undo in the database either. On a fresh database
filesystem's 0001 creates the table, as before; `filesystem.0005` then drops the model from that
app's state, after this migration has added it here.

The model's content type is relabelled too, so its permissions (`add_apikey`, ...), the users and
groups holding them and the admin's history entries follow it to `accounts`. A fresh database has
no content types yet (they are made after `migrate`) and nothing to relabel.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import IntegrityError, migrations, models, transaction


def relabel_content_type(old_app_label, new_app_label):
    def relabel(apps, schema_editor):
        content_type = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        try:
            with transaction.atomic(using=db):
                content_type.objects.using(db).filter(
                    app_label=old_app_label, model="apikey").update(app_label=new_app_label)
        except IntegrityError:
            # Both labels exist after a `migrate` to a point between this migration and
            # filesystem's 0005 (its state holds both models, so Django made the missing one).
            # As Django's own content type renames do, keep going: `remove_stale_contenttypes`
            # then asks what to do with the leftover.
            pass

    return relabel


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("filesystem", "0001_initial"),  # created the table; no later migration touched it
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(blank=True, max_length=100)),
                        ("prefix", models.CharField(db_index=True, editable=False, max_length=10)),
                        ("digest", models.CharField(editable=False, max_length=64, unique=True)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ("last_used_at", models.DateTimeField(blank=True, editable=False, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "verbose_name": "API key",
                        "db_table": "filesystem_apikey",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
        ),
        migrations.RunPython(relabel_content_type("filesystem", "accounts"),
                             relabel_content_type("accounts", "filesystem")),
    ]
