"""On SQLite, a counter that every change to what a path lookup reads moves (inodes, and the
owner and group names joined to them): the read cache of InodeQuerySet.rows_at is valid while
it stands. Triggers keep it, so no write path can forget to; a node's heartbeat or an API key's
last use, which change other tables, leave it alone. Django alters a table on SQLite by
remaking it, which drops its triggers: a later migration that alters one of these tables must
create them again (`_triggers`); until then the cache stays off and says so in the log."""

from django.db import migrations

GENERATION_TABLE = "filesystem_inode_generation"


def _triggers(apps):
    inode = apps.get_model("filesystem", "Inode")._meta.db_table
    user = apps.get_model("auth", "User")._meta.db_table
    group = apps.get_model("auth", "Group")._meta.db_table
    changes = [(inode, "INSERT"), (inode, "UPDATE"), (inode, "DELETE"),
               (user, "UPDATE OF username"), (user, "DELETE"),
               (group, "UPDATE OF name"), (group, "DELETE")]
    for table, event in changes:
        name = f"{GENERATION_TABLE}_{table}_{event.split()[0].lower()}"
        yield name, (f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN "
                     f"UPDATE {GENERATION_TABLE} SET value = value + 1; END")


def create_counter(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return  # other databases are not cached (their rows come from one query anyway)
    schema_editor.execute(f"CREATE TABLE {GENERATION_TABLE} "
                          "(id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)")
    schema_editor.execute(f"INSERT INTO {GENERATION_TABLE} (id, value) VALUES (1, 0)")
    for _, sql in _triggers(apps):
        schema_editor.execute(sql)


def drop_counter(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name, _ in _triggers(apps):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
    schema_editor.execute(f"DROP TABLE IF EXISTS {GENERATION_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("filesystem", "0002_root_directory")]

    operations = [migrations.RunPython(create_counter, drop_counter)]
