"""Operator-facing behaviour: readiness, logs, metrics, configuration, the OpenAPI schema."""

from __future__ import annotations

import dataclasses
import json
import logging
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from callfs_site.config import load_config
from callfs_site.logs import CallFSJsonFormatter, RequestContextFilter, request_id
from tests.helpers import upload


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
    assert body["message"].startswith("redis unavailable")
    assert body["checks"]["database"] == "ok"


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
    """django-prometheus's query counting costs a fifth of a small request: CALLFS_DB_METRICS."""
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
                                          api_keys={"k" * 20: "alice"})
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
