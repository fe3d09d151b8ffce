from django.apps import AppConfig


class FilesystemConfig(AppConfig):
    name = "filesystem"
    verbose_name = "Files"

    def ready(self) -> None:
        import callfs_site.schema  # noqa: F401  (registers the OpenAPI Bearer scheme)
        from filesystem import rows, signals  # noqa: F401 - signals connects the receivers
        from filesystem.models import InodeQuerySet

        InodeQuerySet.fast_rows = rows  # the fast path of inode rows (callfs_site.fastpaths)
