"""Top-level routes: /v1 (files, directories), /health, /metrics, /admin."""

from django.contrib import admin
from django.urls import include, path, re_path

from callfs_site.views import HealthView, MetricsView
from filesystem.api import urls as filesystem_urls
from filesystem.api.views import UnknownApiView

urlpatterns = [
    path("health", HealthView.as_view(), name="health"),
    re_path(r"^metrics/?\Z", MetricsView.as_view(), name="metrics"),
    # Unknown /v1 URLs authenticate first, then 404 (upstream), so the fallback comes last.
    path("v1/", include([*filesystem_urls.urlpatterns, *filesystem_urls.fallback])),
    re_path(r"^v1\Z", UnknownApiView.as_view(), name="v1-unknown"),
    path("admin/", admin.site.urls),
]

handler404 = "callfs_site.views.not_found"
handler500 = "callfs_site.views.server_error"
