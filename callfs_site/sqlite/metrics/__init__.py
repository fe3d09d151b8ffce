"""callfs_site.sqlite with django-prometheus's per-query metrics (CALLFS_DB_METRICS=1)."""
