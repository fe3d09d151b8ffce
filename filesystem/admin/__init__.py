"""The admin of the filesystem app: inodes with the file browser."""

from filesystem.admin.inodes import InodeAdmin

__all__ = ["InodeAdmin"]
