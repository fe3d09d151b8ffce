"""The inode list (one row per file or directory) and, through `get_urls()`, the browser."""

from django.contrib import admin
from django.utils.html import format_html

from filesystem.admin import display
from filesystem.admin.browser import FileBrowserMixin
from filesystem.models import Inode


@admin.register(Inode)
class InodeAdmin(FileBrowserMixin, admin.ModelAdmin):
    list_display = ("path", "open_link", "type", "human_size", "owner", "group", "mode_string",
                    "mtime", "backend", "node_id")
    list_filter = ("type", "backend", "node_id")
    search_fields = ("path",)
    list_select_related = ("owner", "group")
    readonly_fields = [f.name for f in Inode._meta.fields]
    show_full_result_count = False

    class Media:
        css = {"all": ["callfs_admin/admin.css"]}

    def get_urls(self):
        return self.browser_urls() + super().get_urls()  # before the "<object_id>/" catch-all

    def has_add_permission(self, request):
        return False  # files are created through the API or the browser's services

    def has_delete_permission(self, request, obj=None):
        return False  # deleting a row here would orphan its bytes; the browser's delete doesn't

    @admin.display(description="browse")
    def open_link(self, obj):
        url = display.browse_url(obj.path) if obj.is_dir else display.entry_url(obj.path)
        return format_html('<a href="{}">open</a>', url)

    @admin.display(description="size", ordering="size")
    def human_size(self, obj):
        return "—" if obj.is_dir else display.human_size(obj.size)

    @admin.display(description="mode", ordering="mode")
    def mode_string(self, obj):
        return format_html('<span class="callfs-mode">{}</span>',
                           display.mode_string(obj.type, obj.mode))
