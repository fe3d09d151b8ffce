"""API keys in the admin: create one for a user (shown once), revoke, see last use."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.template.response import TemplateResponse

from accounts import keys
from accounts.forms import ApiKeyCreateForm
from accounts.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "state", "created_at", "last_used_at",
                    "revoked_at")
    list_filter = ("revoked_at", "last_used_at")
    search_fields = ("prefix", "user__username", "name")
    list_select_related = ("user",)
    # `user` stays read-only: moving a key to another user would hand out that user's identity.
    readonly_fields = ("prefix", "user", "created_at", "last_used_at", "revoked_at")
    exclude = ("digest",)  # only a keyed hash is stored; even that stays out of the page
    actions = ["revoke"]

    class Media:
        css = {"all": ["callfs_admin/admin.css"]}

    @admin.display(description="state")
    def state(self, obj):
        return "active" if obj.is_active else "revoked"

    def add_view(self, request, form_url="", extra_context=None):
        """Create a key with `keys.create_api_key` and show it once, on this answer only."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyCreateForm(request.POST if request.method == "POST" else None,
                                creator=request.user)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Create an API key", "subtitle": None, "form": form}
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                api_key, key = keys.create_api_key(  # no flags unless the form offered them
                    data["username"], superuser=data.get("superuser", False),
                    groups=data.get("groups", []), name=data["name"])
            except (keys.ApiKeyError, IntegrityError) as exc:
                messages.error(request, str(exc))
            else:
                self.log_addition(request, api_key,
                                  f"Created API key {api_key.prefix}… for {api_key.user}")
                # admin_view() marks every admin answer never_cache: the key is not kept.
                return TemplateResponse(request, "callfs_admin/apikey_created.html", {
                    **context, "title": "API key created", "api_key": api_key, "key": key})
        return TemplateResponse(request, "callfs_admin/apikey_add.html", context)

    # Revoking changes keys: without `permissions`, anyone who may view the list could do it.
    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        active = list(queryset.filter(revoked_at__isnull=True))
        count = keys.revoke_keys(ApiKey.objects.filter(pk__in=[k.pk for k in active]))
        for api_key in active:
            self.log_change(request, api_key, "Revoked")
        self.message_user(request, f"{count} key(s) revoked", messages.SUCCESS)
