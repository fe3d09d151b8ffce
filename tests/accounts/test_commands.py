"""manage.py create_api_key and revoke_api_key as OPERATIONS.md describes them."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from tests.helpers import assert_error


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_create_prints_the_key_once_and_revoke_stops_it(db, client_for):
    created, key = run("create_api_key", "carol", "--groups", "ops, staff", "--name", "ci")
    api_key = ApiKey.objects.get(user__username="carol")
    assert created == f"Created API key {api_key.prefix}… for carol."
    assert key.startswith(api_key.prefix) and api_key.digest == ApiKey.digest_for(key)
    assert sorted(api_key.user.groups.values_list("name", flat=True)) == ["ops", "staff"]
    assert client_for(key).get("/v1/files/").status_code == 200

    assert run("revoke_api_key", "carol") == ["Revoked 1 key(s)."]
    assert_error(client_for(key).get("/v1/files/"), 401, "AUTHENTICATION_FAILED")
    with pytest.raises(CommandError, match="no active key matches 'carol'"):
        run("revoke_api_key", "carol")


def test_create_takes_a_key_from_a_file_and_refuses_bad_ones(db, tmp_path, client_for):
    key_file = tmp_path / "key"
    key_file.write_text("ci-key-from-a-file-0123\n")
    assert run("create_api_key", "ci", "--key-file", str(key_file))[1] == "ci-key-from-a-file-0123"
    assert client_for("ci-key-from-a-file-0123").get("/v1/files/").status_code == 200
    with pytest.raises(CommandError, match="at least 16 characters"):
        run("create_api_key", "dave", "--key", "short")
    with pytest.raises(CommandError, match="that key is already in use"):
        run("create_api_key", "dave", "--key", "ci-key-from-a-file-0123")
    with pytest.raises(CommandError, match="'root' is reserved"):
        run("create_api_key", "root")
