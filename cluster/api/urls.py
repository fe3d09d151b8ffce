from callfs_site.routers import OptionalSlashRouter
from cluster.api.views import NodeViewSet

router = OptionalSlashRouter()
router.register("nodes", NodeViewSet, basename="nodes")

urlpatterns = router.urls
