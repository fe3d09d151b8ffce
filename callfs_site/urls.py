"""Top-level routes: /v1 (files, directories, links), /download, /health, /metrics, /admin."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.negotiation import DefaultContentNegotiation

from accounts.views import MovedKeyAdminView
from callfs_site.views import HealthView, MetricsView
from cluster.api import urls as cluster_urls
from filesystem.api import urls as filesystem_urls
from filesystem.api.views import UnknownApiView
from filesystem.views import ReadyView
from links.api import urls as links_urls
from links.views import DownloadView

urlpatterns = [
    # /v1 first: file requests are most of the traffic, and every pattern tried costs time.
    # Unknown /v1 URLs authenticate first, then 404 (upstream), so the fallback comes last.
    path("v1/", include([
        *filesystem_urls.urlpatterns, *links_urls.urlpatterns, *cluster_urls.urlpatterns,
        # DRF's negotiation here (not our JSON-only one): ?format=json and Accept pick YAML/JSON.
        path("schema/", SpectacularAPIView.as_view(
            content_negotiation_class=DefaultContentNegotiation), name="schema"),
        path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
        *filesystem_urls.fallback])),
    re_path(r"^v1\Z", UnknownApiView.as_view(), name="v1-unknown"),
    path("health", HealthView.as_view(), name="health"),
    path("ready", ReadyView.as_view(), name="ready"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("metrics/", MetricsView.as_view(), name="metrics"),
    path("download/<str:token>", DownloadView.as_view(), name="download"),
    path("download/", DownloadView.as_view(), name="download"),  # empty token: 400 (§7.12)
    # API keys were the filesystem app's before issue 22: old bookmarks of their admin still work.
    re_path(r"^admin/filesystem/apikey/(?P<rest>.*)\Z", MovedKeyAdminView.as_view()),
    path("admin/", admin.site.urls),
]

handler404 = "callfs_site.views.not_found"
handler500 = "callfs_site.views.server_error"
