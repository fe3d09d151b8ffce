from django.apps import AppConfig


class FilesystemConfig(AppConfig):
    name = "filesystem"
    verbose_name = "Files"

    def ready(self) -> None:
        import callfs_site.schema  # noqa: F401  (registers the OpenAPI Bearer scheme)
        from filesystem import signals  # noqa: F401 - connects the receivers
