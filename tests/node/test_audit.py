import sqlite3

from misuan.node.audit import AuditLog, verify_chain
from misuan.node.db import Database


def _log(tmp_path, n=5):
    db = Database(tmp_path / "state.db")
    log = AuditLog(db)
    for i in range(n):
        log.append("session.open", asset="run", requester="admin", bytes_in=i, detail={"session": f"s{i}"})
    db.close()
    return tmp_path / "state.db"


def test_chain_verifies(tmp_path):
    rep = verify_chain(_log(tmp_path))
    assert rep.ok and rep.rows == 5 and rep.first_broken is None


def test_edited_row_is_found(tmp_path):
    p = _log(tmp_path)
    with sqlite3.connect(p) as c:
        c.execute("UPDATE audit SET bytes_in = 999 WHERE seq = 3")
    rep = verify_chain(p)
    assert not rep.ok and rep.first_broken == 3 and "hash" in rep.reason


def test_deleted_row_is_found(tmp_path):
    p = _log(tmp_path)
    with sqlite3.connect(p) as c:
        c.execute("DELETE FROM audit WHERE seq = 2")
    rep = verify_chain(p)
    assert not rep.ok and rep.first_broken == 2 and "missing" in rep.reason


def test_rehashed_row_breaks_the_next_link(tmp_path):
    """Recomputing one row's hash after editing it still breaks the chain at the next row."""
    import hashlib
    import json

    p = _log(tmp_path)
    with sqlite3.connect(p) as c:
        row = c.execute(
            "SELECT seq, ts, op, asset, requester, bytes_in, bytes_out, status, detail, prev_hash FROM audit WHERE seq=2"
        ).fetchone()
        row = list(row)
        row[3] = "forged"
        canon = json.dumps(row[:9], separators=(",", ":"), ensure_ascii=True)
        h = hashlib.sha256((row[9] + canon).encode()).hexdigest()
        c.execute("UPDATE audit SET asset='forged', hash=? WHERE seq=2", (h,))
    rep = verify_chain(p)
    assert not rep.ok and rep.first_broken == 3
