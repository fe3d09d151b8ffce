"""The SQLite database backend of the embedded default (ENGINE "callfs_site.sqlite"): see base."""
