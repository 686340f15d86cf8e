import pytest

from misuan.errors import AuthError, InvalidInput
from misuan.node.auth import issue_token, principal_of

SECRET = b"s" * 64


def test_token_roundtrip():
    assert principal_of(SECRET, issue_token(SECRET, "alice")) == "alice"


@pytest.mark.parametrize("token", [None, "", "alice", "alice.", "alice.AAAA", "Alice.x", issue_token(b"other", "alice")])
def test_bad_tokens(token):
    with pytest.raises(AuthError):
        principal_of(SECRET, token)


def test_principal_names():
    with pytest.raises(InvalidInput):
        issue_token(SECRET, "../root")
