"""callfs_site.handlers: paths under /v1/files/ are matched without Django's URL patterns, to
the same match Django's resolver makes, and answered exactly as through the test client."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import get_resolver

from callfs_site.handlers import CallFSWSGIHandler
from tests.helpers import through_application

MATCH_FIELDS = ("func", "args", "kwargs", "url_name", "app_names", "namespaces", "route",
                "captured_kwargs", "extra_kwargs", "view_name", "_func_path")


@pytest.mark.parametrize("path", [
    "/v1/files/", "/v1/files/a", "/v1/files/a/b/", "/v1/files//double", "/v1/files/../up",
    "/v1/files/é ü/ñ", "/v1/files/line\nbreak", "/v1/files/%2F", "/v1/files/a\\b",
])
def test_a_files_path_gets_the_match_django_would_make(path):
    request = RequestFactory().get("/")
    request.path_info = path
    made = CallFSWSGIHandler().resolve_request(request)
    expected = get_resolver().resolve(path)
    assert request.resolver_match is made
    for field in MATCH_FIELDS:
        assert getattr(made, field) == getattr(expected, field), field


@pytest.mark.parametrize("path", ["/v1/files", "/v1/directories/a", "/health", "/v1/filesx"])
def test_other_paths_are_resolved_by_django(path):
    request = RequestFactory().get("/")
    request.path_info = path
    made = CallFSWSGIHandler().resolve_request(request)
    assert made.url_name == get_resolver().resolve(path).url_name


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["docs/a.txt", "docs/", "docs/missing.txt", "docs/a.txt/x"])
def test_the_application_answers_as_the_test_client_does(auth_client, user_and_key, method,
                                                         path):
    assert auth_client.put("/v1/files/docs/a.txt", data=b"hello",
                           content_type="application/octet-stream").status_code == 201
    expected = auth_client.generic(method, f"/v1/files/{path}")
    status, headers, content = through_application(f"/v1/files/{path}", user_and_key[1],
                                                    method)
    assert status == expected.status_code
    assert content == expected.content
    headers.pop("X-Request-ID")
    assert headers == {name: value for name, value in expected.items()
                       if name != "X-Request-ID"}
