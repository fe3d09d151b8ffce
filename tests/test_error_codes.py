"""One registry of error codes (callfs_site.errors.ErrorCode): every exception class takes its
code from it, and the OpenAPI schema documents each of its members."""

from __future__ import annotations

import json

import pytest

import filesystem.exceptions  # noqa: F401 - each app's error classes, for the walk below
import links.exceptions  # noqa: F401
from callfs_site.errors import CallFSError, ErrorCode, render_error


def error_classes(base: type = CallFSError):
    """`base` and every class below it, wherever defined."""
    yield base
    for subclass in base.__subclasses__():
        yield from error_classes(subclass)


@pytest.mark.parametrize("error_class", sorted(set(error_classes()), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_exception_class_takes_its_code_from_the_registry(error_class):
    assert isinstance(error_class.default_code, ErrorCode)
    assert error_class().detail.code is error_class.default_code


def test_codes_go_on_the_wire_as_their_plain_names():
    assert json.loads(render_error(ErrorCode.LOCK_TIMEOUT, "busy")) == {
        "code": "LOCK_TIMEOUT", "message": "busy"}
    assert all(code.value == code.name for code in ErrorCode)


def test_the_openapi_schema_documents_every_code(api_client):
    schema = api_client.get("/v1/schema/?format=json").json()
    components = schema["components"]["schemas"]
    code = components["Error"]["properties"]["code"]
    assert code["allOf"] == [{"$ref": "#/components/schemas/ErrorCodeEnum"}]
    documented = components["ErrorCodeEnum"]
    assert documented["enum"] == [member.value for member in ErrorCode]
    for member in ErrorCode:
        assert member.meaning
        assert f"* `{member}` - {member.meaning}" in documented["description"]
