"""Forms of the file browser: they parse input, services decide."""

from __future__ import annotations

import re

from django import forms

from filesystem import paths
from filesystem.exceptions import InvalidPath

_OCTAL_MODE = re.compile(r"0?[0-7]{3,4}")  # as the API's MetadataRequest: "644", "0640", "2770"


class ChmodForm(forms.Form):
    """chmod / chown / chgrp: only the fields that differ from the entry are sent to
    `services.change_metadata`, so an owner who is not an admin can still chmod."""

    mode = forms.CharField(max_length=5, help_text='octal, e.g. "0644" or "2770"')
    owner = forms.CharField(max_length=150, help_text="a user name (superusers only)")
    group = forms.CharField(max_length=150, required=False,
                            help_text="a group name; leave empty to keep the current group")

    def clean_mode(self) -> int:
        value = self.cleaned_data["mode"].strip()
        if not _OCTAL_MODE.fullmatch(value) or int(value, 8) > 0o7777:
            raise forms.ValidationError('must be an octal string such as "0640"')
        return int(value, 8)

    def changes(self, inode) -> dict:
        """The keyword arguments for `services.change_metadata`: what the form changes."""
        data = self.cleaned_data
        changes: dict = {}
        if data["mode"] != inode.mode:
            changes["mode"] = data["mode"]
        if data["owner"] != inode.owner.username:
            changes["owner"] = data["owner"]
        current_group = inode.group.name if inode.group_id else ""
        if data["group"] and data["group"] != current_group:
            changes["group"] = data["group"]
        return changes


class MoveForm(forms.Form):
    """Rename (a bare name stays in the same directory) or move (an absolute path)."""

    destination = forms.CharField(max_length=4096,
                                  help_text="a new name, or an absolute path such as /docs/a.txt")
    overwrite = forms.BooleanField(required=False, help_text="replace an existing entry there")
    create_parents = forms.BooleanField(required=False,
                                        help_text="create missing directories on the way")

    def __init__(self, *args, source: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = source

    def clean_destination(self) -> str:
        value = self.cleaned_data["destination"].strip()
        try:
            if "/" not in value:
                if not paths.is_valid_name(value):
                    raise InvalidPath(f"{value!r} is not a valid name")
                return paths.join(paths.parent_of(self.source), value)
            return paths.canonical(value if value.startswith("/") else "/" + value)
        except InvalidPath as exc:
            raise forms.ValidationError(str(exc.detail)) from None


class DeleteForm(forms.Form):
    recursive = forms.BooleanField(required=False,
                                   help_text="delete a directory with everything below it")


class MkdirForm(forms.Form):
    name = forms.CharField(max_length=255, label="New directory")

    def clean_name(self) -> str:
        value = self.cleaned_data["name"].strip()
        if not paths.is_valid_name(value):
            raise forms.ValidationError(f"{value!r} is not a valid name")
        return value


class SearchForm(forms.Form):
    q = forms.CharField(max_length=255, required=False)
