"""Public, typed description of a PSI job: what to intersect and how to reach the peer.

A PSI job runs between two parties (link ranks 0 and 1). Each party gets a
:class:`PsiSpec` (the request: key columns, protocol, who receives, join, key
normalisation, duplicate policy) and a :class:`PsiLink` (how to reach the peer).

Everything in a spec except the key column *names* must be identical on both
sides; the engine checks this over the link before touching any data (see
:meth:`PsiSpec.public_view`). Key names may differ because each party names the
columns of its own file (``("customer_id",)`` on one side, ``("id",)`` on the
other); only their *number* is compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from misuan.errors import InvalidInput

#: Bump when the canonical key encoding or the control messages change.
ENGINE_VERSION = "misuan-psi/1"

PROTOCOLS = ("rr22", "kkrt", "ecdh")
JOINS = ("inner", "left", "difference")
DUPLICATE_POLICIES = ("refuse", "first", "all")
ECDH_CURVES = ("fourq", "25519", "sm2", "secp256k1")

MAX_KEY_COLUMNS = 16

#: Column appended to the output of a ``left`` join: ``1`` matched, ``0`` not.
MATCH_COLUMN = "psi_matched"

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class KeyNormalization:
    """How a key cell becomes the string that is compared.

    Applied identically on both sides, per key column, in this order:
    Unicode NFC, then stripping of leading/trailing whitespace (``str.strip``,
    so Unicode spaces too), then (optionally) ``str.casefold`` followed by NFC
    again. Inner whitespace, punctuation and digits are kept as they are:
    ``"007"`` and ``"7"`` are different keys. A row whose normalised key is
    empty in any key column never matches.
    """

    nfc: bool = True
    strip: bool = True
    casefold: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> KeyNormalization:
        """Build from a JSON-like mapping (unknown fields are refused)."""
        if data is None:
            return cls()
        unknown = set(data) - {"nfc", "strip", "casefold"}
        if unknown:
            raise InvalidInput(f"unknown key normalisation option(s): {sorted(unknown)}")
        values = {k: data[k] for k in ("nfc", "strip", "casefold") if k in data}
        for name, value in values.items():
            if not isinstance(value, bool):
                raise InvalidInput(f"key normalisation option {name!r} must be true or false")
        return cls(**values)


@dataclass(frozen=True)
class PsiSpec:
    """The PSI request as one party sees it.

    Attributes:
        keys: this party's key column names (one or more; compared as a tuple).
        protocol: ``rr22`` (default, fastest), ``kkrt`` or ``ecdh``.
        receiver: ``"both"`` or the link rank (0 or 1) of the only party that
            learns the result. The other party learns nothing but sizes.
        join: ``inner`` (rows whose key is in the intersection), ``left`` (all
            rows, plus a ``psi_matched`` 1/0 column) or ``difference`` (rows
            whose key is not in the intersection). Always the receiver's own
            rows and columns; computed locally from the intersection.
        normalize: key normalisation policy, see :class:`KeyNormalization`.
        duplicates: what to do when several rows share a normalised key:
            ``refuse`` (default: fail with the number of repeated rows),
            ``first`` (keep the first such row, drop the others, report how
            many) or ``all`` (keep every row; all of them match together).
            The PSI itself always runs on distinct keys, so the peer never
            learns multiplicities.
        ecdh_curve: curve for ``ecdh``: ``fourq`` (default, 128-bit security;
            ~8x faster than ``25519`` on CPUs without AVX-512 IFMA, where libpsi
            falls back to libsodium), ``25519``, ``sm2`` (国密), ``secp256k1``
            (both ~3x slower than ``25519``); ignored by the other protocols.
    """

    keys: tuple[str, ...]
    protocol: str = "rr22"
    receiver: str | int = "both"
    join: str = "inner"
    normalize: KeyNormalization = field(default_factory=KeyNormalization)
    duplicates: str = "refuse"
    ecdh_curve: str = "fourq"

    def __post_init__(self) -> None:
        keys = (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)
        object.__setattr__(self, "keys", keys)
        if not keys:
            raise InvalidInput("PSI needs at least one key column")
        if len(keys) > MAX_KEY_COLUMNS:
            raise InvalidInput(f"PSI takes at most {MAX_KEY_COLUMNS} key columns")
        if any(not isinstance(k, str) or not k for k in keys):
            raise InvalidInput("key column names must be non-empty strings")
        if len(set(keys)) != len(keys):
            raise InvalidInput("key column names must be distinct")
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"unknown PSI protocol {self.protocol!r}; use one of {PROTOCOLS}")
        if self.join not in JOINS:
            raise InvalidInput(f"unknown join {self.join!r}; use one of {JOINS}")
        if self.duplicates not in DUPLICATE_POLICIES:
            raise InvalidInput(f"unknown duplicate policy {self.duplicates!r}; use one of {DUPLICATE_POLICIES}")
        if self.ecdh_curve not in ECDH_CURVES:
            raise InvalidInput(f"unknown ECDH curve {self.ecdh_curve!r}; use one of {ECDH_CURVES}")
        if self.receiver != "both" and (isinstance(self.receiver, bool) or self.receiver not in (0, 1)):
            raise InvalidInput("receiver must be 'both', 0 or 1")
        if not isinstance(self.normalize, KeyNormalization):
            raise InvalidInput("normalize must be a KeyNormalization")

    def receives(self, rank: int) -> bool:
        """Whether the party at link rank ``rank`` gets the result."""
        return self.receiver == "both" or self.receiver == rank

    def public_view(self, job_id: str) -> dict[str, Any]:
        """Everything both parties must agree on (no column names, no data)."""
        view: dict[str, Any] = {
            "engine": ENGINE_VERSION,
            "job_id": job_id,
            "protocol": self.protocol,
            "receiver": self.receiver,
            "join": self.join,
            "normalize": asdict(self.normalize),
            "duplicates": self.duplicates,
            "key_count": len(self.keys),
        }
        if self.protocol == "ecdh":
            view["ecdh_curve"] = self.ecdh_curve
        return view

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data["keys"] = list(self.keys)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PsiSpec:
        """Build from a JSON-like mapping, refusing unknown fields and wrong types."""
        if not isinstance(data, Mapping):
            raise InvalidInput("a PSI spec is a JSON object")
        allowed = {"keys", "protocol", "receiver", "join", "normalize", "duplicates", "ecdh_curve"}
        unknown = set(data) - allowed
        if unknown:
            raise InvalidInput(f"unknown PSI spec field(s): {sorted(unknown)}")
        if "keys" not in data:
            raise InvalidInput("PSI spec needs 'keys'")
        values = dict(data)
        normalize = data.get("normalize")
        if normalize is not None and not isinstance(normalize, Mapping):
            raise InvalidInput("normalize must be an object of true/false options")
        values["normalize"] = KeyNormalization.from_dict(normalize)
        keys = data["keys"]
        if not isinstance(keys, (str, list, tuple)):
            raise InvalidInput("keys must be a column name or a list of column names")
        values["keys"] = (keys,) if isinstance(keys, str) else tuple(keys)
        for name in ("protocol", "join", "duplicates", "ecdh_curve"):
            if name in values and not isinstance(values[name], str):
                raise InvalidInput(f"{name} must be a string")
        return cls(**values)


@dataclass(frozen=True)
class LinkTls:
    """Mutual TLS material for the PSI link (PEM files readable by this node)."""

    cert_path: Path
    key_path: Path
    ca_path: Path

    def __post_init__(self) -> None:
        for name in ("cert_path", "key_path", "ca_path"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    def to_dict(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in ("cert_path", "key_path", "ca_path")}


@dataclass(frozen=True)
class PsiLink:
    """How this party reaches its peer for one job.

    Attributes:
        job_id: identical on both sides; also the link id. ``[A-Za-z0-9._-]``.
        self_rank: 0 or 1.
        addresses: ``("host:port", "host:port")`` in rank order; this party
            listens on ``addresses[self_rank]``.
        recv_timeout_ms: longest wait for any single message from the peer.
            ``None`` sizes it from the input file (60 s plus 1 s per MB, at
            most 15 min). Long local phases on either side never count
            against it: both sides exchange heartbeats while they prepare.
        connect_timeout_s: how long to wait for the peer to show up.
        tls: mutual TLS for the link, or ``None`` for plain TCP.
    """

    job_id: str
    self_rank: int
    addresses: tuple[str, str]
    recv_timeout_ms: int | None = None
    connect_timeout_s: float = 30.0
    tls: LinkTls | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))
        if not isinstance(self.job_id, str) or not _JOB_ID.match(self.job_id):
            raise InvalidInput("job_id must be 1-64 characters of [A-Za-z0-9._-]")
        if isinstance(self.self_rank, bool) or self.self_rank not in (0, 1):
            raise InvalidInput("self_rank must be 0 or 1")
        if len(self.addresses) != 2:
            raise InvalidInput("a PSI link needs exactly two addresses")
        for address in self.addresses:
            split_address(address)
        if self.addresses[0] == self.addresses[1]:
            raise InvalidInput("the two PSI parties need different addresses")
        if self.recv_timeout_ms is not None and (not isinstance(self.recv_timeout_ms, int) or self.recv_timeout_ms < 1000):
            raise InvalidInput("recv_timeout_ms must be an integer >= 1000")
        if not (isinstance(self.connect_timeout_s, (int, float)) and self.connect_timeout_s > 0):
            raise InvalidInput("connect_timeout_s must be positive")
        if not math.isfinite(self.connect_timeout_s):
            raise InvalidInput("connect_timeout_s must be finite")
        if self.tls is not None and not isinstance(self.tls, LinkTls):
            raise InvalidInput("tls must be a LinkTls")

    @property
    def peer_rank(self) -> int:
        return 1 - self.self_rank

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "self_rank": self.self_rank,
            "addresses": list(self.addresses),
            "recv_timeout_ms": self.recv_timeout_ms,
            "connect_timeout_s": self.connect_timeout_s,
            "tls": None if self.tls is None else self.tls.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PsiLink:
        values = dict(data)
        tls = values.get("tls")
        values["tls"] = None if tls is None else LinkTls(**tls)
        values["addresses"] = tuple(values.get("addresses", ()))
        return cls(**values)


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; InvalidInput if malformed."""
    if not isinstance(address, str) or ":" not in address:
        raise InvalidInput("link addresses must look like host:port")
    host, _, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput("link addresses must look like host:port")
    return host, int(port_text)
