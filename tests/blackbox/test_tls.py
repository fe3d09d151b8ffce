"""HTTPS: CALLFS_TLS_CERT / CALLFS_TLS_KEY make gunicorn serve TLS (a self-signed certificate
made here with openssl), and HSTS appears only over TLS."""

from __future__ import annotations

import secrets
import subprocess

import pytest
import requests

from tests.blackbox.conftest import _environment
from tests.servers import free_port, manage, start_gunicorn, stop_gunicorn

pytestmark = pytest.mark.blackbox


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("callfs-tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    alice = f"alice-{secrets.token_hex(16)}"
    env = _environment(tmp, port, alice, f"bob-{secrets.token_hex(16)}")
    env.update({"CALLFS_TLS_CERT": str(cert), "CALLFS_TLS_KEY": str(key),
                "CALLFS_WORKERS": "1"})
    manage(env, "migrate", "--noinput")
    base = f"https://127.0.0.1:{port}"
    process = start_gunicorn(env, tmp / "gunicorn.log", base, verify=str(cert))
    try:
        yield base, str(cert), alice, port
    finally:
        stop_gunicorn(process)


def test_https_serves_the_api_with_hsts(tls_server):
    base, cert, alice, _ = tls_server
    health = requests.get(f"{base}/health", verify=cert, timeout=5)
    assert health.status_code == 200
    assert health.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    headers = {"Authorization": f"Bearer {alice}"}
    path = f"tls-{secrets.token_hex(4)}/hello.txt"  # runs may share one PostgreSQL database
    created = requests.put(f"{base}/v1/files/{path}", data=b"over tls", headers=headers,
                           verify=cert, timeout=5)
    assert created.status_code == 201
    # TLS cannot use sendfile(): the download is copied through Python, still exact.
    body = requests.get(f"{base}/v1/files/{path}", headers=headers, verify=cert, timeout=5)
    assert body.content == b"over tls"


def test_plain_http_is_refused_on_the_tls_port(tls_server):
    _, _, _, port = tls_server
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=3)
