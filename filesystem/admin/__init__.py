"""The admin of the filesystem app: inodes with the file browser, and nodes with their files."""

from filesystem.admin.inodes import InodeAdmin
from filesystem.admin.nodes import NodeAdmin

__all__ = ["InodeAdmin", "NodeAdmin"]
