"""Admin pages for download links: read-only records plus a revoke action (never a token)."""

from django.contrib import admin

from links import services
from links.models import DownloadLink


@admin.register(DownloadLink)
class DownloadLinkAdmin(admin.ModelAdmin):
    list_display = ("public_id", "path", "created_by", "created_at", "expires_at", "used_at",
                    "revoked_at", "state")
    list_filter = ("expires_at", "used_at", "revoked_at")
    search_fields = ("public_id", "path", "created_by__username")
    list_select_related = ("created_by",)
    readonly_fields = ("public_id", "path", "inode", "created_by", "created_at", "expires_at",
                       "used_at", "revoked_at", "state")
    exclude = ("digest",)
    actions = ["revoke"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # links come from the API, which shows the token once

    def has_change_permission(self, request, obj=None):
        return False  # a link's fields are its contract; revoke it instead

    def has_delete_permission(self, request, obj=None):
        return False  # ended links are removed by `manage.py purge_links`

    def has_revoke_permission(self, request):
        return request.user.has_perm("links.change_downloadlink")

    @admin.display(description="state")
    def state(self, obj):
        return obj.state

    @admin.action(description="Revoke selected links", permissions=["revoke"])
    def revoke(self, request, queryset):
        self.message_user(request, f"{services.revoke_links(queryset)} link(s) revoked")
