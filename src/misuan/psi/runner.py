"""Run one party of a two-party PSI job (call this inside a dedicated worker process).

A peer that dies mid-protocol can take the surviving process down with it
(yacl/brpc abort, exit status 255), so the node daemon runs each job in its own
worker process and calls :func:`run_psi_party` there. The function is a pure
engine: files in, files and a summary out; no HTTP, no database, no global
state beyond the process it runs in (it sets ``TMPDIR`` while libpsi runs).

Stages (each reported through ``progress``):

``link``     wait for the peer (rendezvous) and open the brpc link (TLS optional)
``check``    both sides compare the public view of their specs; refuse on mismatch
``prepare``  snapshot the input into the job directory, canonicalise keys,
             apply the duplicate policy, write libpsi's one-column input; both
             sides heartbeat meanwhile and learn if the other side's input is bad
``psi``      libpsi (RR22 / KKRT / ECDH) on distinct key digests
``output``   receivers map the intersection back to their own rows and write
             the result atomically (temp file + fsync + rename)

What each party learns: both learn the other's number of distinct keys (every
PSI protocol reveals it) and that the specs agree. A receiver learns which of
its own keys are in the intersection; for ``left`` and ``difference`` it
computes the rest locally from that same intersection, so these joins reveal
nothing more than ``inner`` to anyone. A non-receiver learns nothing else, not
even the intersection size. Neither learns the other's duplicate counts,
empty-key rows, other columns or row order.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misuan.errors import ComputeError, ConfigError, InvalidInput
from misuan.psi import _libpsi, _link, _netstat, _output, _prepare, _snapshot, _sync
from misuan.psi._progress import ProgressCallback, StageTracker
from misuan.psi.result import PsiPartyResult
from misuan.psi.spec import MATCH_COLUMN, PsiLink, PsiSpec, split_address

log = logging.getLogger(__name__)

#: Rough seconds per distinct key of the larger side, 2 shared cores (progress estimate only).
_SECONDS_PER_KEY = {"rr22": 13e-6, "kkrt": 22e-6, "ecdh": 150e-6}


@dataclass(frozen=True)
class _Job:
    """Everything one party's stages share (paths are absolute)."""

    spec: PsiSpec
    link: PsiLink
    input_csv: Path
    output: Path | None
    work: Path
    tracker: StageTracker
    expected_sha256: str | None = None

    @property
    def rank(self) -> int:
        return self.link.self_rank

    @property
    def receives(self) -> bool:
        return self.spec.receives(self.rank)


@dataclass(frozen=True)
class _Exchange:
    """What the linked stages produce."""

    snapshot: _snapshot.Snapshot
    prepared: _prepare.PreparedInput
    peer_unique_keys: int
    report: _libpsi.LibpsiReport
    libpsi_output: Path
    traffic: _netstat.LinkBytes | None


def _make_workdir(job_dir: Path, link: PsiLink) -> Path:
    if not job_dir.is_dir():
        raise ConfigError("the PSI job directory does not exist")
    work = job_dir.absolute() / f"psi-{link.job_id}-r{link.self_rank}-{secrets.token_hex(4)}"
    _libpsi.check_shell_safe(work)
    work.mkdir(mode=0o700)
    (work / "tmp").mkdir(mode=0o700)
    return work


def _load_spu() -> None:
    """Import spu's link and libpsi now, so that import time is not counted as link time."""
    import spu.libspu  # noqa: F401
    import spu.psi  # noqa: F401


def _stop(ctx: Any) -> None:
    try:
        ctx.stop_link()
    except Exception:  # the job's outcome is already decided
        log.debug("stopping the PSI link failed", exc_info=True)


def _prepare_local(job: _Job, cancel: threading.Event) -> tuple[_snapshot.Snapshot, _prepare.PreparedInput]:
    """Snapshot and canonicalise this party's input (runs in a helper thread)."""
    if job.output is not None:
        _output.check_output_path(job.output, job.input_csv)
    snapshot = _snapshot.snapshot_input(job.input_csv, job.work / "input.csv", lambda f: job.tracker.set_fraction(0.2 * f))
    if job.expected_sha256 is not None and snapshot.sha256 != job.expected_sha256:
        raise InvalidInput("the input changed since it was registered (its SHA-256 differs); its owner must register it again")
    prepared = _prepare.prepare_input(
        snapshot,
        job.spec,
        job.work / "keys.csv",
        reserved_columns=(MATCH_COLUMN,) if job.receives and job.spec.join == "left" else (),
        cancel=cancel,
        on_progress=lambda f: job.tracker.set_fraction(0.2 + 0.8 * f),
    )
    return snapshot, prepared


def _linked_stages(job: _Job, ctx: Any) -> _Exchange:
    """check -> prepare -> psi, all while the link is up."""
    tracker = job.tracker
    tracker.enter("check")
    _sync.check_agreement(ctx, job.rank, job.spec.public_view(job.link.job_id))
    tracker.leave()

    tracker.enter("prepare")
    (snapshot, prepared), peer = _sync.run_together(
        ctx,
        job.rank,
        lambda cancel: _prepare_local(job, cancel),
        lambda done: {"unique_keys": len(done[1].unique_keys)},
        on_tick=tracker.emit,
    )
    peer_unique = peer.get("unique_keys")
    if not isinstance(peer_unique, int) or isinstance(peer_unique, bool) or peer_unique < 0:
        raise ComputeError("PSI peer sent a malformed input summary")
    tracker.leave()

    tracker.enter("psi")
    expected_s = 0.5 + _SECONDS_PER_KEY[job.spec.protocol] * max(len(prepared.unique_keys), peer_unique)

    def tick() -> None:
        tracker.set_fraction(min(0.95, tracker.stage_elapsed() / expected_s))
        tracker.emit()

    libpsi_output = job.work / "intersection.csv"
    report = _libpsi.execute(ctx, job.spec, prepared.libpsi_input, libpsi_output, job.work / "tmp", tick)
    traffic = _netstat.peer_link_bytes(
        split_address(job.link.addresses[job.rank])[1],
        split_address(job.link.addresses[job.link.peer_rank])[1],
    )
    tracker.leave()
    return _Exchange(snapshot, prepared, peer_unique, report, libpsi_output, traffic)


def _output_stage(job: _Job, done: _Exchange) -> tuple[int | None, int | None]:
    """Receivers: read the intersection, write the result. Returns (keys, rows written)."""
    if not job.receives:
        return None, None
    found: np.ndarray = _output.read_intersection(done.libpsi_output, done.prepared)
    if len(found) != done.report.intersection_count:
        raise ComputeError("libpsi's intersection count disagrees with its result file")
    if job.output is None:
        return len(found), None
    states = _output.row_states(done.prepared, found)
    try:
        rows = _output.write_output(done.snapshot, states, job.spec.join, job.output, job.tracker.set_fraction)
    except OSError as exc:
        raise ComputeError(f"writing the PSI result failed ({exc.strerror})") from None
    return len(found), rows


def run_psi_party(
    spec: PsiSpec,
    link: PsiLink,
    input_csv: Path,
    job_dir: Path,
    output_csv: Path | None = None,
    progress: ProgressCallback | None = None,
    expected_sha256: str | None = None,
) -> PsiPartyResult:
    """Run this party's side of a PSI job and return its summary.

    Args:
        spec: the request (this party's key column names; everything else must
            match the peer's spec).
        link: job id, ranks, addresses, timeouts, TLS.
        input_csv: this party's CSV (read once, into a snapshot).
        job_dir: node-owned directory for this job; a private ``psi-*`` work
            directory is created inside it and removed at the end (if the
            process is killed, the caller must remove ``job_dir``).
        output_csv: where a receiver writes its result; ignored on a
            non-receiver; ``None`` on a receiver means "counts only".
        progress: called on this thread with :class:`~misuan.psi.result.PsiProgress` events.
        expected_sha256: if given, the snapshot of the input must hash to this
            (a node pins a registered dataset's content); else InvalidInput.

    Raises:
        InvalidInput: this party's input or request is bad, or the two requests
            differ (raised on both sides).
        ComputeError: the peer rejected its input, the protocol failed, or the
            peer stopped answering.
        NodeTimeout: the peer never showed up.
        ConfigError: the job directory is missing or not shell-safe.
    """
    _load_spu()
    tracker = StageTracker(progress)
    input_path = Path(input_csv).absolute()
    receives = spec.receives(link.self_rank)
    output = Path(output_csv).absolute() if receives and output_csv is not None else None
    work = _make_workdir(Path(job_dir), link)
    job = _Job(spec, link, input_path, output, work, tracker, expected_sha256)
    try:
        try:
            input_bytes = input_path.stat().st_size
        except OSError:
            input_bytes = 0  # the missing file is reported to both sides during "prepare"
        tracker.enter("link")
        ctx, gate = _link.open_link(link, link.recv_timeout_ms or _link.auto_recv_timeout_ms(input_bytes))
        tracker.leave()
        try:
            done = _linked_stages(job, ctx)
        finally:
            _stop(ctx)
            if gate is not None:
                gate.close()
        tracker.enter("output")
        intersection_keys, output_rows = _output_stage(job, done)
        tracker.leave()
        tracker.emit("done", 1.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    prepared, traffic = done.prepared, done.traffic
    log.info(
        "PSI job %s rank %d done: %d distinct keys, intersection %s, %.2f s",
        link.job_id,
        link.self_rank,
        len(prepared.unique_keys),
        intersection_keys,
        tracker.elapsed(),
    )
    return PsiPartyResult(
        job_id=link.job_id,
        rank=link.self_rank,
        protocol=spec.protocol,
        join=spec.join,
        received=receives,
        input_rows=prepared.input_rows,
        empty_key_rows=prepared.empty_key_rows,
        duplicate_rows=prepared.duplicate_rows,
        dropped_rows=prepared.dropped_rows,
        unique_keys=len(prepared.unique_keys),
        peer_unique_keys=done.peer_unique_keys,
        intersection_keys=intersection_keys,
        output_rows=output_rows,
        output_path=None if output_rows is None else str(output),
        input_sha256=done.snapshot.sha256,
        seconds=round(tracker.elapsed(), 4),
        stage_seconds=tuple((name, round(sec, 4)) for name, sec in tracker.seconds),
        bytes_sent=None if traffic is None else traffic.sent,
        bytes_received=None if traffic is None else traffic.received,
    )
