"""Migrations: the models match them, and a database made before API keys moved to the accounts
app (issue 22) upgrades with `migrate`, its keys, permissions and admin history included."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey

# Before the move: filesystem's last migration that still held ApiKey, and no accounts app.
BEFORE_THE_MOVE = [("filesystem", "0004_drop_special_mode_bits"), ("accounts", None)]
KEY = "carols-key-made-before-the-move"


@pytest.mark.django_db  # makemigrations reads which migrations are applied
def test_the_models_need_no_new_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits 1 if they do


def migrate(targets: list[tuple[str, str | None]] | None = None):
    """Migrate the test database to `targets` (the latest migrations by default); return the
    historical models of that point."""
    executor = MigrationExecutor(connection)
    state = executor.migrate(targets or executor.loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()  # the migrations relabel a content type under it
    return state.apps


# Transactional, because migrations cannot run inside the test's transaction; serialized, because
# the flush after it would drop the rows the migrations made (content types, the root directory).
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_database_from_before_the_accounts_app_upgrades_with_migrate():
    try:
        before = migrate(BEFORE_THE_MOVE)
        old_content_type = before.get_model("contenttypes", "ContentType").objects.get(
            app_label="filesystem", model="apikey")
        carol = before.get_model("auth", "User").objects.create(username="carol", is_staff=True)
        carol.user_permissions.add(before.get_model("auth", "Permission").objects.get(
            content_type=old_content_type, codename="add_apikey"))
        old_key = before.get_model("filesystem", "ApiKey").objects.create(
            user=carol, name="laptop", prefix=KEY[:ApiKey.PREFIX_LENGTH],
            digest=ApiKey.digest_for(KEY))  # the hash did not change with the move
        before.get_model("admin", "LogEntry").objects.create(
            user=carol, content_type=old_content_type, object_id=str(old_key.pk),
            object_repr="carols-key… (carol)", action_flag=1, change_message="Created")
    finally:
        migrate()  # whatever happened, later tests get the database they expect

    api_key = ApiKey.objects.get(pk=old_key.pk)
    assert (api_key.user.username, api_key.name, api_key.last_used_at) == ("carol", "laptop", None)
    response = APIClient().get("/v1/files/", HTTP_AUTHORIZATION=f"Bearer {KEY}")
    assert response.status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None

    content_type = ContentType.objects.get_for_model(ApiKey)
    assert (content_type.pk, content_type.app_label) == (old_content_type.pk, "accounts")
    assert not ContentType.objects.filter(app_label="filesystem", model="apikey").exists()
    carol = get_user_model().objects.get(username="carol")
    assert carol.has_perm("accounts.add_apikey")
    admin = Client()
    admin.force_login(carol)
    assert admin.get("/admin/accounts/apikey/add/").status_code == 200
    assert LogEntry.objects.get(user=carol).get_edited_object() == api_key
