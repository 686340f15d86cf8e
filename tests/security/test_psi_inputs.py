"""Issue 18, finding 3 (and finding 9's PSI part): a PSI job reads only a dataset
its owner registered on that node, for the owner or a principal the owner granted.

Real 2-node clusters; every principal other than the node admin comes from
``client_as``. The attack of the issue is replayed as it was run: a principal
with no grants names another principal's mode-0600 CSV as its own input, makes
itself the receiver of a ``left`` join and would get the whole file back.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

import misuan
from misuan.cluster.local import local_cluster
from misuan.psi.client import dataset_grant, dataset_list, dataset_register, dataset_remove, dataset_revoke, dataset_show, psi_create
from tests.conftest import FAST, client_as
from tests.psi.psi_helpers import read_csv, write_csv

VICTIM, MALLORY, PARTNER = "hospital", "mallory", "partner"
SSN_ROWS = [[f"{100 + i:03d}-55-{1000 + i:04d}", f"patient {i}"] for i in range(20)]
SPEC = {"keys": ["ssn"], "receiver": 0, "join": "left"}


@pytest.fixture(scope="module")
def duo(tmp_path_factory):
    with local_cluster(2, dir=tmp_path_factory.mktemp("psisec"), timeouts=FAST, ids=["alice", "bob"]) as lc:
        yield lc


def user_file(lc, rank: int, who: str, name: str, header, rows, mode: int = 0o600):
    """A CSV the operator of node ``rank`` put into ``who``'s data directory."""
    d = lc.dir / f"node{rank}" / "data" / who
    d.mkdir(parents=True, exist_ok=True)
    path = write_csv(d / name, header, rows)
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def victim(duo):
    """The victim's mode-0600 SSN file on node 0 (alice), registered by its owner as ``patients``."""
    path = user_file(duo, 0, VICTIM, "ssn.csv", ["ssn", "name"], SSN_ROWS)
    dataset_register(client_as(duo, VICTIM).nodes[0], "patients", str(path))
    return path


def test_attack_left_join_with_self_as_receiver_is_refused(duo, victim, tmp_path):
    """The issue's attack: no grants, victim's file as input, self as receiver, ``left`` join."""
    probe = user_file(duo, 1, MALLORY, "probe.csv", ["ssn"], [["000-00-0000"]])
    mallory = client_as(duo, MALLORY)
    out = tmp_path / "stolen.csv"
    with pytest.raises(misuan.NotFound):
        mallory.psi({"alice": victim, "bob": probe}, ["ssn"], receiver="alice", join="left", out=out)
    with pytest.raises(misuan.NotFound):  # by the dataset's name instead of its path
        mallory.psi({"alice": f"{VICTIM}/patients", "bob": probe}, ["ssn"], receiver="alice", join="left", out=out)
    assert not out.exists()


def _refusal(call) -> str:
    with pytest.raises(misuan.NotFound) as info:
        call()
    return str(info.value)


def test_unknown_and_forbidden_answer_the_same(duo, victim):
    mallory = client_as(duo, MALLORY).nodes[0]
    jobs = iter(f"oracle{i:04d}" for i in range(100))
    answers = {
        _refusal(lambda ref=ref: psi_create(mallory, next(jobs), 0, SPEC, ref))
        for ref in (f"{VICTIM}/patients", f"{VICTIM}/nope", "nobody/patients", "patients")
    }
    answers |= {_refusal(lambda o=o: dataset_show(mallory, "patients", owner=o)) for o in (VICTIM, "nobody")}
    assert len(answers) == 1, answers  # one answer whether the dataset exists or not
    assert [d for d in dataset_list(mallory) if d["owner"] == VICTIM] == []
    # a raw path is not a PSI input any more: the field is refused before anything is looked up
    with pytest.raises(misuan.InvalidInput):
        mallory.request("POST", "/v1/psi/jobs", json={"job_id": "rawpath0001", "rank": 0, "spec": SPEC, "input_path": str(victim)})


def test_only_files_in_ones_own_directory_can_be_registered(duo, victim, tmp_path):
    own = duo.dir / "node0" / "data" / MALLORY
    own.mkdir(parents=True, exist_ok=True)
    (own / "passwd.csv").unlink(missing_ok=True)
    (own / "passwd.csv").symlink_to("/etc/passwd")
    (own / "theirs.csv").unlink(missing_ok=True)
    (own / "theirs.csv").symlink_to(victim)
    (own / "sub").mkdir(exist_ok=True)
    fifo = own / "pipe.csv"
    if not fifo.exists():
        os.mkfifo(fifo)
    node = client_as(duo, MALLORY).nodes[0]
    paths = [
        "/etc/passwd",
        "/etc/no-such-file",
        str(victim),
        str(victim.parent / "nope.csv"),
        f"../{VICTIM}/ssn.csv",
        str(own / "passwd.csv"),
        str(own / "theirs.csv"),
        "theirs.csv",
        str(own / "sub"),
        str(fifo),
        str(own),
        str(duo.dir / "node0" / "node.toml"),
        str(duo.dir / "node0" / "storage.key"),
    ]
    answers = {_refusal(lambda p=p: dataset_register(node, "grab", p)) for p in paths}
    assert len(answers) == 1 and "no such file in your data directory" in answers.pop()
    # a file of one's own registers, pinned by its hash, relative or absolute
    mine = user_file(duo, 0, MALLORY, "mine.csv", ["ssn"], [["1"]])
    info = dataset_register(node, "mine", "mine.csv")
    assert info["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest() and info["owner"] == MALLORY
    with pytest.raises(misuan.Conflict):
        dataset_register(node, "mine", str(mine))
    dataset_remove(node, "mine")


def test_grants_separate_use_from_receiving_the_rows(duo, victim, tmp_path):
    theirs = {r[0] for r in SSN_ROWS}
    q_rows = [[SSN_ROWS[3][0]], [SSN_ROWS[7][0]], ["999-99-9999"]]
    query = user_file(duo, 1, PARTNER, "q.csv", ["ssn"], q_rows)
    partner, owner = client_as(duo, PARTNER), client_as(duo, VICTIM).nodes[0]
    ref = f"{VICTIM}/patients"
    dataset_grant(owner, "patients", PARTNER)  # use, not receive
    res = partner.psi({"alice": ref, "bob": query}, ["ssn"], receiver="bob", out=tmp_path / "mine.csv")
    assert res.intersection == 2
    assert sorted(r[0] for r in read_csv(tmp_path / "mine.csv")[1]) == sorted(r[0] for r in q_rows if r[0] in theirs)
    for receiver in ("alice", "both"):  # receiving on alice's side would hand the partner the victim's rows
        with pytest.raises(misuan.PermissionDenied, match="receive grant"):
            partner.psi({"alice": ref, "bob": query}, ["ssn"], receiver=receiver, join="left", out=tmp_path / "rows.csv")
    assert not list(tmp_path.glob("rows*.csv"))
    dataset_grant(owner, "patients", PARTNER, receive=True)
    res = partner.psi({"alice": ref, "bob": query}, ["ssn"], receiver="alice", out=tmp_path / "rows.csv")
    assert res.output_rows == {"alice": 2}
    assert dataset_revoke(owner, "patients", PARTNER)
    with pytest.raises(misuan.NotFound, match="no such dataset"):
        partner.psi({"alice": ref, "bob": query}, ["ssn"], receiver="bob", out=tmp_path / "again.csv")


def _audit(duo, rank: int, job_id: str) -> dict:
    with sqlite3.connect(duo.dir / f"node{rank}" / "state.db") as c:
        rows = c.execute("SELECT op, status, detail FROM audit WHERE asset=?", (f"psi:{job_id}",)).fetchall()
    return {op: (status, json.loads(detail)) for op, status, detail in rows}


def test_audit_rows_carry_the_input_hash_and_a_changed_file_is_refused(duo, victim, tmp_path):
    hospital = client_as(duo, VICTIM)
    other = user_file(duo, 1, VICTIM, "other.csv", ["ssn"], [[SSN_ROWS[0][0]]])
    res = hospital.psi({"alice": "patients", "bob": other}, ["ssn"], receiver="alice", out=tmp_path / "o.csv")
    for rank, path, ref in ((0, victim, f"{VICTIM}/patients"), (1, other, None)):
        rows = _audit(duo, rank, res.job_id)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert rows["psi.start"][1]["input_sha256"] == digest
        status, detail = rows["psi.job"]
        assert status == "done" and detail["input_sha256"] == detail["snapshot_sha256"] == digest
        assert ref is None or detail["dataset"] == ref
    # same size, other content: the node's snapshot no longer hashes to the registered value
    original = victim.read_bytes()
    victim.write_bytes(original.replace(b"100-55-1000", b"100-55-1001"))
    try:
        with pytest.raises(misuan.InvalidInput, match="changed since it was registered"):
            hospital.psi({"alice": "patients", "bob": other}, ["ssn"], receiver="alice", out=tmp_path / "x.csv")
        assert not (tmp_path / "x.csv").exists()
        victim.write_bytes(original + b"123-45-6789,late\n")  # another size: refused before any link opens
        with pytest.raises(misuan.Conflict, match="register it again"):
            hospital.psi({"alice": "patients", "bob": other}, ["ssn"], receiver="alice", out=tmp_path / "x.csv")
    finally:
        victim.write_bytes(original)


def test_malformed_psi_requests_are_4xx_with_a_message(duo, victim):
    node = client_as(duo, MALLORY).nodes[0]
    jobs = iter(f"malformed{i:03d}" for i in range(100))
    bad_specs = [
        {"keys": 5},
        {"keys": [5]},
        {"keys": None},
        {"keys": ["ssn"], "normalize": 5},
        {"keys": ["ssn"], "protocol": ["rr22"]},
        5,
        [],
        "x",
    ]
    for spec in bad_specs:
        with pytest.raises(misuan.InvalidInput):
            node.request("POST", "/v1/psi/jobs", json={"job_id": next(jobs), "rank": 0, "spec": spec, "dataset": "x"})
    for ref in ("x\0y", "a" * 5000, "", "../../etc/passwd", "/etc/passwd"):
        with pytest.raises(misuan.InvalidInput):
            psi_create(node, next(jobs), 0, {"keys": ["ssn"]}, ref)
    for path in ("/etc/\0passwd", "/" + "a" * 5000, "/" + "b" * 300 + "/x.csv", ""):
        with pytest.raises(misuan.InvalidInput) as info:
            dataset_register(node, "grab", path)
        assert str(info.value).strip()
    for name in ("../x", "x\0y", "a" * 65):
        with pytest.raises(misuan.InvalidInput):
            dataset_register(node, name, "mine.csv")
    with pytest.raises(misuan.InvalidInput):
        dataset_show(node, "x%00y")  # a NUL in the URL path
    with pytest.raises(misuan.InvalidInput):
        node.request("PUT", "/v1/datasets/x/grants/Not A Principal")
    assert node.health()["ok"]


def test_cluster_init_exposes_no_file_system(tmp_path):
    """`cluster init` used to give local nodes data_dirs = ["/"]; now every node reads only its own data/."""
    import tomllib

    from misuan.cluster.init import init_cluster
    from misuan.config import load_node

    init_cluster(tmp_path / "c", parties=2, timeouts=FAST)
    for rank in (0, 1):
        nd = tmp_path / "c" / f"node{rank}"
        assert tomllib.loads((nd / "node.toml").read_text())["node"]["data_dirs"] == ["data"]
        assert load_node(nd / "node.toml").data_dirs == ((nd / "data").resolve(),) and (nd / "data").is_dir()
