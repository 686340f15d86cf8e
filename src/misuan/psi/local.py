"""Run PSI parties as real local subprocesses linked over loopback (tests, benchmarks).

Each party is ``python -m misuan.psi._party`` in its own process with its own
job directory, exactly as a node's worker would run it; the two talk over a
brpc link on two free loopback ports.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misuan.errors import ClusterError
from misuan.psi.result import PsiPartyResult
from misuan.psi.spec import LinkTls, PsiLink, PsiSpec

_SRC_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PartyRun:
    """Outcome of one local party process."""

    rank: int
    exit_code: int
    result: PsiPartyResult | None
    error_type: str | None
    error_message: str | None
    peak_rss_kb: int | None
    wall_s: float
    log_path: Path
    progress_path: Path

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.result is not None


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(_SRC_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class PartyProcess:
    """A started party subprocess; :meth:`wait` collects its outcome."""

    def __init__(self, rank: int, request: dict[str, Any], work: Path) -> None:
        self.rank = rank
        self.work = work
        self.result_path = Path(request["result"])
        self.progress_path = Path(request["progress"])
        self.log_path = work / f"party{rank}.log"
        request_path = work / f"request{rank}.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        self._start = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "misuan.psi._party", str(request_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=work,
            )

    def wait(self, timeout_s: float) -> PartyRun:
        """Wait up to ``timeout_s`` (then kill this process) and read its outcome."""
        try:
            code = self._proc.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        wall = time.monotonic() - self._start
        outcome: dict = {}
        if self.result_path.exists():
            outcome = json.loads(self.result_path.read_text(encoding="utf-8"))
        error = outcome.get("error") or {}
        return PartyRun(
            rank=self.rank,
            exit_code=code,
            result=PsiPartyResult.from_dict(outcome["result"]) if outcome.get("ok") else None,
            error_type=error.get("type"),
            error_message=error.get("message"),
            peak_rss_kb=outcome.get("peak_rss_kb"),
            wall_s=wall,
            log_path=self.log_path,
            progress_path=self.progress_path,
        )


def run_local_pair(
    specs: PsiSpec | Sequence[PsiSpec],
    inputs: Sequence[Path],
    outputs: Sequence[Path | None],
    work_dir: Path,
    *,
    job_id: str | None = None,
    ranks: Sequence[int] = (0, 1),
    tls: Sequence[LinkTls | None] | None = None,
    recv_timeout_ms: int | None = None,
    connect_timeout_s: float = 30.0,
    timeout_s: float = 600.0,
) -> tuple[PartyRun, ...]:
    """Run the parties in ``ranks`` (both by default) as subprocesses; return their runs.

    ``specs``/``inputs``/``outputs``/``tls`` are indexed by rank. Start only one
    rank to simulate a peer that never shows up.
    """
    spec_list = [specs, specs] if isinstance(specs, PsiSpec) else list(specs)
    tls_list = list(tls) if tls is not None else [None, None]
    job_id = job_id or f"local-{secrets.token_hex(4)}"
    work_dir = Path(work_dir).absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    port0, port1 = free_ports(2)
    addresses = (f"127.0.0.1:{port0}", f"127.0.0.1:{port1}")
    started = []
    for rank in ranks:
        job = work_dir / f"job{rank}"
        job.mkdir(exist_ok=True)
        link = PsiLink(
            job_id=job_id,
            self_rank=rank,
            addresses=addresses,
            recv_timeout_ms=recv_timeout_ms,
            connect_timeout_s=connect_timeout_s,
            tls=tls_list[rank],
        )
        output = outputs[rank]
        result_path = work_dir / f"result{rank}.json"
        progress_path = work_dir / f"progress{rank}.jsonl"
        result_path.unlink(missing_ok=True)
        progress_path.unlink(missing_ok=True)
        request = {
            "spec": spec_list[rank].to_dict(),
            "link": link.to_dict(),
            "input": str(Path(inputs[rank]).absolute()),
            "job_dir": str(job),
            "output": None if output is None else str(Path(output).absolute()),
            "result": str(result_path),
            "progress": str(progress_path),
        }
        try:
            started.append(PartyProcess(rank, request, work_dir))
        except OSError as exc:
            raise ClusterError(f"cannot start PSI party {rank} ({exc.strerror})") from None
    deadline = time.monotonic() + timeout_s
    return tuple(p.wait(deadline - time.monotonic()) for p in started)
