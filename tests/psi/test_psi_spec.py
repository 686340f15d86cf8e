"""PsiSpec / PsiLink validation and their public, JSON-ready forms."""

from __future__ import annotations

import pytest

from misuan.errors import InvalidInput
from misuan.psi.spec import KeyNormalization, LinkTls, PsiLink, PsiSpec


def test_spec_defaults_and_roundtrip():
    spec = PsiSpec(keys=["id", "name"], normalize=KeyNormalization(casefold=True))
    assert spec.keys == ("id", "name")
    assert spec.protocol == "rr22" and spec.receiver == "both" and spec.join == "inner"
    assert spec.duplicates == "refuse"
    assert PsiSpec.from_dict(spec.to_dict()) == spec
    assert PsiSpec(keys="id").keys == ("id",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keys": ()},
        {"keys": ("id", "id")},
        {"keys": ("",)},
        {"keys": ("id",), "protocol": "naive"},
        {"keys": ("id",), "join": "outer"},
        {"keys": ("id",), "receiver": 2},
        {"keys": ("id",), "receiver": True},
        {"keys": ("id",), "duplicates": "sum"},
        {"keys": ("id",), "ecdh_curve": "p256"},
        {"keys": tuple(f"k{i}" for i in range(17))},
    ],
)
def test_spec_rejects_bad_requests(kwargs):
    with pytest.raises(InvalidInput):
        PsiSpec(**kwargs)


def test_spec_from_dict_rejects_unknown_fields():
    with pytest.raises(InvalidInput):
        PsiSpec.from_dict({"keys": ["id"], "colour": "red"})
    with pytest.raises(InvalidInput):
        PsiSpec.from_dict({"keys": ["id"], "normalize": {"lower": True}})


def test_public_view_hides_column_names_but_counts_them():
    a = PsiSpec(keys=("customer_id",)).public_view("job-1")
    b = PsiSpec(keys=("id",)).public_view("job-1")
    assert a == b
    assert "customer_id" not in repr(a)
    assert a["key_count"] == 1
    assert PsiSpec(keys=("a", "b")).public_view("job-1") != a
    assert "ecdh_curve" in PsiSpec(keys=("a",), protocol="ecdh").public_view("j")


def test_receives():
    assert PsiSpec(keys=("id",)).receives(0) and PsiSpec(keys=("id",)).receives(1)
    one = PsiSpec(keys=("id",), receiver=1)
    assert not one.receives(0) and one.receives(1)


def test_link_validation_and_roundtrip(tmp_path):
    tls = LinkTls(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem")
    link = PsiLink("job-1", 1, ("127.0.0.1:9000", "[::1]:9001"), recv_timeout_ms=5000, tls=tls)
    assert link.peer_rank == 0
    assert PsiLink.from_dict(link.to_dict()) == link
    for bad in (
        dict(job_id="bad id", self_rank=0, addresses=("a:1", "b:2")),
        dict(job_id="j", self_rank=2, addresses=("a:1", "b:2")),
        dict(job_id="j", self_rank=0, addresses=("a:1",)),
        dict(job_id="j", self_rank=0, addresses=("a:1", "a:1")),
        dict(job_id="j", self_rank=0, addresses=("a", "b:2")),
        dict(job_id="j", self_rank=0, addresses=("a:1", "b:70000")),
        dict(job_id="j", self_rank=0, addresses=("a:1", "b:2"), recv_timeout_ms=10),
        dict(job_id="j", self_rank=0, addresses=("a:1", "b:2"), connect_timeout_s=0),
    ):
        with pytest.raises(InvalidInput):
            PsiLink(**bad)
