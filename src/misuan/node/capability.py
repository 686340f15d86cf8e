"""The socket a capability fills on a node.

The node core (sessions, runtimes, the asset registry, the program cache, the
HTTP app) never imports a capability by name. Each capability hands the node
one :class:`NodeCapability` value, listed in :mod:`misuan.registry`:

* ``asset_kinds``: the kinds of stored assets it owns (``model``; later ``kb``,
  ``dataset``, ``adapter``), each with a validator of its public config;
* ``programs``: the programs the nodes compile themselves over stored assets,
  each a :class:`ProgramDef` whose builder returns a :class:`NodeProgram` that
  declares its inputs, its outputs and which outputs may be revealed to whom;
* ``load_plans``: how an asset of a kind becomes resident in a runtime;
* ``router`` and ``jobs``: optional HTTP routes and background job manager,
  built from a :class:`NodeContext`;
* ``code_roots``: the source files and folders (relative to the ``misuan``
  package) whose code defines its programs; they key the compiled-program cache,
  so a code change recompiles.

The core compiles, caches, checks hashes, makes node inputs and enforces the
declared reveals (:mod:`.reveal`) in one place for every capability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence, Union

import numpy as np

from ..errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import APIRouter

    from ..config import NodeConfig
    from ..mpc.compile import Program
    from .assets import AssetRegistry
    from .audit import AuditLog
    from .db import Database
    from .sessions import SessionManager

#: (tensor name, shape) of a stored asset's tensors, in upload order
TensorSpecs = Sequence[tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class NodeProgram:
    """A compiled node program and what it declares."""

    program: "Program"
    #: request-scoped inputs (short names), in the program's argument order
    request_inputs: tuple[str, ...]
    #: outputs (short names) the requester may read back; nothing else ever leaves
    revealable: tuple[str, ...]
    #: who may run it: "owner" (of the asset) or "grantee" (the owner or a grantee)
    who: str
    #: the request inputs a client uploads; the others are carried over from an
    #: earlier run of the request or made by the nodes (``node_inputs``)
    client_inputs: tuple[str, ...] = ()
    #: public request inputs each node computes itself: (short name, shape)
    node_inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: an output the nodes reveal among themselves; the run is refused unless it is true
    check: str | None = None
    #: (short name, shape, dtype) of each client input: an upload that does not match
    #: is refused before the run (a malformed share would fail the runtime for everyone)
    client_specs: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    #: (short name, shape, dtype) of each carried input (checked when one was imported)
    carried_specs: tuple[tuple[str, tuple[int, ...], str], ...] = ()

    @property
    def carried_inputs(self) -> tuple[str, ...]:
        node = {n for n, _ in self.node_inputs}
        return tuple(i for i in self.request_inputs if i not in self.client_inputs and i not in node)


@dataclass
class RequestState:
    """What a node keeps per request in a resident runtime."""

    #: short variable name -> "client" (uploaded) or "node" (a run's output)
    origin: dict[str, str] = field(default_factory=dict)
    #: uploaded variable -> (dtype code, shape, visibility, storage) read from its share frame
    uploads: dict[str, tuple[int, tuple[int, ...], int, str]] = field(default_factory=dict)
    #: the capability's own per-request values (public: positions, seeds, steps)
    values: dict[str, Any] = field(default_factory=dict)
    #: outputs of this request another runtime's request of the same principal may import
    exportable: set[str] = field(default_factory=set)
    #: variables imported from another runtime -> (dtype code, shape) of the share
    imported: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What a program's run-time hooks see: public values only."""

    program: NodeProgram
    state: RequestState
    #: compile-time parameters (already checked against ``ProgramDef.params``)
    params: Mapping[str, Any]
    #: run-time settings split off by ``ProgramDef.settings``
    settings: Mapping[str, Any]
    #: the asset's public config
    config: Mapping[str, Any]


@dataclass(frozen=True)
class ProgramDef:
    """One program a capability lets clients run in a resident runtime."""

    name: str
    #: compile-time parameter keys: anything else is refused before compiling
    params: frozenset[str]
    #: (tensor specs, public config, params) -> the compiled program
    build: Callable[[TensorSpecs, dict, dict], NodeProgram]
    #: run-time settings keys (not part of the compiled program)
    settings: frozenset[str] = frozenset()
    #: settings -> checked settings (raise InvalidInput on a bad value)
    check_settings: Callable[[dict], dict] | None = None
    #: the public inputs each node makes itself, and the step they are for
    node_values: Callable[[RunContext], tuple[dict[str, np.ndarray], int]] | None = None
    #: record a successful (and checked) run in the request's state
    after_run: Callable[[RunContext, int], None] | None = None
    #: input names a client may upload to this program (an allow-list)
    uploads: tuple[str, ...] = ()
    #: owner programs reveal numbers computed from the asset: at most this many
    #: runs per hour per asset and owner on each node (None: unlimited)
    runs_per_hour: int | None = None
    #: the one-line reason given when the program's ``check`` output is false
    check_failed: str = "request inputs failed the program's check"
    #: the program whose run must come first in a request (it writes the carried inputs)
    follows: str | None = None
    #: the asset kind whose runtimes run it
    asset_kind: str = "model"
    #: the grant scope a grantee needs to run it (None: any grant)
    scope: str | None = None
    #: outputs a request of the same principal in another runtime on this node may
    #: import (the share moves inside the node, never to a client)
    exports: tuple[str, ...] = ()
    #: carried inputs that may be imported from another runtime's exports
    imports: tuple[str, ...] = ()

    def split(self, params: dict) -> tuple[dict, dict]:
        """``params`` -> (compile-time parameters, run-time settings), both checked."""
        compile_params = {k: v for k, v in params.items() if k not in self.settings}
        unknown = sorted(set(compile_params) - self.params)
        if unknown:
            raise InvalidInput(f"program {self.name!r} takes no parameter {unknown[0]!r}")
        settings = {k: v for k, v in params.items() if k in self.settings}
        if self.check_settings is not None:
            settings = self.check_settings(settings)
        return compile_params, settings


@dataclass(frozen=True)
class AssetKind:
    """A kind of stored asset: its name (``model``) and a validator of the
    public part an owner publishes (the architecture name and its config)."""

    name: str
    #: (architecture, public config) -> None, or raise InvalidInput
    validate: Callable[[str, dict], None]
    #: the uses a grant may be limited to (``ProgramDef.scope``); none: grants are whole
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadTensors:
    """Load these stored tensors' shares into the runtime (as ``w:<tensor>``)."""

    tensors: tuple[str, ...]


@dataclass(frozen=True)
class RunLoadProgram:
    """Run a load-time program (weights in, weights out, no request inputs)."""

    build: Callable[[], NodeProgram]


@dataclass(frozen=True)
class DropTensors:
    tensors: tuple[str, ...]


LoadStep = Union[LoadTensors, RunLoadProgram, DropTensors]
#: (public config, tensor specs) -> the steps that make the asset resident
LoadPlan = Callable[[dict, TensorSpecs], Iterable[LoadStep]]


def load_everything(config: dict, specs: TensorSpecs) -> list[LoadStep]:
    """The default plan: every stored tensor, as stored."""
    return [LoadTensors(tuple(t for t, _ in specs))]


class Jobs(Protocol):
    """A capability's background jobs, kept by the node's upkeep loop."""

    def reap(self, max_idle_s: float) -> None: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class NodeContext:
    """What a capability's router and jobs may use on a node."""

    cfg: "NodeConfig"
    db: "Database"
    audit: "AuditLog"
    sessions: "SessionManager"
    #: asset kind -> its registry
    assets: Mapping[str, "AssetRegistry"]
    #: the FastAPI dependency that yields the principal who signed a request (body included)
    principal: Callable[..., Any] | None = None
    #: name -> the jobs of every capability (filled as they are made)
    jobs: dict[str, Jobs] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCapability:
    name: str
    #: files and folders (relative to the ``misuan`` package) whose code defines its programs
    code_roots: tuple[str, ...] = ()
    asset_kinds: tuple[AssetKind, ...] = ()
    programs: tuple[ProgramDef, ...] = ()
    #: asset kind -> how it becomes resident (default: every tensor as stored)
    load_plans: Mapping[str, LoadPlan] = field(default_factory=dict)
    router: Callable[[NodeContext], "APIRouter"] | None = None
    jobs: Callable[[NodeContext], Jobs] | None = None


@dataclass(frozen=True)
class Capabilities:
    """The capabilities one node runs (the registry's list, read once at start)."""

    items: tuple[NodeCapability, ...]

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for cap in self.items:
            for p in cap.programs:
                if p.name in seen:
                    raise ValueError(f"program {p.name!r} defined by both {seen[p.name]} and {cap.name}")
                seen[p.name] = cap.name

    def program(self, name: str) -> ProgramDef:
        for cap in self.items:
            for p in cap.programs:
                if p.name == name:
                    return p
        raise InvalidInput(f"unknown program {name!r}; available: {sorted(self.program_names())}")

    def program_names(self) -> list[str]:
        return [p.name for cap in self.items for p in cap.programs]

    def asset_kind(self, name: str) -> AssetKind:
        for cap in self.items:
            for k in cap.asset_kinds:
                if k.name == name:
                    return k
        raise InvalidInput(f"unknown asset kind {name!r}")

    def asset_kinds(self) -> list[AssetKind]:
        return [k for cap in self.items for k in cap.asset_kinds]

    def load_plan(self, kind: str) -> LoadPlan:
        for cap in self.items:
            if kind in cap.load_plans:
                return cap.load_plans[kind]
        return load_everything

    def importable(self, kind: str) -> frozenset[str]:
        """Every input name a request in a runtime of ``kind`` may import."""
        return frozenset(i for cap in self.items for p in cap.programs if p.asset_kind == kind for i in p.imports)

    def uploadable(self) -> frozenset[str]:
        """Every input name a client may upload to some registered program."""
        return frozenset(u for cap in self.items for p in cap.programs for u in p.uploads)

    def code_roots(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for cap in self.items for r in cap.code_roots))


__all__ = [
    "AssetKind",
    "Capabilities",
    "DropTensors",
    "Jobs",
    "LoadPlan",
    "LoadStep",
    "LoadTensors",
    "NodeCapability",
    "NodeContext",
    "NodeProgram",
    "ProgramDef",
    "RequestState",
    "RunContext",
    "RunLoadProgram",
    "load_everything",
]
