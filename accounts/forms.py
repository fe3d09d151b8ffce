"""The admin's form for creating an API key: it parses input, `keys.create_api_key` decides."""

from __future__ import annotations

from django import forms


class ApiKeyCreateForm(forms.Form):
    """What `manage.py create_api_key` asks for: the user (created if needed), a label,
    the superuser flag and groups (created if needed). Only a superuser (`creator`) gets all
    of it; any other staff member may create a key for themselves, with no flags."""

    username = forms.CharField(max_length=150)
    name = forms.CharField(max_length=100, required=False, label="Key name",
                           help_text="a label, e.g. the machine or script using the key")
    superuser = forms.BooleanField(required=False,
                                   help_text="make the user a superuser (bypasses permissions)")
    groups = forms.CharField(max_length=1000, required=False,
                             help_text="comma-separated group names; missing groups are created")

    def __init__(self, *args, creator, **kwargs):
        super().__init__(*args, **kwargs)
        self.creator = creator
        if not creator.is_superuser:
            # Either would hand out more than the creator holds. Without the fields, nothing
            # posted under their names reaches cleaned_data (so neither the service).
            del self.fields["superuser"], self.fields["groups"]
            self.fields["username"].initial = creator.get_username()
            self.fields["username"].help_text = "yourself: only superusers create keys for others"

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if not self.creator.is_superuser and username != self.creator.get_username():
            # A key for someone else is their identity (or a new user of one's own making).
            raise forms.ValidationError("only superusers may create keys for other users")
        return username

    def clean_groups(self) -> list[str]:
        return [g.strip() for g in self.cleaned_data["groups"].split(",") if g.strip()]
