"""What a PSI party reports: progress events while running, a summary at the end.

Neither ever contains rows, keys or column values: only counts, timings, sizes,
hashes of whole files and public spec fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Stages in order, with the share of the overall progress bar each one covers.
STAGES: tuple[tuple[str, float], ...] = (
    ("snapshot", 0.03),
    ("link", 0.04),
    ("check", 0.01),
    ("prepare", 0.17),
    ("psi", 0.65),
    ("output", 0.10),
)


@dataclass(frozen=True)
class PsiProgress:
    """One progress event.

    Attributes:
        stage: ``snapshot``, ``link``, ``check``, ``prepare``, ``psi``, ``output``
            or ``done``.
        stage_fraction: progress within the stage in [0, 1]; for ``psi`` it is
            an estimate from elapsed time (libpsi reports no progress for
            RR22/KKRT/ECDH), never reaching 1 before libpsi returns.
        fraction: overall progress in [0, 1] (stage weights in :data:`STAGES`).
        elapsed_s: seconds since the job started on this party.
    """

    stage: str
    stage_fraction: float
    fraction: float
    elapsed_s: float


def overall_fraction(stage: str, stage_fraction: float) -> float:
    """Map a stage-local fraction to the overall [0, 1] bar."""
    done = 0.0
    for name, weight in STAGES:
        if name == stage:
            return min(1.0, done + weight * max(0.0, min(1.0, stage_fraction)))
        done += weight
    return 1.0


@dataclass(frozen=True)
class PsiPartyResult:
    """Summary of one party's side of a PSI job.

    Attributes:
        job_id, rank, protocol, join: as requested.
        received: whether this party got the result (``spec.receives(rank)``).
        input_rows: data rows in the input (header excluded).
        empty_key_rows: rows with an empty normalised key (never match).
        duplicate_rows: rows whose key repeats an earlier row's.
        dropped_rows: rows removed by ``duplicates="first"``.
        unique_keys: distinct non-empty keys this party fed into the PSI.
        peer_unique_keys: the peer's distinct-key count (revealed by PSI anyway).
        intersection_keys: distinct keys in the intersection; ``None`` if this
            party is not a receiver.
        output_rows: data rows written; ``None`` if nothing was written.
        output_path: where the result is, or ``None``.
        input_sha256: SHA-256 of the input snapshot that was intersected.
        seconds: wall time of the whole job on this party.
        stage_seconds: wall time per stage.
        bytes_sent, bytes_received: link bytes to/from the peer (lower bound,
            ``None`` if not measurable).
    """

    job_id: str
    rank: int
    protocol: str
    join: str
    received: bool
    input_rows: int
    empty_key_rows: int
    duplicate_rows: int
    dropped_rows: int
    unique_keys: int
    peer_unique_keys: int
    intersection_keys: int | None
    output_rows: int | None
    output_path: str | None
    input_sha256: str
    seconds: float
    stage_seconds: tuple[tuple[str, float], ...]
    bytes_sent: int | None
    bytes_received: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the audit log and the worker pipe)."""
        data = asdict(self)
        data["stage_seconds"] = {name: round(sec, 4) for name, sec in self.stage_seconds}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PsiPartyResult:
        values = dict(data)
        values["stage_seconds"] = tuple((k, float(v)) for k, v in data["stage_seconds"].items())
        return cls(**values)
