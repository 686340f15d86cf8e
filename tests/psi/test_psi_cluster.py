"""PSI through the node daemons: client.psi and `misuan psi run` on real clusters."""

import json
import sqlite3
import subprocess
import sys

import pytest

import misuan
from misuan.cluster.local import local_cluster
from tests.conftest import FAST
from tests.psi.psi_helpers import read_csv, reference_key, write_csv

ALICE_KEYS = ["u1", " u2 ", "Ünïcödé", "comma,key", 'quote"key', "東京", "e\u0301", "shared-7", "only-a"]
BOB_KEYS = ["u1", "u2", "Ünïcödé", "comma,key", 'quote"key', "東京", "é", "shared-7", "only-b", "U1"]


@pytest.fixture(scope="module")
def duo(tmp_path_factory):
    with local_cluster(2, dir=tmp_path_factory.mktemp("psi2"), timeouts=FAST, ids=["alice", "bob"]) as lc:
        yield lc


def data_dir(lc, rank: int, who: str = "admin"):
    """The directory on node ``rank`` where ``who``'s PSI inputs live (the operator puts them there)."""
    d = lc.dir / f"node{rank}" / "data" / who
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def files(duo):
    a = write_csv(data_dir(duo, 0) / "a.csv", ["id", "name"], [[k, f"A{i}"] for i, k in enumerate(ALICE_KEYS)])
    b = write_csv(data_dir(duo, 1) / "b.csv", ["customer", "score"], [[k, str(i)] for i, k in enumerate(BOB_KEYS)])
    return a, b


def _expected(keys_a, keys_b):
    ref_b = {reference_key([k]) for k in keys_b}
    return [k for k in keys_a if reference_key([k]) in ref_b]


@pytest.mark.parametrize("protocol", ["rr22", "kkrt", "ecdh"])
def test_exact_intersection_all_protocols(duo, files, tmp_path, protocol):
    client = duo.client()
    a, b = files
    res = client.psi(
        {"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, protocol=protocol, receiver="alice", out=tmp_path / "o.csv"
    )
    header, rows = read_csv(tmp_path / "o.csv")
    assert header == ["id", "name"]
    assert sorted(r[0] for r in rows) == sorted(_expected(ALICE_KEYS, BOB_KEYS))
    assert res.intersection == len(rows) == 8 and res.input_rows == (9, 10)
    assert list(res.outputs) == ["alice"]


def test_both_receive_and_joins(duo, files, tmp_path):
    client = duo.client()
    a, b = files
    res = client.psi({"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, receiver="both", out=tmp_path / "r.csv")
    _, rows_a = read_csv(tmp_path / "r.alice.csv")
    _, rows_b = read_csv(tmp_path / "r.bob.csv")
    assert len(rows_a) == len(rows_b) == 8 and set(res.outputs) == {"alice", "bob"}
    client.psi({"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, receiver="alice", join="difference", out=tmp_path / "d.csv")
    assert [r[0] for r in read_csv(tmp_path / "d.csv")[1]] == ["only-a"]
    client.psi({"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, receiver="alice", join="left", out=tmp_path / "l.csv")
    header, rows = read_csv(tmp_path / "l.csv")
    assert len(rows) == 9 and header[-1] == "psi_matched"


def test_audit_records_counts_never_rows(duo, files, tmp_path):
    client = duo.client()
    a, b = files
    client.psi({"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, receiver="alice", out=tmp_path / "o.csv")
    for rank in (0, 1):
        with sqlite3.connect(duo.dir / f"node{rank}" / "state.db") as c:
            rows = c.execute("SELECT detail FROM audit WHERE op='psi.job'").fetchall()
        assert rows and json.loads(rows[-1][0])["input_rows"] in (9, 10)
        # no key appears anywhere in the node's state dir (database, logs, job dirs);
        # data/ holds the parties' own input files
        for f in (duo.dir / f"node{rank}").rglob("*"):
            if f.is_file() and "data" not in f.relative_to(duo.dir / f"node{rank}").parts[:1]:
                raw = f.read_bytes()
                for key in ("Ünïcödé", "東京", "only-a", "only-b", "comma,key"):
                    assert key.encode() not in raw, f
    # nothing is left in the nodes' job dirs
    assert not [p for r in (0, 1) for p in (duo.dir / f"node{r}" / "psi").glob("*/output.csv")]


def test_bad_inputs_through_the_nodes(duo, files, tmp_path):
    client = duo.client()
    a, b = files
    empty = write_csv(data_dir(duo, 0) / "empty.csv", ["id"], [])
    dup = write_csv(data_dir(duo, 0) / "dup.csv", ["id"], [["x"], ["x"], ["y"]])
    out = tmp_path / "never.csv"
    cases = [
        ({"alice": a, "bob": b}, {"alice": ["nope"], "bob": ["customer"]}, misuan.InvalidInput, "nope"),
        ({"alice": empty, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, misuan.InvalidInput, "(?i)no data rows|empty|header"),
        ({"alice": dup, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, misuan.InvalidInput, "repeat"),
        ({"alice": a, "bob": b}, {"alice": ["id", "name"], "bob": ["customer"]}, misuan.InvalidInput, "key_count"),
        ({"alice": data_dir(duo, 0) / "missing.csv", "bob": b}, {"alice": ["id"], "bob": ["customer"]}, misuan.NotFound, "no such file"),
        ({"alice": "no-such-dataset", "bob": b}, {"alice": ["id"], "bob": ["customer"]}, misuan.NotFound, "no such dataset"),
        ({"carol": a, "bob": b}, ["id"], misuan.InvalidInput, "no party"),
    ]
    for parties, keys, exc, text in cases:
        with pytest.raises(exc, match=text):
            client.psi(parties, keys, receiver="bob", out=out)
        assert not out.exists()  # nothing half-written at the output path
    with pytest.raises(misuan.InvalidInput):
        client.psi({"alice": a, "bob": b}, ["id"], protocol="magic", out=out)
    res = client.psi(
        {"alice": dup, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, duplicates="first", receiver="alice", out=tmp_path / "f.csv"
    )
    assert res.input_rows[0] == 3


def test_input_outside_the_data_dirs_is_refused(tmp_path):
    import tomli_w
    import tomllib

    from misuan.cluster.init import init_cluster

    d = tmp_path / "strict"
    init_cluster(d, parties=2, timeouts=FAST, ids=["alice", "bob"])
    for r in (0, 1):
        p = d / f"node{r}" / "node.toml"
        doc = tomllib.loads(p.read_text())
        doc["node"]["data_dirs"] = [str(tmp_path / "allowed")]
        p.write_text(tomli_w.dumps(doc))
    with local_cluster(2, dir=d) as lc:
        a = write_csv(data_dir(lc, 0) / "a.csv", ["id"], [["x"]])  # data/admin/, but data/ is no longer a data dir
        b = write_csv(data_dir(lc, 1) / "b.csv", ["customer"], [["x"]])
        with pytest.raises(misuan.NotFound, match="no such file in your data directory"):
            lc.client().psi({"alice": a, "bob": b}, {"alice": ["id"], "bob": ["customer"]}, out=tmp_path / "x.csv")


def test_peer_node_down(duo, files, tmp_path):
    import os
    import signal
    import time

    from misuan.cluster.local import up

    client = duo.client()
    pid = int((duo.dir / "node1" / "node.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    try:
        with pytest.raises(misuan.NodeUnavailable, match="node 1"):
            client.psi({"alice": files[0], "bob": files[1]}, {"alice": ["id"], "bob": ["customer"]}, out=tmp_path / "x.csv")
        assert not (tmp_path / "x.csv").exists()
    finally:
        up(duo.dir)


def test_cli(duo, files, tmp_path):
    a, b = files
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "misuan",
            "psi",
            "run",
            "--cluster",
            str(duo.cluster_file),
            "--party",
            f"alice={a}",
            "--party",
            f"bob={b}",
            "--key",
            "id",
            "--protocol",
            "rr22",
            "--receiver",
            "bob",
            "--out",
            str(tmp_path / "cli.csv"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "customer" not in r.stderr  # bob has no 'id' column: one clear line
    assert r.stderr.strip().count("\n") == 0
    a_on_bob = data_dir(duo, 1) / "a.csv"
    a_on_bob.write_bytes(a.read_bytes())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "misuan",
            "psi",
            "run",
            "--cluster",
            str(duo.cluster_file),
            "--party",
            f"alice={a}",
            "--party",
            f"bob={a_on_bob}",
            "--key",
            "id",
            "--receiver",
            "bob",
            "--out",
            str(tmp_path / "cli.csv"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["intersection"] == 9 and res["outputs"] == {"bob": str(tmp_path / "cli.csv")}


def test_data_cli(duo):
    """`misuan data`: register a file on a node, share it, list, revoke, remove."""
    path = write_csv(data_dir(duo, 1) / "cli.csv", ["id"], [["x"], ["y"]])

    def cli(*args):
        r = subprocess.run(
            [sys.executable, "-m", "misuan", "data", *args, "--cluster", str(duo.cluster_file)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    info = json.loads(cli("register", "cli-set", "cli.csv", "--party", "bob", "--json"))
    assert info["ref"] == "admin/cli-set" and info["size_bytes"] == path.stat().st_size
    assert "carol may now use" in cli("grant", "cli-set", "--to", "carol", "--party", "bob")
    shown = json.loads(cli("show", "cli-set", "--party", "1"))
    assert shown["grants"] == [{"to": "carol", "receive": False}]
    assert [d["ref"] for d in json.loads(cli("list", "--party", "bob", "--json"))].count("admin/cli-set") == 1
    assert json.loads(cli("revoke", "cli-set", "--from", "carol", "--party", "bob", "--json"))["had_grant"] is True
    cli("rm", "cli-set", "--party", "bob")
    r = subprocess.run(
        [sys.executable, "-m", "misuan", "data", "show", "cli-set", "--party", "bob", "--cluster", str(duo.cluster_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "no such dataset" in r.stderr and r.stderr.strip().count("\n") == 0
