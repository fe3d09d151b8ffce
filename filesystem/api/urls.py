"""Routes under /v1/. `{path}` may hold any character, newlines and slashes included, so the
canonicaliser (not the router) decides what is valid."""

from django.urls import re_path

from filesystem.api.internal import BlobView, UnknownInternalView
from filesystem.api.views import DirectoryView, FileView, UnknownApiView

urlpatterns = [
    re_path(r"^files/(?P<path>[\s\S]*)\Z", FileView.as_view(), name="files"),
    re_path(r"^directories/(?P<path>[\s\S]*)\Z", DirectoryView.as_view(), name="directories"),
    # Without a trailing slash: the root, as upstream (documented once, above).
    re_path(r"^files\Z", FileView.as_view(), name="files"),
    re_path(r"^directories\Z", DirectoryView.as_view(), name="directories"),
    re_path(r"^internal/blobs/(?P<key>[^/]+)\Z", BlobView.as_view(), name="internal-blob"),
    re_path(r"^internal(?:/[\s\S]*)?\Z", UnknownInternalView.as_view(), name="internal-unknown"),
]

fallback = [re_path(r"^[\s\S]*\Z", UnknownApiView.as_view(), name="v1-unknown")]
