"""NodeService: everything a node does, independent of HTTP."""

from __future__ import annotations

import logging
import os
import threading
import time

import psutil

from .. import __version__
from ..audit_heads import HeadSigner
from ..config import NodeConfig
from . import auth
from .assets import AssetRegistry
from .audit import AuditLog
from .capability import Capabilities, NodeCapability, NodeContext
from .db import Database
from .runtimes import Runtimes
from .sessions import SessionManager
from .store import ShareStore
from .witness import AuditWitness

#: (storage type, bytes per value) of one party's share, by protocol and field.
_FIELD_BYTES = {"FM32": 4, "FM64": 8, "FM128": 16}
_REPLICATED = {"ABY3": 2}


def share_layout(protocol: str, field: str) -> tuple[str, int]:
    return f"{protocol.lower()}.AShr<{field}>", _FIELD_BYTES[field] * _REPLICATED.get(protocol, 1)


class NodeService:
    def __init__(self, cfg: NodeConfig, capabilities: tuple[NodeCapability, ...] = ()):
        self.cfg = cfg
        self.started = time.time()
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        (cfg.state_dir / "logs").mkdir(exist_ok=True)
        self.store = ShareStore(cfg.state_dir / "shares", cfg.storage_key_file)
        self.store.ensure_key_check()
        self.db = Database(cfg.state_dir / "state.db")
        self.audit = AuditLog(self.db)
        self.auth = auth.Authenticator(self.db, self.audit, cfg.party.id, cfg.admin_key)
        self.signer = HeadSigner(cfg.state_dir, cfg.cluster.name, cfg.party.id)  # made here on first start, never copied
        self.witness = AuditWitness(cfg, self.db, self.audit, self.signer)
        self.sessions = SessionManager(cfg, self.db, self.audit)
        storage, per_value = share_layout(cfg.cluster.mpc.protocol, cfg.cluster.mpc.field)
        self.capabilities = Capabilities(tuple(capabilities))
        #: asset kind -> its registry, and the resident runtimes of its programs
        self.assets = {
            k.name: AssetRegistry(self.db, self.store, self.audit, storage, per_value, k) for k in self.capabilities.asset_kinds()
        }
        self.runtimes = {k: Runtimes(cfg, self.sessions, reg, self.audit, self.capabilities) for k, reg in self.assets.items()}
        self.context = NodeContext(cfg=cfg, db=self.db, audit=self.audit, sessions=self.sessions, assets=self.assets)
        for cap in self.capabilities.items:
            if cap.jobs is not None:
                self.context.jobs[cap.name] = cap.jobs(self.context)
        self._stop = threading.Event()
        self._upkeep = threading.Thread(target=self._upkeep_loop, daemon=True, name="node-upkeep")

    def __repr__(self) -> str:
        return f"NodeService(rank={self.cfg.rank})"

    def start(self) -> None:
        for reg in self.assets.values():
            reg.recover()
        self.sessions.start()
        self._upkeep.start()
        self.audit.append(
            "node.start", requester="system", detail={"pid": os.getpid(), "version": __version__, "audit_key": self.signer.public_key}
        )
        self.witness.start()

    def _upkeep_loop(self) -> None:
        while not self._stop.wait(10.0):
            try:
                for reg in self.assets.values():
                    reg.reap_uploads(self.cfg.cluster.timeouts.session_idle_s)
                for rts in self.runtimes.values():
                    rts.check_alive()
                for jobs in self.context.jobs.values():
                    jobs.reap(self.cfg.cluster.timeouts.session_idle_s)
            except Exception:  # keep the node up; the next round retries
                logging.getLogger(__name__).exception("upkeep failed")

    def stop(self) -> None:
        self._stop.set()
        self.witness.stop()
        for jobs in self.context.jobs.values():
            jobs.shutdown()
        self.sessions.shutdown()
        self.audit.append("node.stop", requester="system")
        self.db.close()

    def health(self) -> dict:
        return {
            "ok": True,
            "party": self.cfg.party.id,
            "rank": self.cfg.rank,
            "version": __version__,
            "protocol": self.cfg.cluster.mpc.protocol,
        }

    def status(self, who: str) -> dict:
        """The node's state as ``who`` may see it: the admin sees everything, anyone
        else only its own sessions and the assets it owns or was granted."""
        now = time.time()
        admin = who == auth.ADMIN
        sessions = [
            {"id": s.id, "kind": s.kind, "state": s.state, "principal": s.principal, "age_s": round(now - s.created, 1), "runs": s.runs}
            for s in self.sessions.list()
            if admin or (s.principal == who and not s.internal)
        ]
        assets = [
            {**reg.fields(n), "version": v, "kind": k, "state": st, "size_bytes": b}
            for ak, reg in self.assets.items()
            for n, v, k, st, b in self.db.query(
                "SELECT name, version, kind, state, size_bytes FROM assets WHERE state='ready' AND asset_kind=? ORDER BY name, version",
                (ak,),
            )
            if admin or reg.can_use(who, n)
        ]
        resident = [
            {**r, **self.assets[k].fields(r["name"])}
            for k, rts in self.runtimes.items()
            for r in rts.resident()
            if admin or self.assets[k].can_use(who, r["name"])
        ]
        return {
            "party": self.cfg.party.id,
            "rank": self.cfg.rank,
            "protocol": self.cfg.cluster.mpc.protocol,
            "field": self.cfg.cluster.mpc.field,
            "world_size": self.cfg.cluster.world_size,
            "tls": self.cfg.cluster.tls,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started, 1),
            "rss_bytes": psutil.Process().memory_info().rss,
            "workers_rss_bytes": self.sessions.workers_rss(),
            "sessions": sessions,
            "assets": assets,
            "resident": resident,
            "store_bytes": self.store.usage_bytes(),
            "audit_rows": self.db.query("SELECT COUNT(*) FROM audit")[0][0] if admin else None,
        }
