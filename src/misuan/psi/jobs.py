"""PSI jobs on a node: this party's side of a two-party private set intersection.

The input is a *dataset* registered on this node (see :mod:`.datasets`): a
file inside its owner's data directory, pinned by its SHA-256. A job names it
(``name`` or ``owner/name``) and runs only for the dataset's owner or a
principal the owner granted; a grantee may make this side the receiver (which
hands it this dataset's rows) only with a ``receive`` grant. The file never
leaves the node. Each job runs the PSI engine (:mod:`misuan.psi`) in a worker
process of its own — libpsi, like SPU, can take the whole process down when the
peer dies — over a brpc link on a port this node reserves for the job; the
engine refuses a snapshot whose hash differs from the registered one. Results
(counts and the input's hash, never rows) go to the audit log; the output CSV
stays in the job dir until the requester fetches it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import NodeConfig
from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ..node.audit import AuditLog
from ..node.sessions import SessionManager
from ..node.zygote import set_pdeathsig
from . import protocol as P
from .datasets import Dataset, DatasetRegistry
from .spec import PsiSpec

JOB_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass
class PsiJob:
    id: str
    principal: str
    rank: int  # this node's rank *in the job* (0 or 1)
    port: int
    spec: PsiSpec
    dataset: Dataset
    dir: Path
    created: float = field(default_factory=time.time)
    proc: subprocess.Popen | None = None
    state: str = P.RESERVED  # reserved | running | done | failed
    outcome: dict | None = None


class PsiJobs:
    def __init__(self, cfg: NodeConfig, sessions: SessionManager, audit: AuditLog, datasets: DatasetRegistry):
        self.cfg = cfg
        self.sessions = sessions
        self.audit = audit
        self.datasets = datasets
        self.root = cfg.state_dir / "psi"
        self._jobs: dict[str, PsiJob] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _spec(spec: dict) -> PsiSpec:
        try:
            return PsiSpec.from_dict(spec)
        except (TypeError, ValueError, AttributeError):
            raise InvalidInput("malformed PSI spec (keys: a list of column names; see misuan.psi.spec)") from None

    def _input(self, principal: str, dataset: str, receives: bool) -> Dataset:
        ds, may_receive = self.datasets.resolve(principal, dataset)
        if receives and not may_receive:
            raise PermissionDenied(
                f"your grant on dataset {ds.ref!r} does not let this side receive its rows; ask its owner for a receive grant"
            )
        self.datasets.check_unchanged(ds)
        return ds

    def _get(self, jid: str, principal: str) -> PsiJob:
        job = self._jobs.get(jid)
        if job is None or job.principal != principal:
            raise NotFound("unknown PSI job")
        return job

    # ------------------------------------------------------------ lifecycle

    def create(self, principal: str, jid: str, rank: int, spec: dict, dataset: str) -> dict:
        if not JOB_RE.match(jid or ""):
            raise InvalidInput("job ids are 8-64 chars of letters, digits, '_' or '-'")
        if rank not in (0, 1):
            raise InvalidInput("rank in the job must be 0 or 1")
        parsed = self._spec(spec)  # validate early, one clear error
        ds = self._input(principal, dataset, parsed.receives(rank))
        with self._lock:
            if jid in self._jobs:
                raise Conflict("PSI job id already in use")
            port = self.sessions.reserve_port()
            job = PsiJob(jid, principal, rank, port, parsed, ds, self.root / jid)
            self._jobs[jid] = job
        job.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(job.dir, 0o700)
        return {"job_id": jid, "link_address": self.cfg.party.link_address(port)}

    def start(self, principal: str, jid: str, addresses: list[str], peer_rank: int) -> dict:
        job = self._get(jid, principal)
        if job.state != P.RESERVED:
            raise Conflict(f"job is {job.state}")
        cl = self.cfg.cluster
        peer = cl.party(peer_rank)
        if len(addresses) != 2 or addresses[job.rank] != self.cfg.party.link_address(job.port):
            raise InvalidInput("addresses must list both parties, this node's reserved address at its rank")
        host, _, port = addresses[1 - job.rank].rpartition(":")
        if host != peer.link_host or not port.isdigit() or not peer.link_ports[0] <= int(port) <= peer.link_ports[1]:
            raise InvalidInput("the peer address is not within the peer's configured link ports")
        tls = None
        if cl.tls:
            tls = {"cert_path": str(self.cfg.tls_cert), "key_path": str(self.cfg.tls_key), "ca_path": str(cl.ca_cert)}
        receives = job.spec.receives(job.rank)
        request = {
            "spec": job.spec.to_dict(),
            "link": {
                "job_id": f"psi-{jid}",
                "self_rank": job.rank,
                "addresses": list(addresses),
                "recv_timeout_ms": None,
                "connect_timeout_s": cl.timeouts.link_connect_s,
                "tls": tls,
            },
            "input": str(job.dataset.path),
            "expected_sha256": job.dataset.sha256,
            "job_dir": str(job.dir / "work"),
            "output": str(job.dir / "output.csv") if receives else None,
            "result": str(job.dir / "result.json"),
            "progress": str(job.dir / "progress.jsonl"),
        }
        (job.dir / "work").mkdir(mode=0o700, exist_ok=True)
        (job.dir / "request.json").write_text(json.dumps(request))
        log = open(job.dir / "party.log", "ab")
        try:
            job.proc = subprocess.Popen(
                [sys.executable, "-m", "misuan.psi._party", str(job.dir / "request.json")],
                cwd=job.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "TMPDIR": str(job.dir)},
                start_new_session=True,
                preexec_fn=set_pdeathsig,
            )
        finally:
            log.close()
        job.state = P.RUNNING
        self.audit.append(
            "psi.start", asset=f"psi:{jid}", requester=principal, detail={**self._input_detail(job), "protocol": job.spec.protocol}
        )
        return {"started": True}

    @staticmethod
    def _input_detail(job: PsiJob) -> dict:
        return {
            "rank": job.rank,
            "dataset": job.dataset.ref,
            "input_sha256": job.dataset.sha256,
            "receives": job.spec.receives(job.rank),
        }

    def status(self, principal: str, jid: str) -> dict:
        job = self._get(jid, principal)
        self._poll(job)
        progress = None
        try:
            lines = (job.dir / "progress.jsonl").read_text().splitlines()
            progress = json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            pass
        out = {"job_id": jid, "state": job.state, "progress": progress}
        if job.outcome is not None:
            if job.outcome.get("ok"):
                out["result"] = job.outcome["result"]
                out["peak_rss_kb"] = job.outcome.get("peak_rss_kb")
            else:
                out["error"] = job.outcome.get("error", {"type": "ComputeError", "message": "PSI party failed"})
        return out

    def _poll(self, job: PsiJob) -> None:
        if job.state != P.RUNNING or job.proc is None:
            return
        code = job.proc.poll()
        if code is None:
            return
        try:
            job.outcome = json.loads((job.dir / "result.json").read_text())
        except (OSError, ValueError):
            job.outcome = {
                "ok": False,
                "error": {"type": "ComputeError", "message": "the PSI peer was lost (the party process stopped without a result)"},
            }
        job.state = P.DONE if job.outcome.get("ok") else P.FAILED
        self.sessions.release_port(job.port)
        res = job.outcome.get("result", {}) if job.outcome.get("ok") else {}
        self.audit.append(
            "psi.job",
            asset=f"psi:{job.id}",
            requester=job.principal,
            status=job.state,
            bytes_in=int(res.get("bytes_received") or 0),
            bytes_out=int(res.get("bytes_sent") or 0),
            detail={
                **self._input_detail(job),
                "protocol": job.spec.protocol,
                "join": job.spec.join,
                "snapshot_sha256": res.get("input_sha256"),
                "input_rows": res.get("input_rows"),
                "intersection": res.get("intersection_keys"),
                "output_rows": res.get("output_rows"),
                "seconds": res.get("seconds"),
            },
        )
        shutil.rmtree(job.dir / "work", ignore_errors=True)

    def output(self, principal: str, jid: str) -> Path:
        job = self._get(jid, principal)
        self._poll(job)
        if job.state != P.DONE:
            raise Conflict(f"job is {job.state}")
        path = job.dir / "output.csv"
        if not path.is_file():
            raise NotFound("this party did not receive the result")
        return path

    def delete(self, principal: str, jid: str) -> None:
        job = self._get(jid, principal)
        with self._lock:
            self._jobs.pop(jid, None)
        if job.proc is not None and job.proc.poll() is None:
            os.killpg(job.proc.pid, signal.SIGKILL)
            job.proc.wait(10)
        if job.state in (P.RESERVED, P.RUNNING):
            self.sessions.release_port(job.port)
            if job.state == P.RUNNING:
                self.audit.append("psi.job", asset=f"psi:{jid}", requester=principal, status="cancelled", detail=self._input_detail(job))
        shutil.rmtree(job.dir, ignore_errors=True)

    def shutdown(self) -> None:
        for jid, job in list(self._jobs.items()):
            if job.proc is not None and job.proc.poll() is None:
                try:
                    os.killpg(job.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)

    def reap(self, max_idle_s: float) -> None:
        now = time.time()
        for jid, job in list(self._jobs.items()):
            self._poll(job)
            if job.state != P.RUNNING and now - job.created > max_idle_s:
                try:
                    self.delete(job.principal, jid)
                except NotFound:
                    pass
