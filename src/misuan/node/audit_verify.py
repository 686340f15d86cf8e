"""``misuan audit verify``: every node's chain, checked against what others hold.

One node's operator can rewrite its own chain and recompute every hash, so a
chain that verifies alone proves little. Each node's chain is also checked
against evidence its operator cannot forge:

* heads of it that its peers recorded (``audit.peer_head`` rows in the peers'
  chains, each signed by the node's own audit key), and
* receipts its clients kept (signed heads, ``<receipts>/<party>.receipts``).

Every such head ``(seq, hash)`` must be row ``seq`` of the node's chain with
that hash. An edited-and-rehashed, truncated, or renumbered chain fails here.
The node's key is the one in cluster.toml (``audit_key``), else the one its
peers pinned; a node whose chain names another key is reported too.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..audit_heads import GENESIS, SignedHead, read_pins, read_receipts
from ..config import load_cluster
from ..errors import ConfigError, IntegrityError, MisuanError
from .audit import PEER_HEAD_OP, verify_chain


@dataclass
class NodeAudit:
    party: str
    path: str
    rows: int
    ok: bool
    first_broken: int | None = None
    reason: str = ""
    head: str = GENESIS
    #: heads of this node that peers recorded / that clients hold, checked
    peer_heads: int = 0
    receipts: int = 0
    hashes: dict[int, str] = field(default_factory=dict, repr=False)

    def fail(self, seq: int | None, reason: str) -> None:
        """Record an inconsistency; the one at the lowest row wins."""
        if self.ok or (seq is not None and self.first_broken is not None and seq < self.first_broken):
            self.ok, self.first_broken, self.reason = False, seq, reason

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "hashes"}


def _read(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return []


def _nodes(d: Path) -> tuple[str, list[tuple[str, Path, str | None]]]:
    """(cluster name, [(party id, state.db, published key)]) for the node dirs present."""
    if (d / "cluster.toml").exists():
        cfg = load_cluster(d / "cluster.toml")
        found = [(p.id, d / f"node{p.rank}" / "state.db", p.audit_key) for p in cfg.parties]
        return cfg.name, [n for n in found if n[1].exists()]
    return "misuan", [(p.parent.name, p, None) for p in sorted(d.glob("node*/state.db"))]


def _check_head(node: NodeAudit, head: SignedHead, key: str | None, source: str) -> None:
    """One signed head of ``node`` against its chain."""
    if key is None:
        node.fail(None, f"no audit key known for {node.party} to check {source}")
        return
    try:
        head.verify(key)
    except IntegrityError:
        node.fail(None, f"{source} is not signed by {node.party}'s audit key")
        return
    if head.seq > node.rows:
        node.fail(node.rows + 1, f"chain has {node.rows} rows but {source} vouches for row {head.seq}")
    elif node.hashes.get(head.seq, GENESIS if head.seq == 0 else None) != head.hash:
        node.fail(head.seq, f"row {head.seq} differs from {source}")


def _keys(nodes: dict[str, NodeAudit], published: dict[str, str | None], dbs: dict[str, Path]) -> dict[str, str | None]:
    """Each node's audit key: published, else what its peers pinned; reports disagreements."""
    pins: dict[str, Counter] = {p: Counter() for p in nodes}
    for j, db in dbs.items():
        for party, key in _read(db, "SELECT party, public_key FROM peer_keys"):
            if party in pins and party != j:
                pins[party][key] += 1
    keys: dict[str, str | None] = {}
    for p, node in nodes.items():
        own = {json.loads(d).get("audit_key") for (d,) in _read(dbs[p], "SELECT detail FROM audit WHERE op='node.start'")} - {None}
        if len(pins[p]) > 1:
            node.fail(None, f"peers pinned different audit keys for {p}")
        key = published[p] or (pins[p].most_common(1)[0][0] if pins[p] else None) or (next(iter(own)) if len(own) == 1 else None)
        if own and own != {key}:
            node.fail(None, f"{p}'s chain names an audit key other than the one its peers pinned or cluster.toml lists")
        keys[p] = key
    return keys


def _cross_records(cluster: str, nodes: dict[str, NodeAudit], keys: dict, dbs: dict[str, Path]) -> None:
    for j, db in dbs.items():
        rows = _read(db, "SELECT seq, status, detail FROM audit WHERE op=? ORDER BY seq", (PEER_HEAD_OP,))
        for seq, status, detail in rows:
            d = json.loads(detail)
            p = d.get("peer")
            if p not in nodes or p == j:
                continue
            if status != "ok":
                nodes[p].fail(None, f"{j} reported an inconsistent head of {p} at its row {seq} ({', '.join(sorted(d))})")
                continue
            head = SignedHead(cluster, p, int(d["seq"]), str(d["hash"]), int(d["ts_ms"]), str(d["signature"]))
            try:
                head.verify(keys[p] or "")
            except IntegrityError:
                nodes[j].fail(seq, f"row {seq} records a head of {p} that {p} did not sign")
                continue
            _check_head(nodes[p], head, keys[p], f"the head {j} recorded at its row {seq}")
            nodes[p].peer_heads += 1


def _receipts(cluster: str, nodes: dict[str, NodeAudit], keys: dict, receipts: Path) -> None:
    pins = read_pins(receipts)
    for p, node in nodes.items():
        path = receipts / f"{p}.receipts"
        if not path.exists():
            continue
        key = pins.get(p) or keys[p]
        if keys[p] is not None and key != keys[p]:
            node.fail(None, f"the client pinned another audit key for {p} than its peers did")
        for n, head in enumerate(read_receipts(path, cluster, p), 1):
            _check_head(node, head, key, f"receipt {n} in {path.name}")
            node.receipts += 1


def verify_cluster(d: Path, receipts: Path | None = None) -> list[NodeAudit]:
    """Check every node state under ``d``; ``receipts`` is a client's receipts dir."""
    cluster, found = _nodes(d)
    if not found:
        raise MisuanError(f"no node state found under {d}")
    nodes: dict[str, NodeAudit] = {}
    for party, db, _ in found:
        rep = verify_chain(db)
        hashes = dict(_read(db, "SELECT seq, hash FROM audit"))
        nodes[party] = NodeAudit(party, str(db), rep.rows, rep.ok, rep.first_broken, rep.reason, rep.head, hashes=hashes)
    dbs = {party: db for party, db, _ in found}
    keys = _keys(nodes, {p: k for p, _, k in found}, dbs)
    _cross_records(cluster, nodes, keys, dbs)
    if receipts is not None:
        if not receipts.is_dir():
            raise ConfigError(f"receipts directory {receipts} does not exist")
        _receipts(cluster, nodes, keys, receipts)
    return list(nodes.values())


def default_receipts(d: Path) -> Path | None:
    """The receipts dir named by ``d/cluster.toml`` if it exists."""
    if not (d / "cluster.toml").exists():
        return None
    path = load_cluster(d / "cluster.toml").receipts_path
    return path if path.is_dir() else None
