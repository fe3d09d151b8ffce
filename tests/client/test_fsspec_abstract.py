"""fsspec's own abstract filesystem tests (fsspec.tests.abstract: copy, get, put, open, pipe)
against a live node."""

from __future__ import annotations

import posixpath
import secrets

import pytest
from callfs_client.fsspec_fs import CallFSFileSystem
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

pytestmark = pytest.mark.blackbox


class CallFSFixtures(AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, node):
        filesystem = CallFSFileSystem(url=node.base_url, key=node.alice_key,
                                      skip_instance_cache=True)
        yield filesystem
        filesystem.client.close()

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self, node):
        """A directory of its own for each test."""
        return f"{node.prefix}/abstract-{secrets.token_hex(4)}"


class TestCopy(AbstractCopyTests, CallFSFixtures):
    pass


class TestGet(AbstractGetTests, CallFSFixtures):
    pass


class TestPut(AbstractPutTests, CallFSFixtures):
    pass


class TestOpen(AbstractOpenTests, CallFSFixtures):
    pass


class TestPipe(AbstractPipeTests, CallFSFixtures):
    pass
