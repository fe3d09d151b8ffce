"""The WSGI handler: Django's, with file requests routed without walking the URL patterns."""

from __future__ import annotations

import functools

from django.core.handlers.wsgi import WSGIHandler
from django.urls import Resolver404, ResolverMatch, URLResolver, get_resolver

FILES_PREFIX = "/v1/files/"


class CallFSWSGIHandler(WSGIHandler):
    """Django resolves a request by trying the URL patterns in order through every level of
    include(), a noticeable part of a small GET's instructions (measured: BENCHMARKS.md). Every
    path under /v1/files/ ends at the files route (the first pattern under v1/, which takes any
    rest of the path), so for those the match is made directly, from the one Django's resolver
    gives for the route."""

    def resolve_request(self, request):
        path = request.path_info
        if not path.startswith(FILES_PREFIX) or hasattr(request, "urlconf"):
            return super().resolve_request(request)  # a per-request URLconf: Django's way
        template = _files_route(get_resolver())
        if template is None:
            return super().resolve_request(request)
        rest = path[len(FILES_PREFIX):]
        match = ResolverMatch(template.func, (), {"path": rest}, template.url_name,
                              template.app_names, template.namespaces, template.route,
                              captured_kwargs={"path": rest}, extra_kwargs={})
        request.resolver_match = match
        return match


@functools.lru_cache(maxsize=4)  # one per URLconf (tests may swap ROOT_URLCONF)
def _files_route(resolver: URLResolver) -> ResolverMatch | None:
    """Django's own match for a path under /v1/files/, which every such path shares but for
    its `path` argument; None in a URLconf where that prefix is not the files route."""
    try:
        match = resolver.resolve(FILES_PREFIX)
    except Resolver404:
        return None
    if match.url_name != "files" or match.args or match.kwargs != {"path": ""}:
        return None
    return match
