"""Unit tests of the one canonicaliser (API.md §4.3, §15, §16.1 items 7, 13, 14)."""

import pytest

from filesystem import paths
from filesystem.exceptions import InvalidPath

# --- parse(): valid paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "trailing"),
    [
        # The root, however it is spelled, is a directory.
        ("", "/", True),
        ("/", "/", True),
        (".", "/", True),
        ("/.", "/", True),
        ("./", "/", True),
        ("//", "/", True),
        ("a/..", "/", True),
        ("/a/b/../..", "/", True),
        ("/a/./..", "/", True),
        # One leading slash is optional.
        ("a", "/a", False),
        ("/a", "/a", False),
        ("a/b/c.txt", "/a/b/c.txt", False),
        ("/a/b/c.txt", "/a/b/c.txt", False),
        # The trailing slash is the directory flag.
        ("a/", "/a", True),
        ("/a/b/", "/a/b", True),
        # Repeated slashes collapse and the flag survives (§4.3 step 7, §16.1 item 13).
        ("a//b", "/a/b", False),
        ("a//b/", "/a/b", True),
        ("//x", "/x", False),
        ("/a///b////c", "/a/b/c", False),
        # `.` segments vanish; `..` resolves against the preceding segment.
        ("a/b/.", "/a/b", False),
        ("./a/./b", "/a/b", False),
        ("dir/../secret.txt", "/secret.txt", False),
        ("a/b/../c", "/a/c", False),
        ("a/b/../../c/", "/c", True),
        # Free-form names (§4.3): spaces, dots, tabs, unicode, DEL, percent signs.
        ("file with spaces.txt", "/file with spaces.txt", False),
        (".hidden-file", "/.hidden-file", False),
        ("trailing-dots...", "/trailing-dots...", False),
        ("...", "/...", False),
        ("archive.tar.gz", "/archive.tar.gz", False),
        ("tab\there", "/tab\there", False),
        ("del\x7fchar", "/del\x7fchar", False),
        ("caf\u00e9/\u65e5\u672c\u8a9e.txt", "/caf\u00e9/\u65e5\u672c\u8a9e.txt", False),
        ("test\uff0ffile.txt", "/test\uff0ffile.txt", False),
        ("%2e%2e%2fetc%2fpasswd", "/%2e%2e%2fetc%2fpasswd", False),
        ("emoji-\U0001f600", "/emoji-\U0001f600", False),
        # Code points just outside the forbidden bidi ranges are fine.
        ("a\u2029b", "/a\u2029b", False),
        ("a\u202fb", "/a\u202fb", False),
        ("a\u2065b", "/a\u2065b", False),
        ("a\u206ab", "/a\u206ab", False),
    ],
)
def test_parse_canonicalises(raw, path, trailing):
    parsed = paths.parse(raw)
    assert parsed.path == path
    assert parsed.trailing_slash is trailing
    assert parsed.is_root is (path == "/")


# --- parse(): invalid paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # Escapes above the root are rejected, never clamped to `/` (§4.3 step 6, §15).
        "..",
        "/..",
        "../",
        "../etc/passwd",
        "/../etc/passwd",
        "a/../..",
        "a/../../etc/passwd",
        "/a/b/../../../c",
        "./..",
        "a/./../../",
        # Backslash anywhere (§4.3 step 4).
        "a\\b",
        "\\",
        "dir\\..\\secret",
        "test\\file.txt",
        # NUL and C0 controls other than TAB (§4.3 step 5).
        "a\x00b",
        "\x00",
        "a\x01",
        "line\nbreak",
        "carriage\rreturn",
        "esc\x1b",
        "unit\x1f",
        "dir/ok/bad\x08name",
        # Unicode bidi overrides U+202A-U+202E and isolates U+2066-U+2069.
        "evil\u202atxt",
        "evil\u202btxt",
        "evil\u202ctxt",
        "evil\u202dtxt",
        "evil\u202etxt.exe",
        "evil\u2066txt",
        "evil\u2067txt",
        "evil\u2068txt",
        "evil\u2069txt",
    ],
)
def test_parse_rejects(raw):
    with pytest.raises(InvalidPath):
        paths.parse(raw)


@pytest.mark.parametrize("raw", ["a\\b", "a\x00b", "..", "evil\u202etxt"])
def test_canonical_rejects_what_parse_rejects(raw):
    with pytest.raises(InvalidPath):
        paths.canonical(raw)


def test_invalid_path_is_a_400_invalid_path_error():
    with pytest.raises(InvalidPath) as caught:
        paths.parse("../x")
    assert caught.value.status_code == 400
    assert caught.value.default_code == "INVALID_PATH"


# --- length limits (§16.1 item 14) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "valid"),
    [
        ("a" * 255, True),
        ("a" * 256, False),
        ("\u00e9" * 127, True),  # 254 bytes
        ("\u00e9" * 127 + "a", True),  # 255 bytes
        ("\u00e9" * 128, False),  # 256 bytes in 128 characters
        ("\U0001f600" * 63 + "abc", True),  # 255 bytes
        ("\U0001f600" * 64, False),  # 256 bytes in 64 characters
    ],
)
def test_segment_limit_is_255_bytes(segment, valid):
    for raw in (segment, f"dir/{segment}", f"{segment}/file.txt"):
        if valid:
            assert paths.parse(raw).path == f"/{raw}"
        else:
            with pytest.raises(InvalidPath):
                paths.parse(raw)


def _path_of_length(total: int) -> str:
    """An engine path of exactly `total` UTF-8 bytes, no segment over 255 bytes."""
    segments = []
    remaining = total
    while remaining:
        length = min(remaining - 1, 200)
        segments.append("p" * length)
        remaining -= length + 1
    path = "/" + "/".join(segments)
    assert len(path.encode()) == total and all(segments)
    return path


@pytest.mark.parametrize(("total", "valid"), [(4095, True), (4096, True), (4097, False),
                                              (5000, False)])
def test_path_limit_is_4096_bytes(total, valid):
    raw = _path_of_length(total)
    if valid:
        assert paths.canonical(raw) == raw
        assert paths.parse(raw + "/") == paths.ParsedPath(raw, True)
    else:
        with pytest.raises(InvalidPath):
            paths.parse(raw)


def test_path_limit_counts_bytes_not_characters():
    # 16 segments of 85 three-byte characters: 1376 characters, 16 * 256 = 4096 bytes.
    ok = "/" + "/".join(["\u65e5" * 85] * 16)
    assert len(ok.encode()) == 4096
    assert paths.canonical(ok) == ok
    too_long = ok + "/x"
    assert len(too_long) < 4096
    with pytest.raises(InvalidPath):
        paths.parse(too_long)


def test_limits_apply_to_the_canonical_path():
    # `..` resolution happens before the length check of the resulting path.
    raw = _path_of_length(4096) + "/extra/.."
    assert paths.canonical(raw) == _path_of_length(4096)


# --- canonical() ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/b/", "/a/b"),
        ("a//b/", "/a/b"),
        ("/", "/"),
        ("", "/"),
        ("x/../y", "/y"),
        ("/dir/../x", "/x"),
        ("moved/x.txt", "/moved/x.txt"),
    ],
)
def test_canonical_drops_the_directory_flag(raw, expected):
    assert paths.canonical(raw) == expected


def test_canonical_is_idempotent():
    for raw in ("a//b/./c/../d/", "/x", "dir/../secret.txt", "caf\u00e9"):
        once = paths.canonical(raw)
        assert paths.canonical(once) == once


# --- is_valid_name() -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("rn-dst.txt", True),
        ("a", True),
        ("file with spaces.txt", True),
        (".hidden", True),
        ("...", True),
        ("tab\tname", True),
        ("caf\u00e9", True),
        ("x" * 255, True),
        ("\u00e9" * 127 + "a", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("/a", False),
        ("a/", False),
        ("a\\b", False),
        ("a\x00b", False),
        ("a\nb", False),
        ("a\x1fb", False),
        ("evil\u202etxt", False),
        ("evil\u2066txt", False),
        ("x" * 256, False),
        ("\u00e9" * 128, False),
    ],
)
def test_is_valid_name(name, valid):
    assert paths.is_valid_name(name) is valid
