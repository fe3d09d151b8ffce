"""Admin pages for download links: read-only records, filters and a revoke action (the token is
never stored, so it cannot be shown; the digest is kept off the pages too)."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html

from filesystem.admin import display
from links import services
from links.models import DownloadLink, LinkState


class StateFilter(admin.SimpleListFilter):
    """active, used, expired or revoked, as `DownloadLink.state` computes it."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return LinkState.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        unused = Q(used_at__isnull=True, revoked_at__isnull=True)
        conditions = {
            LinkState.ACTIVE: Q(unused, expires_at__gt=now),
            LinkState.USED: Q(used_at__isnull=False),
            LinkState.EXPIRED: Q(unused, expires_at__lte=now),
            LinkState.REVOKED: Q(revoked_at__isnull=False),
        }
        condition = conditions.get(self.value())
        return queryset if condition is None else queryset.filter(condition)


@admin.register(DownloadLink)
class DownloadLinkAdmin(admin.ModelAdmin):
    list_display = ("public_id", "file", "created_by", "created_at", "expires_at", "state")
    list_filter = (StateFilter, ("created_by", admin.RelatedOnlyFieldListFilter), "expires_at",
                   "used_at", "revoked_at")
    search_fields = ("public_id", "path", "created_by__username")
    list_select_related = ("created_by",)
    readonly_fields = ("public_id", "path", "inode", "created_by", "created_at", "expires_at",
                       "used_at", "revoked_at", "state")
    exclude = ("digest",)
    actions = ["revoke"]
    show_full_result_count = False

    class Media:
        css = {"all": ["callfs_admin/admin.css"]}

    def has_add_permission(self, request):
        return False  # links come from the API, which shows the token once

    def has_change_permission(self, request, obj=None):
        return False  # a link's fields are its contract; revoke it instead

    def has_delete_permission(self, request, obj=None):
        return False  # ended links are removed by `manage.py purge_links`

    def has_revoke_permission(self, request):
        return request.user.has_perm("links.change_downloadlink")

    @admin.display(description="path", ordering="path")
    def file(self, obj):
        return format_html('<a href="{}">{}</a>', display.entry_url(obj.path), obj.path)

    @admin.display(description="state")
    def state(self, obj):
        state = obj.state
        return format_html('<span class="callfs-badge callfs-link-{}">{}</span>', state, state)

    @admin.action(description="Revoke selected links", permissions=["revoke"])
    def revoke(self, request, queryset):
        revocable = list(queryset.filter(used_at__isnull=True, revoked_at__isnull=True))
        count = services.revoke_links(queryset)
        for link in revocable:
            self.log_change(request, link, f"Revoked the link to {link.path}")
        self.message_user(request, f"{count} link(s) revoked", messages.SUCCESS)
