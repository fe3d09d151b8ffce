"""Operator-facing behaviour: readiness, logs, metrics, configuration, the OpenAPI schema."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from callfs_site.config import load_config
from callfs_site.logs import CallFSJsonFormatter, RequestContextFilter, request_id
from tests.helpers import run_in_threads, upload
from tests.servers import PROJECT, manage


@pytest.mark.django_db
def test_ready_reports_each_component(api_client):
    response = api_client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["backend:localfs"] == "ok"


@pytest.mark.django_db
def test_ready_is_503_naming_an_unreachable_redis(api_client, redis_down):
    response = api_client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["message"] == "redis unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "unavailable"


@pytest.mark.django_db
def test_ready_names_the_failing_component_and_logs_why(api_client, storage_root, caplog):
    """/ready answers anyone: it names what fails, never the exception text (paths, hosts);
    the detail goes to the log."""
    storage_root.mkdir(parents=True)
    (storage_root / "tmp").write_text("a file where the upload directory belongs")
    caplog.set_level(logging.WARNING, logger="filesystem.views")
    response = api_client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert (body["code"], body["message"]) == ("SERVICE_UNAVAILABLE", "backend:localfs unavailable")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["backend:localfs"] == "unavailable"
    text = response.content.decode()
    assert str(storage_root) not in text and "Error" not in text and "Errno" not in text
    assert "backend:localfs" in caplog.text and str(storage_root / "tmp") in caplog.text


def test_json_log_lines_carry_the_request_context():
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CallFSJsonFormatter())
    handler.addFilter(RequestContextFilter())
    log = logging.getLogger("callfs.test-json")
    log.addHandler(handler)
    log.propagate = False
    token = request_id.set("0123456789abcdef")
    try:
        log.warning("hello %s", "world", extra={"status": 201, "route": "/v1/files/*"})
    finally:
        request_id.reset(token)
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "hello world"
    assert line["level"] == "WARNING" and line["logger"] == "callfs.test-json"
    assert line["request_id"] == "0123456789abcdef"
    assert (line["status"], line["route"]) == (201, "/v1/files/*")
    assert "time" in line


def test_request_log_never_contains_keys(auth_client, user_and_key, caplog):
    caplog.set_level(logging.INFO, logger="callfs.request")
    upload(auth_client, "/logged.txt", b"x")
    assert caplog.records, "the request was not logged"
    record = caplog.records[-1]
    assert (record.method, record.status, record.user) == ("POST", 201, "alice")
    assert user_and_key[1] not in caplog.text


def test_metrics_after_requests(auth_client):
    upload(auth_client, "/m.txt", b"hello")
    auth_client.get("/v1/files/m.txt")
    text = auth_client.get("/metrics").content.decode()
    assert 'callfs_http_requests_total{method="POST",path="/v1/files/*",status_code="201"}' in text
    assert 'callfs_file_operations_total{backend_type="localfs",operation="create"}' in text
    assert 'callfs_file_operations_total{backend_type="localfs",operation="read"}' in text
    assert "callfs_backend_op_duration_seconds_bucket" in text
    assert "callfs_bytes_received_total" in text


def test_database_metrics_are_opt_in():
    """django-prometheus's query counting is costly (BENCHMARKS.md): CALLFS_DB_METRICS."""
    assert load_config({}).database["ENGINE"] == "callfs_site.sqlite"
    assert load_config({"CALLFS_DB_METRICS": "1"}).database["ENGINE"] == \
        "callfs_site.sqlite.metrics"
    postgres = {"DATABASE_URL": "postgres://u:p@127.0.0.1/db"}
    assert load_config(postgres).database["ENGINE"] == "django.db.backends.postgresql"
    assert load_config({**postgres, "CALLFS_DB_METRICS": "1"}).database["ENGINE"] == \
        "django_prometheus.db.backends.postgresql"


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
    ("DATABASE_URL", "not a url", "DATABASE_URL"),
    ("CALLFS_INTERNAL_SECRET", "short", "CALLFS_INTERNAL_SECRET"),
    ("CALLFS_DEFAULT_BACKEND", "s3", "CALLFS_S3_BUCKET"),
    ("CALLFS_DEFAULT_BACKEND", "tape", "CALLFS_DEFAULT_BACKEND"),
    ("REDIS_URL", "http://x", "REDIS_URL"),
    ("CALLFS_API_KEYS", "alice:short", "CALLFS_API_KEYS"),
    ("CALLFS_API_KEYS", "root:0123456789abcdefgh", "CALLFS_API_KEYS"),
    ("CALLFS_UMASK", "999", "CALLFS_UMASK"),
    ("CALLFS_MAX_UPLOAD_BYTES", "lots", "CALLFS_MAX_UPLOAD_BYTES"),
    ("CALLFS_NODE_ID", "bad id!", "CALLFS_NODE_ID"),
])
def test_a_bad_setting_is_named_in_one_line(variable, value, named):
    with pytest.raises(ImproperlyConfigured) as error:
        load_config({variable: value})
    message = str(error.value)
    assert message.startswith(named + ":")
    assert "\n" not in message


def test_the_internal_secret_must_differ_from_every_key():
    key = "same-secret-0123456789"
    with pytest.raises(ImproperlyConfigured, match="CALLFS_INTERNAL_SECRET"):
        load_config({"CALLFS_API_KEYS": f"alice:{key}", "CALLFS_INTERNAL_SECRET": key})


def test_upstream_positional_keys_become_api_users():
    config = load_config({"CALLFS_API_KEYS": "test-api-key-integration-0123456,"
                                             "test-api-key-secondary-9876543"})
    assert sorted(config.api_keys.values()) == ["api-user-0", "api-user-1"]


@pytest.mark.django_db
def test_validate_config_masks_secrets(settings):
    settings.CALLFS = dataclasses.replace(settings.CALLFS, internal_secret="topsecret" * 3,
                                          api_keys={"k" * 20: "alice"},
                                          allowed_hosts=["files.example.com"])
    out = StringIO()
    call_command("validate_config", stdout=out)
    text = out.getvalue()
    assert "configuration OK" in text
    assert "topsecret" not in text and "k" * 20 not in text
    assert "alice" in text


UPSTREAM_YAML = """
server:
  listen_addr: ":8443"
  protocol: "http"
  external_url: "http://node1:8443"
auth:
  api_keys:
    - "test-api-key-integration-0123456"
  api_key_users:
    carol: "carol-key-0123456789abcdef"
  internal_proxy_secret: "test-internal-secret-0123456789"
  single_use_link_secret: "test-link-secret-01234567890123"
backend:
  default_backend: "s3"
  localfs_root_path: "/data"
  s3_bucket_name: "callfs-test"
  s3_endpoint: "http://minio:9000"
  s3_region: "us-east-1"
metadata_store:
  type: "postgres"
  dsn: "postgres://callfs:callfs@postgres:5432/callfs?sslmode=disable"
dlm:
  type: "redis"
  redis_addr: "redis:6379"
instance_discovery:
  instance_id: "node-1"
log:
  level: "debug"
  format: "json"
"""


def test_an_upstream_config_yaml_is_read_and_the_environment_wins(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(UPSTREAM_YAML)
    config = load_config({"CALLFS_CONFIG": str(path), "CALLFS_NODE_ID": "from-env"})
    assert config.bind == "0.0.0.0:8443"
    assert config.external_url == "http://node1:8443"
    assert config.api_keys == {"test-api-key-integration-0123456": "api-user-0",
                               "carol-key-0123456789abcdef": "carol"}
    assert config.internal_secret == "test-internal-secret-0123456789"
    assert config.link_secret == "test-link-secret-01234567890123"
    assert (config.default_backend, config.s3_bucket) == ("s3", "callfs-test")
    assert str(config.data_dir) == "/data"
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert config.database["HOST"] == "postgres"
    assert config.redis_url == "redis://redis:6379/0"
    assert config.node_id == "from-env"
    assert (config.log_level, config.log_format) == ("DEBUG", "json")


def test_a_broken_config_file_is_named(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="^CALLFS_CONFIG: cannot read"):
        load_config({"CALLFS_CONFIG": str(tmp_path / "missing.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed")
    with pytest.raises(ImproperlyConfigured, match="^CALLFS_CONFIG: .* is not valid YAML"):
        load_config({"CALLFS_CONFIG": str(bad)})


# --- the secret key and allowed hosts (issue 20) ---------------------------------------------

PUBLISHED_KEY = "callfs-development-secret-key-do-not-use-in-production"  # the former default


def fresh_checkout_environment(tmp_path) -> dict[str, str]:
    """The environment of `make run` on a fresh checkout: no CallFS, Django or service
    settings; the database, data and secret key file of this test's own."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CALLFS_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'callfs.sqlite3'}",
                "CALLFS_DATA_DIR": str(tmp_path / "data"),
                "DJANGO_SECRET_KEY_FILE": str(tmp_path / "var" / "secret_key")})
    return env


@pytest.mark.parametrize("key", [PUBLISHED_KEY, "django-insecure-" + "x" * 40])
def test_a_published_secret_key_is_refused_unless_debugging(key):
    with pytest.raises(ImproperlyConfigured) as error:
        load_config({"DJANGO_SECRET_KEY": key})
    message = str(error.value)
    assert message.startswith("DJANGO_SECRET_KEY:") and "\n" not in message
    assert key not in message
    assert load_config({"DJANGO_SECRET_KEY": key, "DJANGO_DEBUG": "1"}).secret_key == key


def test_manage_py_refuses_a_published_secret_key_in_one_line(tmp_path):
    env = {**fresh_checkout_environment(tmp_path), "DJANGO_SECRET_KEY": PUBLISHED_KEY,
           "DJANGO_DEBUG": "0"}
    result = subprocess.run([sys.executable, "manage.py", "validate_config"], cwd=PROJECT,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stdout
    assert "configuration OK" not in result.stdout
    assert re.fullmatch(r"callfs: configuration error: DJANGO_SECRET_KEY: [^\n]+\n",
                        result.stderr), result.stderr


def test_without_a_secret_key_one_is_generated_once_and_kept(tmp_path):
    path = tmp_path / "var" / "secret_key"
    first = load_config({"DJANGO_SECRET_KEY_FILE": str(path)})
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.secret_key == path.read_text().strip() and len(first.secret_key) >= 50
    assert first.secret_key != PUBLISHED_KEY
    assert first.link_secret == f"link:{first.secret_key}"
    assert load_config({"DJANGO_SECRET_KEY_FILE": str(path)}).secret_key == first.secret_key
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no temp file left
    other = load_config({"DJANGO_SECRET_KEY_FILE": str(tmp_path / "other")}).secret_key
    assert other != first.secret_key  # each installation its own
    explicit = "an-operator-chosen-secret-key-0123456789"
    assert load_config({"DJANGO_SECRET_KEY_FILE": str(tmp_path / "unused"),
                        "DJANGO_SECRET_KEY": explicit}).secret_key == explicit
    assert not (tmp_path / "unused").exists()


def test_processes_starting_together_agree_on_one_generated_key(tmp_path):
    path = tmp_path / "var" / "secret_key"
    keys: list[str] = []
    run_in_threads(*[lambda: keys.append(load_config(
        {"DJANGO_SECRET_KEY_FILE": str(path)}).secret_key)] * 8)
    assert len(keys) == 8 and set(keys) == {path.read_text().strip()}


def test_an_unusable_secret_key_file_is_named_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    blocked = tmp_path / "a-file" / "secret_key"  # its directory cannot be made
    blocked.parent.write_text("")
    published = tmp_path / "published"
    published.write_text(PUBLISHED_KEY + "\n")
    for path in (empty, blocked, published):
        with pytest.raises(ImproperlyConfigured) as error:
            load_config({"DJANGO_SECRET_KEY_FILE": str(path)})
        message = str(error.value)
        assert message.startswith("DJANGO_SECRET_KEY_FILE:") and "\n" not in message


def test_make_run_works_on_a_fresh_checkout_with_a_generated_key(tmp_path):
    """`make run` is migrate, dev_setup, gunicorn: the first makes the key, all use it."""
    env = fresh_checkout_environment(tmp_path)
    key_file = tmp_path / "var" / "secret_key"
    manage(env, "migrate", "--noinput")
    secret = key_file.read_text()
    setup = subprocess.run([sys.executable, "manage.py", "dev_setup"], cwd=PROJECT, env=env,
                           capture_output=True, text=True, timeout=120, check=True)
    api_key = re.search(r"API key \(user admin\): (\S+)", setup.stdout)[1]
    assert str(key_file) in setup.stdout
    assert key_file.read_text() == secret
    check = ("import os; from accounts.keys import authenticate_key; "
             "print(authenticate_key(os.environ['KEY']).username)")
    who = subprocess.run([sys.executable, "manage.py", "shell", "-c", check], cwd=PROJECT,
                         env={**env, "KEY": api_key}, capture_output=True, text=True,
                         timeout=120, check=True)
    assert who.stdout.strip().splitlines()[-1] == "admin"  # after shell's import notice


@pytest.mark.django_db
def test_validate_config_warns_about_any_host_outside_debug(settings):
    def validate(**changes) -> tuple[str, str]:
        settings.CALLFS = dataclasses.replace(settings.CALLFS, **changes)
        out, err = StringIO(), StringIO()
        call_command("validate_config", stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    out, err = validate(allowed_hosts=["*"], debug=False)
    assert "DJANGO_ALLOWED_HOSTS" in err and "CALLFS_EXTERNAL_URL" in err
    assert "configuration OK (1 warning)" in out
    for changes in ({"allowed_hosts": ["files.example.com"], "debug": False},
                    {"allowed_hosts": ["*"], "debug": True}):
        out, err = validate(**changes)
        assert err == "" and out.rstrip().endswith("configuration OK")
    # A generated key is this machine's own: a cluster's nodes would not agree on it.
    out, err = validate(secret_key_file=Path("/srv/callfs/var/secret_key"),
                        internal_secret="cluster-secret-0123456789")
    assert "DJANGO_SECRET_KEY: read from /srv/callfs/var/secret_key" in err
