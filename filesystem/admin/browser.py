"""The file browser: admin views over `filesystem.services`, mounted by `InodeAdmin.get_urls()`.

Every change (chmod/chown, rename/move, delete, mkdir) and every download calls the same service
as the API, as `request.user`; a service error becomes an admin error message, never a 500.
Listings are read with the ORM for presentation (backend, node and link counts are not part of
the API's FileInfo), after the same checks the API makes (`stat`, then `r` on the directory);
search shows only entries of directories that pass those checks too.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.contrib import messages
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied as AdminPermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.db.models.functions import Length
from django.http import FileResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path as url_path
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from callfs_site.errors import CallFSError
from filesystem import access, paths, services
from filesystem.admin import display
from filesystem.admin.forms import ChmodForm, DeleteForm, MkdirForm, MoveForm, SearchForm
from filesystem.api.streaming import DOWNLOAD_BLOCK_SIZE
from filesystem.models import Inode, InodeType

PAGE_SIZE = 50
LINKS_SHOWN = 20


class ServiceError(Exception):
    """A service refused; its message has been shown to the admin already."""


@contextmanager
def reporting(request):
    """Turn a CallFSError from a service into an admin error message (and ServiceError)."""
    try:
        yield
    except CallFSError as exc:
        messages.error(request, f"{exc.detail} ({exc.default_code})")
        raise ServiceError from exc


def _active_links(prefix: str = "download_links__") -> Q:
    return Q(**{f"{prefix}used_at__isnull": True, f"{prefix}revoked_at__isnull": True,
                f"{prefix}expires_at__gt": timezone.now()})


def _listable_below(user, directory: Inode) -> list[int] | None:
    """The ids of `directory` and of the directories below it that browse_view would list for
    `user` (`x` on every directory above, as `services.stat` checks, then `r`), given that
    `directory` has passed both; None if the user bypasses permissions."""
    if access.is_admin(user):
        return None
    below = Inode.objects.filter(type=InodeType.DIRECTORY).exclude(pk=directory.pk)
    if not directory.is_root:
        below = below.filter(path__startswith=directory.path + "/")
    listable = [directory.pk]
    entered = {directory.pk} if access.allows(user, directory, access.EXECUTE) else set()
    # Shorter paths first: a directory's parent is decided before it.
    for row in below.order_by(Length("path")).values_list(
            "id", "parent_id", "owner_id", "group_id", "mode", named=True):
        if row.parent_id in entered:
            if access.allows(user, row, access.READ):
                listable.append(row.id)
            if access.allows(user, row, access.EXECUTE):
                entered.add(row.id)
    return listable


class FileBrowserMixin:
    """Views of the browser for a ModelAdmin of `Inode`."""

    browser_page_size = PAGE_SIZE

    def browser_urls(self):
        wrap = self.admin_site.admin_view
        views = {"browse": self.browse_view, "entry": self.entry_view,
                 "download": self.download_view, "chmod": require_POST(self.chmod_view),
                 "move": require_POST(self.move_view), "delete": self.delete_view,
                 "mkdir": require_POST(self.mkdir_view)}
        return [url_path(f"browse/{'' if name == 'browse' else name + '/'}", wrap(view),
                         name=f"filesystem_inode_{name}") for name, view in views.items()]

    # --- helpers --------------------------------------------------------------------------------

    def _require(self, request, *, change: bool = False) -> None:
        allowed = self.has_change_permission(request) if change else \
            self.has_view_permission(request)
        if not allowed:
            raise AdminPermissionDenied

    def _context(self, request, title: str, path: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "subtitle": None,
            "crumbs": [(label, display.browse_url(p)) for label, p in display.breadcrumbs(path)],
            "browse_root_url": display.browse_url(),
            **extra,
        }

    def _path(self, request, source) -> str:
        """The canonical `path` parameter; InvalidPath (400) becomes a message."""
        with reporting(request):
            return paths.canonical(source.get("path") or paths.ROOT)

    def _stat(self, request, path: str) -> Inode:
        with reporting(request):
            return services.stat(request.user, path)

    def _back_to(self, path: str) -> HttpResponseRedirect:
        """After an error: the page of the nearest directory above `path`."""
        return HttpResponseRedirect(display.browse_url(paths.parent_of(path)))

    # --- pages ----------------------------------------------------------------------------------

    def browse_view(self, request):
        """A directory: its subdirectories, then its files, by name; or search results."""
        self._require(request)
        try:
            path = self._path(request, request.GET)
            directory = self._stat(request, path)
            if not directory.is_dir:
                return HttpResponseRedirect(display.entry_url(directory.path))
            with reporting(request):
                access.require_read(request.user, directory)
        except ServiceError:
            if request.GET.get("path", paths.ROOT) in ("", paths.ROOT):
                return TemplateResponse(request, "callfs_admin/browse.html",
                                        self._context(request, "Browse files", paths.ROOT))
            return self._back_to(request.GET.get("path", ""))

        search = SearchForm(request.GET)
        query = search.cleaned_data["q"].strip() if search.is_valid() else ""
        if query:
            entries = Inode.objects.filter(name__icontains=query)
            if not directory.is_root:
                entries = entries.filter(path__startswith=directory.path + "/")
            entries = entries.exclude(pk=directory.pk).order_by("type", "path")
            # Search must not find what browsing would refuse to show.
            listable = _listable_below(request.user, directory)
            if listable is not None:
                entries = entries.filter(parent_id__in=listable)
        else:
            entries = Inode.objects.filter(parent_id=directory.pk).order_by("type", "name")
        entries = entries.select_related("owner", "group").annotate(
            active_links=Count("download_links", filter=_active_links()))
        page = Paginator(entries, self.browser_page_size).get_page(request.GET.get("p"))
        rows = [self._row(entry, directory.path) for entry in page.object_list]
        pages = [(number, None if number == page.paginator.ELLIPSIS else
                  display.browse_url(directory.path, q=query, p=number))
                 for number in page.paginator.get_elided_page_range(page.number)]
        return TemplateResponse(request, "callfs_admin/browse.html", self._context(
            request, f"Browse {directory.path}", directory.path,
            directory=directory, rows=rows, page=page, pages=pages, query=query,
            parent_url=None if directory.is_root else
            display.browse_url(paths.parent_of(directory.path)),
            directory_url=display.entry_url(directory.path),
            mkdir_form=MkdirForm(), mkdir_url=display.action_url("mkdir", directory.path),
            can_change=self.has_change_permission(request),
        ))

    @staticmethod
    def _row(entry: Inode, here: str) -> dict:
        label = entry.name
        if entry.parent_id and paths.parent_of(entry.path) != here:
            label = entry.path[len(here):].lstrip("/")  # search results: relative to here
        return {
            "inode": entry,
            "label": label,
            "url": display.browse_url(entry.path) if entry.is_dir else
            display.entry_url(entry.path),
            "size": "—" if entry.is_dir else display.human_size(entry.size),
            "mode": display.mode_string(entry.type, entry.mode),
        }

    def entry_view(self, request):
        """One file or directory: all its metadata, its links, and the forms that change it."""
        self._require(request)
        try:
            path = self._path(request, request.GET)
            inode = self._stat(request, path)
        except ServiceError:
            return self._back_to(request.GET.get("path", ""))
        return self._render_entry(request, inode)

    def _render_entry(self, request, inode: Inode, **forms):
        links = inode.download_links.select_related("created_by").order_by("-created_at", "-id")
        group = inode.group.name if inode.group_id else ""
        context = self._context(
            request, inode.path, inode.path,
            inode=inode,
            # The API's rule (access.may_see_digest): a digest gives short secrets away.
            sha256=inode.sha256 if access.may_see_digest(request.user, inode) else None,
            mode=display.mode_string(inode.type, inode.mode),
            size=display.human_size(inode.size),
            links=links[:LINKS_SHOWN],
            replicas=inode.replicas.order_by("node_id") if not inode.is_dir else [],
            link_count=links.count(),
            active_link_count=links.filter(_active_links("")).count(),
            links_url=(reverse("admin:links_downloadlink_changelist") + f"?inode={inode.pk}"),
            history_url=reverse("admin:filesystem_inode_history", args=[inode.pk]),
            parent_url=None if inode.is_root else
            display.browse_url(paths.parent_of(inode.path)),
            browse_url=display.browse_url(inode.path) if inode.is_dir else None,
            download_url=None if inode.is_dir else display.action_url("download", inode.path),
            chmod_url=display.action_url("chmod", inode.path),
            move_url=display.action_url("move", inode.path),
            delete_url=display.action_url("delete", inode.path),
            chmod_form=forms.get("chmod_form") or ChmodForm(initial={
                "mode": inode.mode_string, "owner": inode.owner.username, "group": group}),
            move_form=forms.get("move_form") or MoveForm(
                source=inode.path, initial={"destination": inode.path}),
            can_change=self.has_change_permission(request) and not inode.is_root,
        )
        return TemplateResponse(request, "callfs_admin/entry.html", context)

    def download_view(self, request):
        """The file's bytes, streamed by `services.open_file` as the API streams them."""
        self._require(request)
        try:
            path = self._path(request, request.GET)
            with reporting(request):  # an overwrite meanwhile: its new version, whole
                inode, reader = services.on_current_version(
                    lambda: services.stat(request.user, path),
                    lambda inode: (inode, services.open_file(request.user, inode)))
        except ServiceError:
            return HttpResponseRedirect(display.entry_url(request.GET.get("path", "/")))
        response = FileResponse(reader, as_attachment=True, filename=paths.name_of(inode.path),
                                content_type="application/octet-stream")
        response.block_size = DOWNLOAD_BLOCK_SIZE
        response["Content-Length"] = str(inode.size)
        return response

    # --- changes --------------------------------------------------------------------------------

    def _target(self, request) -> Inode:
        self._require(request, change=True)
        return self._stat(request, self._path(request, request.POST))

    @staticmethod
    def _describe(changes: dict, inode: Inode) -> str:
        before = {"mode": inode.mode_string, "owner": inode.owner.username,
                  "group": inode.group.name if inode.group_id else "-"}
        after = {key: (f"{value:04o}" if key == "mode" else value)
                 for key, value in changes.items()}
        return "; ".join(f"{key} {before[key]} → {value}" for key, value in after.items())

    @staticmethod
    def _action_form(request, form) -> None:
        """A form that does not validate: its first error becomes the message."""
        field, errors = next(iter(form.errors.items()))
        messages.error(request, f"{field}: {errors[0]}")
        raise ServiceError

    def chmod_view(self, request):
        try:
            inode = self._target(request)
            form = ChmodForm(request.POST)
            if not form.is_valid():
                return self._render_entry(request, inode, chmod_form=form)
            changes = form.changes(inode)
            if not changes:
                messages.info(request, "Nothing to change.")
                return HttpResponseRedirect(display.entry_url(inode.path))
            with reporting(request):
                services.change_metadata(request.user, inode.path, **changes)
        except ServiceError:
            return HttpResponseRedirect(display.entry_url(request.POST.get("path", "/")))
        message = self._describe(changes, inode)
        self.log_change(request, inode, message)
        messages.success(request, f"{inode.path}: {message}")
        return HttpResponseRedirect(display.entry_url(inode.path))

    def move_view(self, request):
        try:
            inode = self._target(request)
            form = MoveForm(request.POST, source=inode.path)
            if not form.is_valid():
                return self._render_entry(request, inode, move_form=form)
            options = form.cleaned_data
            with reporting(request):
                moved = services.move(request.user, inode.path, options["destination"],
                                      overwrite=options["overwrite"],
                                      create_parents=options["create_parents"])
        except ServiceError:
            return HttpResponseRedirect(display.entry_url(request.POST.get("path", "/")))
        verb = "Renamed" if paths.parent_of(moved.path) == paths.parent_of(inode.path) \
            else "Moved"
        message = f"{verb} {inode.path} to {moved.path}"
        if options["overwrite"]:
            message += " (overwrite allowed)"
        self.log_change(request, moved, message)
        messages.success(request, message)
        return HttpResponseRedirect(display.entry_url(moved.path))

    def delete_view(self, request):
        """GET: a confirmation page (as the admin's own delete); POST: `services.delete`."""
        try:
            if request.method != "POST":
                self._require(request, change=True)
                inode = self._stat(request, self._path(request, request.GET))
                children = Inode.objects.filter(parent_id=inode.pk).count()
                return TemplateResponse(request, "callfs_admin/delete_confirmation.html",
                                        self._context(request, f"Delete {inode.path}",
                                                      inode.path, inode=inode,
                                                      children=children, form=DeleteForm(),
                                                      entry_url=display.entry_url(inode.path),
                                                      delete_url=display.action_url(
                                                          "delete", inode.path)))
            inode = self._target(request)
            form = DeleteForm(request.POST)
            recursive = form.is_valid() and form.cleaned_data["recursive"]
            with reporting(request):
                services.delete(request.user, inode.path, recursive=recursive)
        except ServiceError:
            source = request.POST if request.method == "POST" else request.GET
            return HttpResponseRedirect(display.entry_url(source.get("path", "/")))
        message = f"Deleted {inode.path}" + (" and everything below it" if recursive else "")
        # The row is gone; its log entry keeps the id and path it had.
        LogEntry.objects.log_actions(request.user.pk, [inode], DELETION,
                                     change_message=message, single_object=True)
        messages.success(request, message)
        return HttpResponseRedirect(display.browse_url(paths.parent_of(inode.path)))

    def mkdir_view(self, request):
        try:
            parent = self._target(request)
            form = MkdirForm(request.POST)
            if not form.is_valid():
                self._action_form(request, form)
            target = paths.join(parent.path, form.cleaned_data["name"])
            with reporting(request):
                created_inode, created = services.make_directory(request.user, target)
        except ServiceError:
            return HttpResponseRedirect(display.browse_url(request.POST.get("path", "/")))
        if created:
            self.log_addition(request, created_inode, f"Created directory {target}")
            messages.success(request, f"Created directory {target}")
        else:
            messages.info(request, f"{target} already exists")
        return HttpResponseRedirect(display.browse_url(parent.path))
