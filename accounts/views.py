"""Views of the accounts app besides its admin: only where the key admin used to be."""

from urllib.parse import quote

from django.urls import reverse
from django.views.generic import RedirectView


class MovedKeyAdminView(RedirectView):
    """`/admin/filesystem/apikey/…`, bookmarked before API keys moved to this app (issue 22):
    the same page of the key admin, query string included."""

    permanent = True

    def get_redirect_url(self, *args, rest: str = "", **kwargs) -> str:
        url = reverse("admin:accounts_apikey_changelist") + quote(rest)
        query = self.request.META.get("QUERY_STRING", "")
        return f"{url}?{query}" if query else url
