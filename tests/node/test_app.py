"""The control API in-process (one node); the cluster tests cover linked sessions."""

import pytest
from fastapi.testclient import TestClient

from misuan.client.transport import SignRequests
from misuan.identity import load_identity, new_identity
from misuan.node.app import create_app
from tests.conftest import node_service


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    with TestClient(create_app(node_service(d)), base_url="http://127.0.0.1") as tc:
        tc.auth = SignRequests(load_identity(d / "admin.key"), "node0")
        yield tc


def test_health_needs_no_token(api):
    r = api.get("/v1/health", auth=None)
    assert r.status_code == 200 and r.json()["protocol"] == "ABY3"


def test_openapi_schema_is_not_served(api):
    assert api.get("/openapi.json", auth=None).status_code == 404
    assert api.get("/openapi.json").status_code == 404


def test_wrong_signature_is_401(api):
    other = SignRequests(new_identity("admin"), "node0")  # a key that is not the admin's
    r = api.get("/v1/status", auth=other)
    assert r.status_code == 401 and r.json()["error"] == "AuthError"
    assert r.headers["www-authenticate"] == "Misuan"
    assert api.get("/v1/status", auth=None).status_code == 401
    assert api.get("/v1/status", auth=None, headers={"Authorization": "Bearer admin.x"}).status_code == 401


def test_malformed_request_is_422_naming_the_field(api):
    r = api.post("/v1/sessions", json={"kind": "run"})
    assert r.status_code == 422 and "session_id" in r.json()["message"]
    r = api.post("/v1/sessions", json={"session_id": "abcdefgh1", "kind": "bogus"})
    assert r.status_code == 422 and "kind" in r.json()["message"]
    r = api.post("/v1/sessions", json={"session_id": "abcdefgh2", "surprise": 1})
    assert r.status_code == 422 and "surprise" in r.json()["message"]
    r = api.post("/v1/sessions/abcdefgh3/run", content=b"x")
    assert r.status_code == 422 and "x-misuan-program-sha256" in r.json()["message"]


def test_unknown_session_is_404(api):
    assert api.delete("/v1/sessions/doesnotexist1").status_code == 404
    r = api.get("/v1/sessions/doesnotexist1/vars/out0")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


def test_session_lifecycle_and_audit(api):
    r = api.post("/v1/sessions", json={"session_id": "lifecycle01"})
    assert r.status_code == 201
    addr = r.json()["link_address"]
    assert addr.startswith("127.0.0.1:")
    st = api.get("/v1/status").json()
    assert [s["id"] for s in st["sessions"]] == ["lifecycle01"]
    # not linked yet: variables cannot be set
    r = api.put("/v1/sessions/lifecycle01/vars/in0", content=b"MSH1")
    assert r.status_code == 409
    # links only to the cluster's own parties and ports
    r = api.post("/v1/sessions/lifecycle01/link", json={"addresses": ["10.1.1.1:1", "127.0.0.1:2", "127.0.0.1:3"]})
    assert r.status_code == 422 and "party 0" in r.json()["message"]
    assert api.post("/v1/sessions", json={"session_id": "lifecycle01"}).status_code == 409
    assert api.delete("/v1/sessions/lifecycle01").json() == {"closed": True}
    assert api.get("/v1/status").json()["sessions"] == []
    ops = [row["op"] for row in api.get("/v1/audit").json()]
    assert "session.open" in ops and "session.close" in ops


def test_other_principal_cannot_see_a_session(api):
    api.post("/v1/sessions", json={"session_id": "privsess01"})
    bob = new_identity("bob")
    assert api.post("/v1/principals", json={"principal": "bob", "public_key": bob.public_key}).status_code == 201
    r = api.delete("/v1/sessions/privsess01", auth=SignRequests(bob, "node0"))
    assert r.status_code == 404
    assert api.delete("/v1/sessions/privsess01").status_code == 200


def test_full_disk_is_a_clear_one_line_error(api):
    """A full disk (e.g. while a model uploads) is answered as 507 with one line, no paths."""
    import errno

    def fill():
        raise OSError(errno.ENOSPC, "No space left on device", "/secret/state/dir/file")

    api.app.add_api_route("/v1/test-disk-full", fill, methods=["GET"])
    r = api.get("/v1/test-disk-full")
    assert r.status_code == 507
    assert r.json() == {"error": "NodeError", "message": "no space left on the node's disk"}
