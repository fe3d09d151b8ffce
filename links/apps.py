from django.apps import AppConfig


class LinksConfig(AppConfig):
    name = "links"
    verbose_name = "Download links"

    def ready(self) -> None:
        from links import signals  # noqa: F401 - connects the receivers
