"""``client.psi(...)`` / ``misuan psi run``: a PSI job between two nodes of a cluster.

Each party's node reads its own input: a *dataset* registered on that node
(``name`` for the caller's own, ``owner/name`` for one shared with the caller),
or a path on that node (a ``Path``, or a string starting with ``/``, ``~`` or
``.``), which the client first registers as the caller's dataset; the node
accepts only files inside the caller's directory ``<data_dir>/<principal>/``.
The two nodes open their own brpc link for the job (TLS when the cluster uses
TLS). The client only coordinates and, for the receiver(s), fetches the output
CSV to ``out`` (written atomically: a temp file renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .. import errors as E
from .._fs import atomic_open
from ..client.client import Client
from ..client.transport import NodeClient
from . import protocol as P
from .spec import KeyNormalization, PsiSpec

POLL_S = 0.3
FAILED_GRACE_S = 20.0


# ------------------------------------------------------------ one node's PSI routes


def psi_create(node: NodeClient, job_id: str, rank: int, spec: dict, dataset: str) -> str:
    body = {"job_id": job_id, "rank": rank, "spec": spec, "dataset": dataset}
    return node.request("POST", P.JOBS, json=body).json()["link_address"]


def psi_start(node: NodeClient, job_id: str, addresses: list[str], peer_rank: int) -> None:
    node.request("POST", P.job_path(job_id, "/start"), json={"addresses": addresses, "peer_rank": peer_rank})


def psi_status(node: NodeClient, job_id: str) -> dict:
    return node.request("GET", P.job_path(job_id)).json()


def psi_output(node: NodeClient, job_id: str, dest) -> int:
    """Stream the job's output CSV into the open binary file ``dest``; returns bytes."""
    n = 0

    def write(chunk: bytes) -> None:
        nonlocal n
        dest.write(chunk)
        n += len(chunk)

    node.request("GET", P.job_path(job_id, "/output"), timeout=None, sink=write)
    return n


def psi_delete(node: NodeClient, job_id: str) -> None:
    node.request("DELETE", P.job_path(job_id), timeout=60)


# ------------------------------------------------------------ one node's datasets (PSI inputs)


def dataset_register(node: NodeClient, name: str, path: str, replace: bool = False) -> dict:
    body = {"name": name, "path": path, "replace": replace}
    return node.request("POST", P.DATASETS, json=body, timeout=None).json()


def dataset_list(node: NodeClient) -> list[dict]:
    return node.request("GET", P.DATASETS).json()


def dataset_show(node: NodeClient, name: str, owner: str | None = None) -> dict:
    params = {"owner": owner} if owner else {}
    return node.request("GET", P.dataset_path(name), params=params).json()


def dataset_remove(node: NodeClient, name: str) -> None:
    node.request("DELETE", P.dataset_path(name))


def dataset_grant(node: NodeClient, name: str, to: str, receive: bool = False) -> None:
    node.request("PUT", P.dataset_path(name, f"/grants/{to}"), params={"receive": "true" if receive else "false"})


def dataset_revoke(node: NodeClient, name: str, to: str) -> bool:
    return node.request("DELETE", P.dataset_path(name, f"/grants/{to}")).json()["revoked"]


# ------------------------------------------------------------ a job over two nodes


@dataclass(frozen=True)
class PsiRun:
    job_id: str
    parties: tuple[str, str]
    protocol: str
    join: str
    receiver: str
    input_rows: tuple[int, int]
    intersection: int | None
    output_rows: dict
    outputs: dict
    seconds: float
    bytes_sent: int
    peak_rss_kb: tuple[int | None, int | None]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def party_rank(client: Client, name: str) -> int:
    for p in client.cluster.parties:
        if name in (p.id, str(p.rank)):
            return p.rank
    raise E.InvalidInput(f"no party {name!r} in this cluster (parties: {', '.join(p.id for p in client.cluster.parties)})")


def is_path(value: str | os.PathLike) -> bool:
    """A party's input given as a path (registered first) rather than a dataset name."""
    return not isinstance(value, str) or value.startswith(("/", "~", "."))


def auto_dataset_name(path: str) -> str:
    """A stable dataset name for a path: its file stem and a short hash of the full path."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem)[:40].lstrip("._-") or "input"
    return f"{stem}-{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}"


def input_ref(node: NodeClient, value: str | os.PathLike) -> str:
    """The dataset a job names for ``value``: registers a path as the caller's dataset (re-pinning its hash)."""
    if not is_path(value):
        return value
    path = str(Path(value).expanduser().absolute())
    return dataset_register(node, auto_dataset_name(path), path, replace=True)["name"]


def _out_paths(out: Path | None, names: tuple[str, str], receivers: Sequence[int]) -> dict[int, Path]:
    if out is None:
        return {}
    if len(receivers) == 1:
        return {receivers[0]: out}
    return {r: out.with_name(f"{out.stem}.{names[r]}{out.suffix or '.csv'}") for r in receivers}


def run_psi(
    client: Client,
    parties: dict[str, str | os.PathLike],
    keys: Sequence[str] | dict[str, Sequence[str]],
    *,
    protocol: str = "rr22",
    receiver: str = "both",
    join: str = "inner",
    out: str | os.PathLike | None = None,
    duplicates: str = "refuse",
    casefold: bool = False,
    ecdh_curve: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    timeout_s: float = 3600.0,
) -> PsiRun:
    """Intersect two parties' tables (``{"alice": dataset_or_path, "bob": dataset_or_path}``)."""
    if len(parties) != 2:
        raise E.InvalidInput("PSI needs exactly two parties")
    names = tuple(parties)  # job ranks follow the order given
    node_ranks = [party_rank(client, n) for n in names]
    if node_ranks[0] == node_ranks[1]:
        raise E.InvalidInput("the two parties must be different nodes")
    if receiver == "both":
        recv: str | int = "both"
    elif receiver in names:
        recv = names.index(receiver)
    else:
        raise E.InvalidInput(f"--receiver must be 'both' or one of {list(names)}")
    key_lists = [list(keys[n]) if isinstance(keys, dict) else list(keys) for n in names]
    specs = []
    for kl in key_lists:
        kw = {
            "keys": tuple(kl),
            "protocol": protocol,
            "receiver": recv,
            "join": join,
            "duplicates": duplicates,
            "normalize": KeyNormalization(casefold=casefold),
        }
        if ecdh_curve:
            kw["ecdh_curve"] = ecdh_curve
        try:
            specs.append(PsiSpec(**kw).to_dict())
        except (TypeError, ValueError) as exc:
            raise E.InvalidInput(str(exc)) from None
    job = secrets.token_hex(10)
    nodes = [client.nodes[r] for r in node_ranks]
    created: list[int] = []
    t0 = time.perf_counter()
    try:
        refs = [input_ref(nodes[jr], parties[names[jr]]) for jr in (0, 1)]
        addresses = []
        for jr in (0, 1):
            addresses.append(psi_create(nodes[jr], job, jr, specs[jr], refs[jr]))
            created.append(jr)
        for jr in (0, 1):
            psi_start(nodes[jr], job, addresses, node_ranks[1 - jr])
        deadline = time.monotonic() + timeout_s
        failed_at = None
        while True:
            status = [psi_status(nodes[jr], job) for jr in (0, 1)]
            if progress is not None:
                fr = [((s.get("progress") or {}).get("fraction") or 0.0) for s in status]
                progress(min(fr), (status[0].get("progress") or {}).get("stage", "starting"))
            states = [s["state"] for s in status]
            if all(st in P.FINISHED for st in states):
                break
            if P.FAILED in states:  # the other side notices within its own timeouts; don't wait forever
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at > FAILED_GRACE_S:
                    break
            if time.monotonic() > deadline:
                raise E.NodeTimeout(f"PSI job did not finish within {timeout_s:.0f} s")
            time.sleep(POLL_S)
        failed = sorted(((jr, s) for jr, s in enumerate(status) if s["state"] != P.DONE), key=lambda x: x[1]["state"] != P.FAILED)
        if failed:
            jr, s = failed[0]
            err = s.get("error") or {}
            cls = E.from_name(err.get("type"), E.ComputeError)
            msg = f"party {names[jr]}: {err.get('message', 'PSI failed')}"
            raise cls(msg, party=node_ranks[jr]) if issubclass(cls, E.NodeError) else cls(msg)
        results = [s["result"] for s in status]
        receivers = [0, 1] if recv == "both" else [recv]
        outputs = {}
        for jr, path in _out_paths(Path(out).expanduser() if out else None, names, receivers).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb", 0o666, suffix=".part", strict_dir_sync=False) as fh:
                psi_output(nodes[jr], job, fh)
            outputs[names[jr]] = str(path)
        return PsiRun(
            job_id=job,
            parties=names,
            protocol=protocol,
            join=join,
            receiver=receiver,
            input_rows=(results[0]["input_rows"], results[1]["input_rows"]),
            intersection=next((r["intersection_keys"] for r in results if r.get("intersection_keys") is not None), None),
            output_rows={names[jr]: results[jr]["output_rows"] for jr in receivers},
            outputs=outputs,
            seconds=time.perf_counter() - t0,
            bytes_sent=sum(int(r.get("bytes_sent") or 0) for r in results),
            peak_rss_kb=(status[0].get("peak_rss_kb"), status[1].get("peak_rss_kb")),
        )
    finally:
        for jr in created:
            try:
                psi_delete(nodes[jr], job)
            except E.MisuanError:
                pass
