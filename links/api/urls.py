"""Routes under /v1/links. `generate` comes before the router, whose detail route would take it
for a link id."""

from django.urls import path

from callfs_site.routers import OptionalSlashRouter
from links.api.views import GenerateLinkView, LinkViewSet

router = OptionalSlashRouter()
router.register("links", LinkViewSet, basename="links")

urlpatterns = [
    path("links/generate", GenerateLinkView.as_view(), name="links-generate"),
    *router.urls,
]
