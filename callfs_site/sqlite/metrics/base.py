from django_prometheus.db.common import DatabaseWrapperMixin

from callfs_site.sqlite import base


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = base.DurableCursor

    def create_cursor(self, name=None):
        cursor = super().create_cursor(name)  # django-prometheus's counting DurableCursor
        cursor.flush_wal = self._make_durable
        return cursor
