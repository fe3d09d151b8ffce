"""The OpenAPI schema describes every endpoint, validates, and a bounded schemathesis run against
the live server finds no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.blackbox


def test_schema_lists_every_public_endpoint(server):
    schema = requests.get(f"{server.base_url}/v1/schema/?format=json", timeout=10).json()
    paths = set(schema["paths"])
    assert {"/v1/files/{path}", "/v1/directories/{path}", "/v1/links/generate",
            "/v1/links/", "/v1/links/{id}", "/v1/nodes/", "/download/{token}", "/health",
            "/ready", "/metrics"} <= paths
    put = schema["paths"]["/v1/files/{path}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]
    assert "412" in put["responses"] and "X-CallFS-SHA256" in str(put["parameters"])
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert not any("internal" in path for path in paths)


def test_swagger_ui_is_served_from_local_assets(server):
    page = requests.get(f"{server.base_url}/v1/docs/", timeout=10)
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    assert "cdn" not in page.text.lower()  # the CSP allows 'self' only


def test_schemathesis_finds_no_server_error(server, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", f"{server.base_url}/v1/schema/",
         "-H", f"Authorization: Bearer {server.alice_key}",
         "--checks", "not_a_server_error", "--max-examples", "15", "--workers", "2",
         "--generation-deterministic", "--phases", "examples,fuzzing,stateful",
         "--warnings", "off", "--request-timeout", "10",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "generated" in result.stdout
