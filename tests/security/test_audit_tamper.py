"""Issue 18, finding 6: one operator rewrites its node's audit chain.

The attacker runs node 0 and holds its state dir. After a client has worked
with the cluster, they stop the node and rewrite ``state.db`` three ways,
recomputing every hash so the chain is self-consistent again:

* edit a row (the client's ``session.open`` now names someone else),
* drop the last rows (from the client's last operation on),
* delete a middle row, renumber the later rows and rehash.

Each passed ``misuan audit verify`` before the fix. Now node 0 signs its heads
with its own key, nodes 1 and 2 record node 0's signed heads in their chains,
and the client keeps node 0's signed receipts; verify finds every rewrite from
the peers' records alone and from the client's receipts alone, and the
untampered copy still verifies. Real node processes throughout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST

#: peers fetch each other's heads every half second here (default 15 s)
TIMEOUTS = dataclasses.replace(FAST, audit_peer_s=0.5)
_COLS = "seq, ts, op, asset, requester, bytes_in, bytes_out, status, detail"


def _last_op(db: Path) -> int:
    """Seq of a node's last row that is not a peer-head record."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT MAX(seq) FROM audit WHERE op != 'audit.peer_head'").fetchone()[0] or 0
    finally:
        conn.close()


def _peer_heads_of(db: Path, party: str) -> list[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT detail FROM audit WHERE op='audit.peer_head' AND asset=? AND status='ok'", (f"party:{party}",)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [json.loads(d)["seq"] for (d,) in rows]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A cluster the client used; stopped once nodes 1 and 2 recorded node 0's head."""
    from misuan.cluster.local import local_cluster

    d = tmp_path_factory.mktemp("audit")
    with local_cluster(3, dir=d, timeouts=TIMEOUTS) as lc:
        c = lc.client()
        for k in range(3):
            assert c.run(lambda a: a + 1.0, np.full(3, k, np.float32))[0] == pytest.approx(k + 1.0, abs=1e-3)
        last = c.audit(1)[0][-1]["seq"]  # node 0's head right after the client's last operation
        deadline, seen = time.monotonic() + 20, False
        while not seen and time.monotonic() < deadline:
            time.sleep(0.25)
            seen = all(max(_peer_heads_of(d / f"node{r}" / "state.db", "node0"), default=0) >= last for r in (1, 2))
        # every node has caught up with every peer's last operation (e.g. the session closes
        # on nodes 1 and 2 that came after node 0's head): only then is the cluster idle
        pairs = [(r, q) for r in range(3) for q in range(3) if q != r]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
            max(_peer_heads_of(d / f"node{r}" / "state.db", f"node{q}"), default=0) >= _last_op(d / f"node{q}" / "state.db")
            for r, q in pairs
        ):
            time.sleep(0.25)
        idle = [len(_peer_heads_of(d / f"node{r}" / "state.db", f"node{q}")) for r, q in pairs]
        time.sleep(2.0)  # 4 rounds with nothing new: no node may record anything
        idle_after = [len(_peer_heads_of(d / f"node{r}" / "state.db", f"node{q}")) for r, q in pairs]
    return {"dir": d, "last": last, "seen": seen, "idle": (idle, idle_after)}


def _copy(src: Path, dst: Path, nodes=(0, 1, 2), receipts=True) -> Path:
    dst.mkdir()
    shutil.copy(src / "cluster.toml", dst / "cluster.toml")
    for r in nodes:
        (dst / f"node{r}").mkdir()
        with sqlite3.connect(src / f"node{r}" / "state.db") as s, sqlite3.connect(dst / f"node{r}" / "state.db") as t:
            s.backup(t)
    if receipts and (src / "receipts").is_dir():
        shutil.copytree(src / "receipts", dst / "receipts")
    return dst


def _rehash(conn: sqlite3.Connection) -> None:
    """The attacker's tool: recompute every prev_hash and hash from the first row."""
    prev = "0" * 64
    for row in conn.execute(f"SELECT {_COLS} FROM audit ORDER BY seq").fetchall():
        h = hashlib.sha256((prev + json.dumps(list(row), separators=(",", ":"), ensure_ascii=True)).encode()).hexdigest()
        conn.execute("UPDATE audit SET prev_hash=?, hash=? WHERE seq=?", (prev, h, row[0]))
        prev = h


def _first(conn, op: str, last: bool = False) -> int:
    order = "DESC" if last else "ASC"
    return conn.execute(f"SELECT seq FROM audit WHERE op=? ORDER BY seq {order} LIMIT 1", (op,)).fetchone()[0]


def edit_and_rehash(conn) -> None:
    conn.execute("UPDATE audit SET requester='mallory' WHERE seq=?", (_first(conn, "session.open"),))
    _rehash(conn)


def drop_last_rows(conn) -> None:
    conn.execute("DELETE FROM audit WHERE seq >= ?", (_first(conn, "session.close", last=True),))


def delete_renumber_rehash(conn) -> None:
    k = _first(conn, "session.close")
    conn.execute("DELETE FROM audit WHERE seq=?", (k,))
    conn.execute("UPDATE audit SET seq = -(seq - 1) WHERE seq > ?", (k,))
    conn.execute("UPDATE audit SET seq = -seq WHERE seq < 0")
    _rehash(conn)


def _verify(d: Path) -> tuple[int, dict]:
    r = subprocess.run(
        [sys.executable, "-m", "misuan", "audit", "verify", "--dir", str(d), "--json"], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    return r.returncode, {n["path"].split("/")[-2]: n for n in json.loads(r.stdout)}


def test_peers_record_each_others_heads_and_stay_quiet_when_idle(recorded):
    assert recorded["seen"], "nodes 1 and 2 never recorded node 0's head after the client's last operation"
    before, after = recorded["idle"]
    assert all(n > 0 for n in before) and before == after


def test_client_kept_signed_receipts(recorded):
    from misuan.audit_heads import read_pins, read_receipts

    rdir = recorded["dir"] / "receipts"
    pins = read_pins(rdir)
    assert sorted(pins) == ["node0", "node1", "node2"]
    for r in range(3):
        assert pins[f"node{r}"] == (recorded["dir"] / f"node{r}" / "audit.pub").read_text().strip()
        heads = read_receipts(rdir / f"node{r}.receipts", "misuan", f"node{r}")
        for h in heads:
            h.verify(pins[f"node{r}"])
        assert heads and max(h.seq for h in heads) >= (recorded["last"] if r == 0 else 1)


def test_untampered_copy_verifies(recorded, tmp_path):
    rc, rep = _verify(_copy(recorded["dir"], tmp_path / "ok"))
    assert rc == 0 and all(n["ok"] for n in rep.values()), rep
    assert all(n["peer_heads"] >= 2 and n["receipts"] >= 1 for n in rep.values()), rep


@pytest.mark.parametrize("tamper", [edit_and_rehash, drop_last_rows, delete_renumber_rehash])
@pytest.mark.parametrize("evidence", ["peers", "receipts"])
def test_rewritten_chain_is_found(recorded, tmp_path, tamper, evidence):
    # peers: every node's db, no client receipts; receipts: node 0's db and the client's receipts only
    d = _copy(recorded["dir"], tmp_path / "t", nodes=(0, 1, 2) if evidence == "peers" else (0,), receipts=evidence == "receipts")
    with sqlite3.connect(d / "node0" / "state.db") as conn:
        tamper(conn)
    from misuan.node.audit import verify_chain

    assert verify_chain(d / "node0" / "state.db").ok  # the rewrite is self-consistent: the chain alone cannot tell
    rc, rep = _verify(d)
    assert rc == 1, f"{tamper.__name__} passed audit verify using {evidence}: {rep}"
    assert not rep["node0"]["ok"] and rep["node0"]["reason"]
    assert all(n["ok"] for name, n in rep.items() if name != "node0"), rep
