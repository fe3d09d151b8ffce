"""Admin pages for inodes and API keys (read-mostly: file changes go through the API)."""

from django.contrib import admin

from filesystem.models import ApiKey, Inode


@admin.register(Inode)
class InodeAdmin(admin.ModelAdmin):
    list_display = ("path", "type", "size", "owner", "group", "mode_string", "mtime", "backend",
                    "node_id")
    list_filter = ("type", "backend", "node_id")
    search_fields = ("path",)
    list_select_related = ("owner", "group")
    readonly_fields = [f.name for f in Inode._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # files are created through the API, which stores their bytes

    def has_delete_permission(self, request, obj=None):
        return False  # deleting a row here would orphan its bytes; use the API

    @admin.display(description="mode")
    def mode_string(self, obj):
        return obj.mode_string


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    readonly_fields = ("prefix", "user", "created_at", "last_used_at")
    exclude = ("digest",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys come from `manage.py create_api_key`, which shows the key once

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked")
