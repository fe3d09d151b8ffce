"""The peer backend reads a peer's refusal from the `code` of its JSON error body (issue 22): a
checksum refusal is ChecksumMismatchError, and nothing else is, whatever its text says."""

from __future__ import annotations

import hashlib

import pytest
import requests

from callfs_site.errors import ErrorCode, render_error
from cluster import peers
from filesystem.storage import BackendUnavailable, ChecksumMismatchError
from filesystem.storage.peer import PeerStorage

KEY = "0123456789abcdef0123456789abcdef"
DATA = b"relayed bytes"


def answer(status: int, body: bytes, content_type: str = "application/json"
           ) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = content_type
    response._content = body
    return response


@pytest.fixture
def peer_answers(monkeypatch):
    """Make the peer answer every request with the response put in the returned list."""
    answers: list[requests.Response] = []
    monkeypatch.setattr(peers, "request", lambda *args, **kwargs: answers[0])
    return answers


def write_to_peer() -> None:
    PeerStorage("node-b").write(KEY, [DATA], hashlib.sha256(DATA).hexdigest())


def test_a_checksum_refusal_is_a_checksum_mismatch(peer_answers):
    peer_answers.append(answer(400, render_error(ErrorCode.CHECKSUM_MISMATCH, "bytes differ")))
    with pytest.raises(ChecksumMismatchError):
        write_to_peer()


@pytest.mark.parametrize("refusal", [
    answer(400, render_error(ErrorCode.INVALID_REQUEST, "not CHECKSUM_MISMATCH but close")),
    answer(400, b"CHECKSUM_MISMATCH", content_type="text/plain"),
    answer(400, b'["CHECKSUM_MISMATCH"]'),
    answer(400, b'{"code": "SOMETHING_NEWER", "message": "CHECKSUM_MISMATCH"}'),
], ids=["other code", "plain text", "no object", "unknown code"])
def test_any_other_refusal_is_the_peer_failing(peer_answers, refusal):
    peer_answers.append(refusal)
    with pytest.raises(BackendUnavailable):
        write_to_peer()


def test_the_code_comes_from_the_json_body():
    assert peers.error_code(answer(503, render_error(ErrorCode.LOCK_TIMEOUT, "busy"))) \
        is ErrorCode.LOCK_TIMEOUT
    assert peers.error_code(answer(502, b"<html>Bad Gateway</html>", "text/html")) is None
    assert peers.error_code(answer(400, b'{"message": "no code"}')) is None
