"""OpenAPI (drf-spectacular) pieces shared by the apps: the Bearer scheme and the error shape."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from callfs_site.errors import ErrorCode


def error_code_choices() -> list[tuple[str, str]]:
    """Every error code with its meaning (SPECTACULAR_SETTINGS names this set ErrorCodeEnum)."""
    return [(code.value, code.meaning) for code in ErrorCode]


ERROR = inline_serializer("Error", {
    "code": serializers.ChoiceField(choices=error_code_choices(),
                                    help_text="what went wrong, for programs"),
    "message": serializers.CharField(help_text="what went wrong, for people"),
})


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """`{status: Error}` for the error answers an operation documents."""
    described = {400: "invalid input", 401: "missing or wrong API key", 403: "permission denied",
                 404: "not found", 409: "conflict", 412: "precondition failed",
                 413: "body over CALLFS_MAX_UPLOAD_BYTES", 416: "range not satisfiable",
                 429: "rate limit exceeded", 502: "the node holding the bytes is unavailable",
                 503: "lock timeout or a service (database, Redis, storage) unavailable"}
    return {status: OpenApiResponse(ERROR, description=described.get(status, ""))
            for status in statuses}


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API key (manage.py create_api_key) or the internal secret."}


ALIASES = {"/download/", "/v1/files", "/v1/directories", "/metrics/"}


def hide_aliases(endpoints):
    """PREPROCESSING_HOOK: document each operation once. Drop alias routes (the root without a
    trailing slash, `/download/` without a token) and show `/v1/links/{id}` as the spec
    writes it, without the optional trailing slash the router also accepts."""
    documented = []
    for path, regex, method, callback in endpoints:
        if path in ALIASES:
            continue
        if path.endswith("}/"):
            path = path[:-1]
        documented.append((path, regex, method, callback))
    return documented
