"""The router every row-list API uses."""

from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """`/v1/links` and `/v1/links/` alike (APPEND_SLASH is off, and upstream's paths have none)."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"
