"""The admin of the filesystem app: inodes with the file browser, and API keys."""

from filesystem.admin.inodes import InodeAdmin
from filesystem.admin.keys import ApiKeyAdmin

__all__ = ["ApiKeyAdmin", "InodeAdmin"]
