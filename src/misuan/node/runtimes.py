"""Resident runtimes: stored assets' shares loaded into a warm SPU runtime.

A runtime is keyed by the set of assets its programs need (today one model
version; retrieval + generation will key one on a model and an index). One
runtime per key per node: a session worker whose link to the
other nodes stays up and whose runtime variables hold the weight shares
(``w:<tensor>``). The first user's client asks every node to prepare and link
it (a fresh runtime id); later users find it ready. If a peer is lost, the
runtime fails on every node and the next use builds a new one.

Requests (e.g. one model check, one chat) keep their inputs and outputs under
``r:<request>:`` in the same runtime; only programs the node compiles itself
run there (the programs of the registered capabilities, :mod:`.capability`), and
only outputs those programs declare revealable are returned, to the principal
that made the request (:mod:`.reveal`). This module knows no capability by name.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from ..config import NodeConfig
from ..errors import Conflict, InvalidInput, MisuanError, NotFound, PermissionDenied
from . import programs as P
from . import request_state as RS
from .assets import AssetRegistry
from .audit import AuditLog
from .capability import Capabilities, DropTensors, LoadTensors, NodeProgram, ProgramDef, RequestState, RunContext, RunLoadProgram
from .peers import peers_hold
from .reveal import reveal_declared_output
from .sessions import Session, SessionManager, check_session_id

REQUEST_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SYSTEM = "system"
_PREPARES_PER_MIN = 6


#: one stored asset: (kind, name, version)
AssetRef = tuple[str, str, int]
#: what a runtime holds, and what keys it
AssetSet = tuple[AssetRef, ...]


@dataclass
class Runtime:
    assets: AssetSet
    session: Session
    state: str = "reserved"  # reserved | loading | ready
    loaded_at: float | None = None
    load_seconds: float = 0.0
    #: request id -> principal
    requests: dict[str, str] = field(default_factory=dict)
    #: request id -> where its variables came from, generation step and settings
    states: dict[str, RequestState] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def name(self) -> str:
        return self.assets[0][1]

    @property
    def version(self) -> int:
        return self.assets[0][2]


class Runtimes:
    """Resident runtimes over one asset kind's registry (the kind programs run on)."""

    def __init__(self, cfg: NodeConfig, sessions: SessionManager, registry: AssetRegistry, audit: AuditLog, capabilities: Capabilities):
        self.cfg = cfg
        self.sessions = sessions
        self.registry = registry
        self.audit = audit
        self.capabilities = capabilities
        self.kind = registry.kind.name
        self._uploadable = capabilities.uploadable()
        self._lock = threading.Lock()
        self._rt: dict[AssetSet, Runtime] = {}
        self._programs: dict[tuple, NodeProgram] = {}
        self._compile_lock = threading.Lock()
        #: principal -> monotonic times of its recent runtime builds
        self._prepares: dict[str, list[float]] = {}
        #: (principal, model, program) -> monotonic times of recent owner-program runs
        self._owner_runs: dict[str, list[float]] = {}
        from .program_cache import ProgramCache

        self._disk = ProgramCache(cfg.state_dir / "programs", capabilities.code_roots())

    # ------------------------------------------------------------ helpers

    def _allowed(self, principal: str, name: str) -> None:
        if not self.registry.can_use(principal, name):
            raise NotFound(f"unknown {self.kind} {name!r}")

    def _key(self, name: str, version: int) -> AssetSet:
        return ((self.kind, name, version),)

    def _asset(self, key: AssetSet) -> str:
        return "+".join(f"{n}@{v}" for _k, n, v in key)

    def _get(self, name: str, version: int, rid: str) -> Runtime:
        rt = self._rt.get(self._key(name, version))
        if rt is None or rt.id != rid or rt.session.state in ("closed", "failed"):
            raise NotFound(f"unknown or expired {self.kind} runtime")
        return rt

    def _drop(self, key: AssetSet, reason: str) -> None:
        rt = self._rt.pop(key, None)
        if rt is not None:
            try:
                self.sessions.close_internal(rt.id, reason=reason)
            except NotFound:
                pass

    # ------------------------------------------------------------ lifecycle

    def state(self, principal: str, name: str, version: int | None) -> dict:
        self._allowed(principal, name)
        version = self.registry.resolve_version(name, version)
        rt = self._rt.get(self._key(name, version))
        if rt is not None and rt.session.state in ("closed", "failed"):
            with self._lock:
                self._drop(self._key(name, version), "failed")
            rt = None
        return {"name": name, "version": version, "runtime_id": rt.id if rt else None, "state": rt.state if rt else "absent"}

    def prepare(self, principal: str, name: str, version: int | None, rid: str) -> dict:
        """Reserve a fresh runtime.

        A live runtime is replaced only when it is gone for the cluster: some peer
        no longer holds it (a node restarted), so it can never compute again. A
        reserved one nobody linked within the link timeout is stale. A grantee
        cannot kill everyone's requests by asking for a new id, and runtime
        builds are rate-limited per principal."""
        self._allowed(principal, name)
        check_session_id(rid)
        version = self.registry.resolve_version(name, version)
        key = self._key(name, version)
        with self._lock:
            cur = self._rt.get(key)
            if cur is not None and cur.id == rid:
                return {"runtime_id": rid, "state": cur.state, "link_address": self.cfg.party.link_address(cur.session.port)}
        if self._live(cur) and all(self._peers_hold(cur.id)):
            raise Conflict(f"this {self.kind} already has a {cur.state} runtime on every node")
        with self._lock:
            if self._rt.get(key) is not cur:
                raise Conflict(f"this {self.kind}'s runtime changed meanwhile; retry")
            self._rate_limit(principal)
            self._drop(key, "replaced")
            sess = self.sessions.create_internal(rid, SYSTEM, kind=f"{self.kind}:{self._asset(key)}")
            self._rt[key] = Runtime(key, sess)
        self.audit.append(f"{self.kind}.runtime.prepare", asset=self._asset(key), requester=principal, detail={"runtime": rid})
        return {"runtime_id": rid, "state": "reserved", "link_address": self.cfg.party.link_address(sess.port)}

    def link_and_load(self, principal: str, name: str, version: int, rid: str, addresses: list[str]) -> dict:
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        if rt.state != "reserved":
            raise Conflict(f"runtime is {rt.state}")
        rt.state = "loading"
        try:
            link_s = self.sessions.link(rt.session, addresses, self._runtime_options())
            t0 = time.perf_counter()
            n_tensors = self._load(rt)
        except BaseException:
            with self._lock:
                if self._rt.get(rt.assets) is rt:
                    self._drop(rt.assets, "load failed")
            raise
        rt.load_seconds = time.perf_counter() - t0
        rt.loaded_at = time.time()
        rt.state = "ready"
        self.audit.append(
            f"{self.kind}.runtime.load",
            asset=self._asset(rt.assets),
            requester=principal,
            detail={"runtime": rid, "tensors": n_tensors, "seconds": round(rt.load_seconds, 2)},
        )
        return {"link_seconds": link_s, "load_seconds": rt.load_seconds, "tensors": n_tensors}

    def _load(self, rt: Runtime) -> int:
        """Make every asset of ``rt`` resident by its kind's load plan; the number of stored tensors."""
        n = 0
        for kind, name, version in rt.assets:
            specs = self.registry.tensor_specs(name, version)
            n += len(specs)
            for step in self.capabilities.load_plan(kind)(self.registry.config(name, version), specs):
                if isinstance(step, LoadTensors):
                    self._load_tensors(rt, name, version, list(step.tensors))
                elif isinstance(step, RunLoadProgram):
                    self._run_load_program(rt, step.build())
                elif isinstance(step, DropTensors):
                    self.sessions.unsafe_call(rt.session, {"op": "del_var", "names": [P.weight_var(t) for t in step.tensors]})
                else:  # pragma: no cover - a new kind of step needs its handling here
                    raise TypeError(f"unknown load step {step!r}")
        return n

    def _load_tensors(self, rt: Runtime, name: str, version: int, tensors: list[str]) -> None:
        """Load stored shares of ``tensors`` into the runtime straight from the node's store."""
        items = []
        for tensor in tensors:
            key, aad = self.registry.store_key(name, version, tensor)
            items.append({"name": P.weight_var(tensor), "key": key, "aad": aad})
        self.sessions.unsafe_call(
            rt.session,
            {"op": "load_vars", "store_root": str(self.registry.store.root), "key_file": str(self.cfg.storage_key_file), "items": items},
            timeout=3600,
        )

    def _run_load_program(self, rt: Runtime, prog: NodeProgram) -> None:
        """A load-time program: weights in, weights out, no request inputs."""
        self.sessions.run(rt.session, prog.program.executable, prog.program.sha256, request="load")

    def _runtime_options(self) -> dict:
        return {}

    def _live(self, rt: Runtime | None) -> bool:
        """Whether ``rt`` may still compute: not failed, and not a reservation nobody
        linked within the link timeout."""
        if rt is None or rt.session.state in ("closed", "failed"):
            return False
        return not (rt.state == "reserved" and time.time() - rt.session.created > self._reserve_grace_s())

    def holds(self, rid: str) -> bool:
        """Whether a live runtime with this (unguessable) id is here; asked by peers."""
        return any(rt.id == rid and rt.session.state not in ("closed", "failed") for rt in list(self._rt.values()))

    def _peers_hold(self, rid: str) -> list[bool]:
        return peers_hold(self.cfg, rid)

    def _reserve_grace_s(self) -> float:
        return self.cfg.cluster.timeouts.link_connect_s + 30

    def _limit_runs(self, principal: str, name: str, pdef: ProgramDef) -> None:
        """Owner programs reveal numbers computed from the asset (hosting's check: one
        per tensor): at most ``pdef.runs_per_hour`` per asset and owner on this node."""
        limit = pdef.runs_per_hour
        if limit is None:
            return
        key, now = f"{principal}\0{name}\0{pdef.name}", time.monotonic()
        recent = [t for t in self._owner_runs.get(key, []) if now - t < 3600]
        if len(recent) >= limit:
            raise Conflict(f"{pdef.name} ran {limit} times in the last hour on this {self.kind}; retry later")
        self._owner_runs[key] = [*recent, now]

    def _rate_limit(self, principal: str) -> None:
        """At most ``_PREPARES_PER_MIN`` runtime builds per principal per minute."""
        now = time.monotonic()
        recent = [t for t in self._prepares.get(principal, []) if now - t < 60]
        if len(recent) >= _PREPARES_PER_MIN:
            raise Conflict("too many runtime builds; retry in a minute")
        self._prepares[principal] = [*recent, now]

    # ------------------------------------------------------------ requests

    def _request(self, rt: Runtime, principal: str, request: str, create: bool = False) -> None:
        if not REQUEST_RE.match(request or ""):
            raise InvalidInput("request ids are 8-64 chars of letters, digits, '_' or '-'")
        owner = rt.requests.get(request)
        if owner is None and create:
            rt.requests[request] = principal
        elif owner != principal:
            raise NotFound("unknown request")

    def put_input(self, principal: str, name: str, version: int, rid: str, request: str, var: str, data: bytes) -> None:
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        if rt.state != "ready":
            raise Conflict(f"runtime is {rt.state}")
        if not re.match(r"^[A-Za-z0-9_]{1,64}$", var):
            raise InvalidInput("invalid variable name")
        if var not in self._uploadable:  # declared by a registered program (some are registered only where turned on)
            raise InvalidInput(f"{var!r} is not an input a client may upload (noise, masks, tokens and caches are made by the nodes)")
        if rt.requests.get(request, principal) != principal:
            raise NotFound("unknown request")  # another principal's request: nothing about it, not even frame errors
        meta = RS.upload_meta(data)
        self._request(rt, principal, request, create=True)
        self.sessions.set_var(rt.session, P.request_var(request, var), data)
        self.audit.append(
            f"{self.kind}.request.put",
            asset=self._asset(rt.assets),
            requester=principal,
            bytes_in=len(data),
            detail={"request": request, "var": var},
        )
        state = rt.states.setdefault(request, RequestState())
        state.origin[var], state.uploads[var] = "client", meta

    def run(self, principal: str, name: str, version: int, rid: str, request: str, program: str, params: dict) -> dict:
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        if rt.state != "ready":
            raise Conflict(f"runtime is {rt.state}")
        pdef = self._program_def(program)
        params, settings = pdef.split(params)
        np_ = self._program(name, version, pdef, params)
        if np_.who == "owner" and self.registry.owner(name) != principal:
            raise PermissionDenied(f"only the owner of {name!r} may run {program!r}")
        if not self.registry.can_use(principal, name, pdef.scope):
            raise PermissionDenied(f"your grant on {name!r} does not cover {program!r} (needs a {pdef.scope!r} grant)")
        self._request(rt, principal, request, create=not np_.client_inputs and not np_.carried_inputs)
        state = rt.states.setdefault(request, RequestState())
        RS.check_sources(np_, state, self.registry.storage_type, first=pdef.follows or program)
        ctx = RunContext(np_, state, params, settings, self.registry.config(name, version))
        values, step = pdef.node_values(ctx) if np_.node_inputs and pdef.node_values else ({}, 0)
        if {n for n, _ in np_.node_inputs} != set(values):  # every public input made here, nothing else
            raise InvalidInput(f"{program}: the node cannot make its public inputs")
        for var, value in values.items():
            self.sessions.set_public(rt.session, P.request_var(request, var), value)
        self._limit_runs(principal, name, pdef)
        op, asset = f"{self.kind}.run.{program}", self._asset(rt.assets)
        try:
            res = self.sessions.run(rt.session, np_.program.executable, np_.program.sha256, request=request)
        except MisuanError as exc:
            self.audit.append(
                op, asset=asset, requester=principal, status="failed", detail={"request": request, "error": type(exc).__name__}
            )
            raise
        for out in res["outputs"]:
            state.origin[out.rsplit(":", 1)[-1]] = "node"
        detail = {"request": request, "send_bytes": res.get("send_bytes", 0), "seconds": round(res["seconds"], 3)}
        if np_.check is not None and not self.sessions.reveal_flag(rt.session, P.request_var(request, np_.check)):
            self.end_request(principal, name, version, rid, request)
            self.audit.append(op, asset=asset, requester=principal, detail={**detail, "refused": np_.check})
            raise InvalidInput(f"{program}: request inputs failed the check {np_.check!r} ({pdef.check_failed}); request dropped")
        if pdef.after_run is not None:
            pdef.after_run(ctx, step)
        state.exportable.update(pdef.exports)
        for out in np_.revealable:
            rt.session.readable.add(P.request_var(request, out))  # declared: reveal.py may return it
        self.audit.append(op, asset=asset, requester=principal, detail=detail)
        return res

    def compile(self, principal: str, name: str, version: int, program: str, params: dict) -> dict:
        """Build and compile a program ahead of running it (so parties start runs together)."""
        self._allowed(principal, name)
        t0 = time.perf_counter()
        pdef = self._program_def(program)
        np_ = self._program(name, version, pdef, pdef.split(params)[0])
        return {"sha256": np_.program.sha256, "seconds": time.perf_counter() - t0}

    def _program_def(self, program: str) -> ProgramDef:
        pdef = self.capabilities.program(program)
        if pdef.asset_kind != self.kind:
            raise InvalidInput(f"program {program!r} runs on a {pdef.asset_kind}, not on a {self.kind}")
        return pdef

    def _program(self, name: str, version: int, pdef: ProgramDef, params: dict) -> NodeProgram:
        """Build (or find) ``pdef`` compiled for this asset: from memory, from the disk
        cache (keyed on the code roots of every registered capability), or here."""
        key = (name, version, pdef.name, tuple(sorted(params.items())))
        with self._compile_lock:
            if key not in self._programs:
                specs, config = self.registry.tensor_specs(name, version), self.registry.config(name, version)
                disk_key = self._disk.key(pdef.name, {**params, "_tensors": [t for t, _ in specs]}, config)
                built = self._disk.get(disk_key)
                if built is None:
                    built = pdef.build(specs, config, params)
                    self._disk.put(disk_key, built)
                self._programs[key] = built
            return self._programs[key]

    def get_output(self, principal: str, name: str, version: int, rid: str, request: str, var: str) -> bytes:
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        self._request(rt, principal, request)  # the requester's own request only
        return reveal_declared_output(self.sessions, rt.session, P.request_var(request, var), principal)

    def end_request(self, principal: str, name: str, version: int, rid: str, request: str) -> None:
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        self._request(rt, principal, request)
        self.sessions.unsafe_call(rt.session, {"op": "del_prefix", "prefix": P.request_var(request, "")}, timeout=60)
        prefix = P.request_var(request, "")
        rt.session.held = {n for n in rt.session.held if not n.startswith(prefix)}
        rt.session.readable = {n for n in rt.session.readable if not n.startswith(prefix)}
        rt.requests.pop(request, None)
        rt.states.pop(request, None)
        self.audit.append(f"{self.kind}.request.end", asset=self._asset(rt.assets), requester=principal, detail={"request": request})

    # ------------------------------------------------------------ hand-over between runtimes

    def unsafe_export_share(self, principal: str, name: str, version: int, rid: str, request: str, var: str) -> bytes:
        """This node's share of an output its program declared exportable, for a
        request of the same principal in another runtime on this node
        (:func:`hand_over`); never returned to a client."""
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        self._request(rt, principal, request)
        state = rt.states.get(request)
        if state is None or var not in state.exportable:
            raise InvalidInput(f"{var!r} is not an output this request may hand over")
        return self.sessions.unsafe_read_share(rt.session, P.request_var(request, var))

    def import_share(self, principal: str, name: str, version: int, rid: str, request: str, var: str, data: bytes, source: str) -> None:
        """Set a request's carried input ``var`` from another runtime's exported share."""
        self._allowed(principal, name)
        rt = self._get(name, version, rid)
        if rt.state != "ready":
            raise Conflict(f"runtime is {rt.state}")
        if var not in self.capabilities.importable(self.kind):
            raise InvalidInput(f"{var!r} is not an input a {self.kind} request may import")
        if rt.requests.get(request, principal) != principal:
            raise NotFound("unknown request")
        dtype, shape, _vis, _storage = RS.upload_meta(data)
        self._request(rt, principal, request, create=True)
        self.sessions.set_var(rt.session, P.request_var(request, var), data)
        state = rt.states.setdefault(request, RequestState())
        state.origin[var], state.imported[var] = "node", (dtype, shape)
        state.uploads.pop(var, None)
        self.audit.append(
            f"{self.kind}.request.import",
            asset=self._asset(rt.assets),
            requester=principal,
            detail={"request": request, "var": var, "from": source},
        )

    # ------------------------------------------------------------ upkeep

    def unload(self, name: str, versions: list[int] | None = None) -> None:
        with self._lock:
            for key in [k for k in self._rt if any(n == name and (versions is None or v in versions) for _k, n, v in k)]:
                self._drop(key, f"{self.kind} removed")

    def resident(self) -> list[dict]:
        out = []
        for rt in list(self._rt.values()):
            if rt.session.state in ("closed", "failed"):
                continue
            out.append(
                {
                    "name": rt.name,
                    "version": rt.version,
                    "assets": [{"kind": k, "name": n, "version": v} for k, n, v in rt.assets],
                    "runtime_id": rt.id,
                    "state": rt.state,
                    "load_seconds": round(rt.load_seconds, 2),
                    "requests": len(rt.requests),
                    "pid": rt.session.worker.pid,
                    "rss_bytes": _rss(rt.session.worker.pid),
                }
            )
        return out

    def check_alive(self) -> None:
        if any(rt.session.state in ("closed", "failed") for rt in self._rt.values()):
            with self._lock:
                for key, rt in list(self._rt.items()):
                    if rt.session.state in ("closed", "failed"):
                        self._rt.pop(key, None)


def hand_over(src: Runtimes, dst: Runtimes, principal: str, frm: dict, to: dict, names: list[str]) -> None:
    """Move a principal's exported request outputs (``frm``: name, version,
    runtime_id, request) into its request ``to`` of another runtime, share by share
    inside this node: the value stays secret-shared; no node and no client sees it."""
    source = f"{src.kind}:{frm['name']}@{frm['version']}"
    src._allowed(principal, frm["name"])
    dst._allowed(principal, to["name"])
    if src.registry.public_tokenizer(frm["name"], frm["version"]) != dst.registry.public_tokenizer(to["name"], to["version"]):
        raise InvalidInput("values move only between assets of one tokenizer family")
    for var in names:
        data = src.unsafe_export_share(principal, frm["name"], frm["version"], frm["runtime_id"], frm["request"], var)
        dst.import_share(principal, to["name"], to["version"], to["runtime_id"], to["request"], var, data, source)


def _rss(pid: int) -> int:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


__all__ = ["AssetRef", "AssetSet", "Runtime", "Runtimes", "hand_over"]
