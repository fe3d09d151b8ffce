from django.db.backends.sqlite3.base import SQLiteCursorWrapper
from django_prometheus.db.common import DatabaseWrapperMixin

from callfs_site.sqlite import base


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = SQLiteCursorWrapper
