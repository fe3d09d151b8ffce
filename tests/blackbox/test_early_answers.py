"""Answers given before the request body was read (401, 403, 409, 412, 413) reach the client
whole: the server reads and discards what the client is still sending (bounded, as nginx's
lingering close) before it closes, so the client's kernel never resets the connection under an
unread answer."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

import pytest

from tests.blackbox.conftest import Server
from tests.blackbox.test_server import TIMEOUT, _parse_response

MiB = 1024 * 1024
BODY = os.urandom(4 * MiB)  # the size: more than the socket buffers hold at once


def _read_answer(sock: socket.socket) -> bytes:
    """Bytes until one whole response has arrived (its Content-Length), or the connection
    ends; a reset before that is the failure this module is about."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _send_at_full_speed(server: Server, head: str, body: bytes = BODY) -> tuple[int, dict]:
    """Send `head` and `body` from one thread while reading the answer on another, as curl
    does; the answer's status and JSON body."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        def send() -> None:
            try:
                sock.sendall(head.encode("latin-1") + body)
            except OSError:  # the server may stop reading once it has answered
                pass

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.2)  # a client busy sending reads its answer a little later
        data = _read_answer(sock)
        with contextlib.suppress(OSError):  # done: the sender stops too
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(TIMEOUT)
    response = _parse_response(data)
    assert len(response.body) == int(response.headers["content-length"]), data[:300]
    return response.status, json.loads(response.body)


@pytest.fixture(scope="module")
def early(server: Server):
    session = server.session()
    assert session.put(server.url("early/exists.bin"), data=b"x", timeout=TIMEOUT).ok
    return server


def _cases(server: Server) -> dict[str, tuple[str, int, str]]:
    """name: (request head without the final CRLF, expected status, expected code)."""
    def head(method: str, path: str, key: str | None, *extra: str,
             length: int = len(BODY)) -> str:
        lines = [f"{method} {server.raw_target(path)} HTTP/1.1", f"Host: {server.host}",
                 f"Content-Length: {length}", *extra]
        if key:
            lines.append(f"Authorization: Bearer {key}")
        return "\r\n".join(lines) + "\r\n"

    alice, bob = server.alice_key, server.bob_key
    return {
        "401 no key": (head("PUT", "early/new.bin", None), 401, "AUTHENTICATION_FAILED"),
        "403 no write": (head("PUT", "early/exists.bin", bob), 403, "PERMISSION_DENIED"),
        "409 exists": (head("POST", "early/exists.bin", alice), 409, "FILE_ALREADY_EXISTS"),
        "412 stale": (head("PUT", "early/exists.bin", alice, 'If-Match: "0000"'), 412,
                      "PRECONDITION_FAILED"),
        "413 too large": (head("PUT", "early/huge.bin", alice, length=20 * 1024**3), 413,
                          "PAYLOAD_TOO_LARGE"),
    }


@pytest.mark.blackbox
@pytest.mark.parametrize("connection", ["keep-alive", "close"])
@pytest.mark.parametrize("case", ["401 no key", "403 no write", "409 exists", "412 stale",
                                  "413 too large"])
def test_an_early_answer_is_read_whole_while_the_body_is_still_coming(early, case, connection):
    head, status, code = _cases(early)[case]
    for _ in range(3):
        got = _send_at_full_speed(early, head + f"Connection: {connection}\r\n\r\n")
        assert got[0] == status and got[1]["code"] == code, got
