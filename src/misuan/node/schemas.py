"""Typed messages of the node control API (pydantic).

Binary payloads (shares, programs) travel as ``application/octet-stream``
bodies in misuan's own framing, never as pickles; everything else is JSON
validated by these models (unknown fields are refused).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: an asset version (SQLite keeps 64-bit integers; versions stay far below)
Version = Annotated[int, Field(ge=1, le=(1 << 31) - 1)]
#: a public program parameter (bucket sizes, flags)
ParamValue = (
    Annotated[int, Field(ge=-(1 << 63), le=(1 << 63) - 1)]
    | bool
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, Field(max_length=64)]
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(Strict):
    ok: bool
    party: str
    rank: int
    version: str
    protocol: str


class SessionCreate(Strict):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    kind: Literal["run", "linkcheck"] = "run"


class SessionCreated(Strict):
    session_id: str
    link_address: str


class SessionLink(Strict):
    addresses: list[str] = Field(min_length=2, max_length=16)


class Linked(Strict):
    seconds: float


class Ping(Strict):
    nonce: str = Field(pattern=r"^[A-Za-z0-9]{8,64}$")


class RunResult(Strict):
    seconds: float
    send_bytes: int
    recv_bytes: int
    send_actions: int
    recv_actions: int
    outputs: list[str]


class VarStored(Strict):
    name: str
    bytes: int


class Closed(Strict):
    closed: bool


class SessionInfo(Strict):
    id: str
    kind: str
    state: str
    principal: str
    age_s: float
    runs: int


class Status(Strict):
    party: str
    rank: int
    protocol: str
    field: str
    world_size: int
    tls: bool
    version: str
    pid: int
    uptime_s: float
    rss_bytes: int
    workers_rss_bytes: int
    sessions: list[SessionInfo]
    assets: list[dict]
    resident: list[dict]
    store_bytes: int
    audit_rows: int | None = None  # the admin only


class AuditRow(Strict):
    seq: int
    ts: float
    op: str
    asset: str
    requester: str
    bytes_in: int
    bytes_out: int
    status: str
    detail: str
    hash: str


class AuditHead(Strict):
    cluster: str
    party: str
    seq: int
    hash: str
    ts_ms: int
    signature: str
    public_key: str
    last_op_seq: int


class ErrorBody(Strict):
    error: str
    message: str


class PrincipalCreate(Strict):
    principal: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    public_key: str = Field(pattern=r"^ed25519:[A-Za-z0-9_-]{43}$")


class TensorSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    shape: list[Annotated[int, Field(ge=0, le=(1 << 31) - 1)]] = Field(max_length=8)
    commitment: str = Field(default="", max_length=128)


class UploadCreate(Strict):
    version: Version
    kind: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")  # the architecture; its asset kind validates it
    config: dict
    tokenizer: str = Field(max_length=64 << 20)
    tensors: list[TensorSpec] = Field(min_length=1, max_length=100_000)


class RuntimePrepare(Strict):
    version: Version | None = None
    runtime_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class RuntimeLink(Strict):
    version: Version
    addresses: list[str] = Field(min_length=2, max_length=16)


class RequestRef(Strict):
    kind: str = Field(pattern=r"^[a-z]{1,16}$")
    name: str = Field(max_length=160)
    version: Version
    runtime_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    request: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class HandOver(Strict):
    """Move exported outputs of one runtime's request into another's (inside each node)."""

    source: RequestRef
    target: RequestRef
    vars: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")]] = Field(min_length=1, max_length=8)


class ProgramRun(Strict):
    version: Version
    program: str = Field(pattern=r"^[a-z_.]{1,64}$")
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")], ParamValue] = Field(default_factory=dict, max_length=16)
