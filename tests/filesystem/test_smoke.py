from tests.helpers import assert_error, body_of, upload


def test_create_read_delete_file(auth_client):
    assert upload(auth_client, "/docs/a.txt", b"hello").status_code == 201
    response = auth_client.get("/v1/files/docs/a.txt")
    assert response.status_code == 200
    assert body_of(response) == b"hello"
    assert response["X-CallFS-Owner"] == "alice"
    assert auth_client.delete("/v1/files/docs/a.txt").status_code == 204
    assert_error(auth_client.get("/v1/files/docs/a.txt"), 404, "FILE_NOT_FOUND")
