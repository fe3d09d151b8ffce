"""callfs_site.headers.set_headers gives exactly what Django's own header assignment gives."""

import pytest
from django.http import BadHeaderError, HttpResponse

from callfs_site.headers import set_headers

VALUES = ["file", "4096", "", "bytes 0-99/1000", '"0123abcd"', "a\tb", "Jürgen", "名前",
          "Thu, 03 Dec 2026 15:47:49 GMT"]


@pytest.mark.parametrize("value", VALUES)
def test_the_same_headers_as_djangos_assignment(value):
    ours, djangos = HttpResponse(), HttpResponse()
    set_headers(ours, {"X-CallFS-Owner": value})
    djangos["X-CallFS-Owner"] = value
    assert list(ours.items()) == list(djangos.items())
    assert ours["x-callfs-owner"] == djangos["X-CallFS-Owner"]  # names stay case-insensitive


@pytest.mark.parametrize("value", ["evil\r\nSet-Cookie: a=b", "line\nbreak", "cr\ronly"])
def test_line_breaks_are_refused_as_django_refuses_them(value):
    with pytest.raises(BadHeaderError):
        set_headers(HttpResponse(), {"X-CallFS-Group": value})


def test_a_header_set_again_replaces_the_first():
    response = HttpResponse(content_type="text/plain")
    set_headers(response, {"content-type": "application/json", "X-A": "1"})
    set_headers(response, {"X-A": "2"})
    assert response["Content-Type"] == "application/json"
    assert [value for name, value in response.items() if name.lower() == "x-a"] == ["2"]
