"""The client SDK: drive every node of a cluster, keep plaintext at the edge.

``Client.run(fn, *args)`` compiles ``fn`` for the arguments' shapes, secret-
shares the arguments here, sends share i to node i only, runs the program on
all nodes, fetches one output share from each and reconstructs the result
here. Generic ``run`` works only on the caller's own inputs: each session is a
fresh runtime on every node that holds nothing but what this client put in.
"""

from __future__ import annotations

import secrets
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .. import errors as E
from ..config import ClusterConfig, load_cluster
from ..identity import Identity, load_identity
from ..mpc.compile import Program, compile_program, spec_of
from ..mpc.shares import SecretShare, Sharer
from .receipts import ReceiptBook
from .transport import NodeClient


@dataclass(frozen=True)
class RunStats:
    """What one secure run cost (bytes summed over all nodes)."""

    seconds: float
    link_seconds: float
    compute_seconds: float
    send_bytes: int
    recv_bytes: int
    rounds: int
    per_node: tuple[dict, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 4),
            "link_seconds": round(self.link_seconds, 4),
            "compute_seconds": round(self.compute_seconds, 4),
            "send_bytes": self.send_bytes,
            "recv_bytes": self.recv_bytes,
            "rounds": self.rounds,
        }


def _pick_error(errors: dict[int, BaseException], ranks: list[int]) -> BaseException:
    """The error that best names the node at fault.

    A node that dropped its connection is at fault. Otherwise nodes that are
    alive report which peer went silent on the SPU link; a peer that is blamed
    but never answered itself is the culprit (a live node that reports is not).
    """
    for e in errors.values():
        if isinstance(e, E.NodeUnavailable):
            return e
    reported = {r: e for r, e in errors.items() if getattr(e, "reported_by", None) is not None}
    blamed = [e.party for e in reported.values()]
    silent = [p for p in dict.fromkeys(blamed) if p not in errors]
    if silent:
        return next(e for e in reported.values() if e.party == silent[0])
    # a node's own fault (bad share file, bad input) before the link errors it causes
    for kind in (E.NodeTimeout, E.NodeError, E.IntegrityError, E.MisuanError):
        for r in ranks:
            if isinstance(errors.get(r), kind) and not isinstance(errors[r], E.ComputeError):
                return errors[r]
    for r in ranks:
        if r in errors:
            return errors[r]
    return next(iter(errors.values()))


#: how long the client waits for the other nodes' reports after a first failure.
REPORT_GRACE_S = 2.0


class ClusterSession:
    """One session open on every node (a fresh SPU runtime per node)."""

    def __init__(self, client: "Client", kind: str = "run"):
        self.client = client
        self.id = secrets.token_hex(12)
        self.kind = kind
        self.link_seconds = 0.0
        self._opened: list[int] = []

    def __repr__(self) -> str:
        return f"ClusterSession({self.id!r})"

    def open(self) -> "ClusterSession":
        import time

        t0 = time.perf_counter()
        nodes = self.client.nodes

        def create(i: int) -> str:
            addr = nodes[i].create_session(self.id, self.kind)
            self._opened.append(i)
            return addr

        try:
            addresses = self.client.fanout(create)
            timeout = self.client.cluster.timeouts.link_connect_s + 60
            self.client.fanout(lambda i: nodes[i].link(self.id, addresses, timeout), on_error=self.abort)
        except BaseException:
            self.abort()
            raise
        self.link_seconds = time.perf_counter() - t0
        return self

    def put(self, name: str, shares: Sequence[SecretShare]) -> None:
        """Send share i of one value to node i only."""
        nodes = self.client.nodes
        self.client.fanout(lambda i: nodes[i].put_var(self.id, name, shares[i].data), on_error=self.abort)

    def get(self, name: str) -> list[SecretShare]:
        nodes = self.client.nodes
        return [SecretShare(b) for b in self.client.fanout(lambda i: nodes[i].get_var(self.id, name), on_error=self.abort)]

    def run(self, program: Program) -> list[dict]:
        nodes = self.client.nodes
        return self.client.fanout(lambda i: nodes[i].run(self.id, program.executable, program.sha256), on_error=self.abort)

    def ping(self) -> None:
        nonce = secrets.token_hex(8)
        nodes = self.client.nodes
        self.client.fanout(lambda i: nodes[i].ping(self.id, nonce), on_error=self.abort)

    def abort(self) -> None:
        """Free the session on every node that has it (best effort, also cancels runs)."""
        self.close(quiet=True, timeout=self.client.cluster.timeouts.http_connect_s + 3)

    def close(self, quiet: bool = True, timeout: float = 30) -> None:
        opened, self._opened = self._opened, []
        if not opened:
            return
        nodes = self.client.nodes

        def close_one(i: int) -> None:
            try:
                nodes[i].close_session(self.id, timeout)
            except E.NotFound:
                pass
            except E.MisuanError:
                if not quiet:
                    raise

        self.client.fanout(close_one, ranks=opened)

    def __enter__(self) -> "ClusterSession":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class Client:
    """A handle on a running cluster (local or remote)."""

    def __init__(self, cluster: ClusterConfig, identity: Identity | str | Path | None = None):
        self.cluster = cluster
        if identity is None:
            identity = cluster.default_identity()
        elif not isinstance(identity, Identity):
            identity = load_identity(identity)
        self.identity = identity
        self.receipts = ReceiptBook(cluster)
        self.nodes = [NodeClient(cluster, p, identity, self.receipts) for p in cluster.parties]
        self.sharer = Sharer(cluster.mpc, cluster.world_size)
        self._pool = ThreadPoolExecutor(max_workers=max(4, 2 * cluster.world_size), thread_name_prefix="misuan-client")
        self._programs: dict[tuple, Program] = {}
        self._models: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        return f"Client({self.cluster.name!r}, parties={self.cluster.world_size}, protocol={self.cluster.mpc.protocol})"

    def model_ref(self, name: str) -> str:
        """A model's full name ``<owner>/<name>``; a bare name is one of your own."""
        return name if "/" in name else f"{self.identity.principal}/{name}"

    # ------------------------------------------------------------ fan-out

    def fanout(self, fn: Callable[[int], Any], *, ranks: Sequence[int] | None = None, on_error: Callable[[], None] | None = None) -> list:
        """Call ``fn(rank)`` for every node concurrently; results in rank order.

        On the first failure, ``on_error`` runs at once (e.g. to cancel the
        session on the other nodes) and the most telling error is raised.
        """
        ranks = list(range(len(self.nodes))) if ranks is None else list(ranks)
        futures = {self._pool.submit(fn, r): r for r in ranks}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            # Let live nodes report what they saw (e.g. which peer went silent),
            # then cancel the rest and name the node at fault.
            _, pending = wait(pending, timeout=REPORT_GRACE_S)
            if on_error is not None:
                on_error()
            wait(pending, timeout=5)
            errors = {r: f.exception() for f, r in futures.items() if f.done() and f.exception() is not None}
            # errors that arrived after our own cancel say nothing about the fault
            raise _pick_error(errors, ranks)
        return [f.result() for f in sorted(futures, key=futures.get)]

    # ------------------------------------------------------------ API

    def health(self) -> list[dict]:
        return self.fanout(lambda i: self.nodes[i].health())

    def status(self) -> list[dict]:
        return self.fanout(lambda i: self.nodes[i].status())

    def audit(self, n: int = 50) -> list[list[dict]]:
        return self.fanout(lambda i: self.nodes[i].audit(n))

    def session(self, kind: str = "run") -> ClusterSession:
        return ClusterSession(self, kind)

    def linkcheck(self) -> float:
        """Open a session on every node, check the SPU link end to end, close it."""
        with self.session("linkcheck") as s:
            s.ping()
            return s.link_seconds

    def compile(self, fn: Callable, *args) -> Program:
        flat, in_tree = jax.tree_util.tree_flatten(args)
        specs = [spec_of(a) for a in flat]
        key = (fn, in_tree, tuple((s.shape, str(s.dtype)) for s in specs))
        prog = self._programs.get(key)
        if prog is None:

            def flat_fn(*xs):
                return fn(*jax.tree_util.tree_unflatten(in_tree, list(xs)))

            prog = compile_program(flat_fn, specs, name=getattr(fn, "__name__", "program"))
            self._programs[key] = prog
        return prog

    def run(self, fn: Callable, *args) -> Any:
        """Run ``fn(*args)`` under MPC on the caller's own inputs; return the plaintext result."""
        return self.run_with_stats(fn, *args)[0]

    def run_with_stats(self, fn: Callable, *args) -> tuple[Any, RunStats]:
        import time

        t0 = time.perf_counter()
        flat, _ = jax.tree_util.tree_flatten(args)
        prog = self.compile(fn, *args)
        arrays = [np.asarray(a, dtype=np.dtype(s.dtype)) for a, s in zip(flat, map(spec_of, flat))]
        with self.session() as sess:
            for name, arr in zip(prog.input_names, arrays):
                sess.put(name, self.sharer.share(arr))
            per_node = sess.run(prog)
            outs = [self.sharer.reveal(sess.get(name)) for name in prog.output_names]
        result = jax.tree_util.tree_unflatten(prog.out_tree, outs)
        stats = RunStats(
            seconds=time.perf_counter() - t0,
            link_seconds=sess.link_seconds,
            compute_seconds=max(r["seconds"] for r in per_node),
            send_bytes=sum(r["send_bytes"] for r in per_node),
            recv_bytes=sum(r["recv_bytes"] for r in per_node),
            rounds=max(r["send_actions"] for r in per_node),
            per_node=tuple(per_node),
        )
        return result, stats

    # ------------------------------------------------------------ inference

    def model(self, name: str, version: int | None = None):
        """A hosted model ready for secure generation (its runtime is loaded on first use)."""
        from ..inference.secure import SecureModel

        key = (name, version)
        if key not in self._models:
            self._models[key] = SecureModel(self, name, version)
        return self._models[key]

    def chat(
        self,
        model: str,
        messages: list[dict],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        fixed_length: bool = False,
        stop: tuple[str, ...] = (),
        stats=None,
        version: int | None = None,
    ):
        """Yield the answer's text pieces as the nodes produce them (prompt and answer stay secret)."""
        from ..inference.backend import GenerationParams

        params = GenerationParams(max_tokens, temperature, top_p, seed, fixed_length, tuple(stop))
        params.check(secure=True)
        yield from self.model(model, version).chat(messages, params, stats)

    # ------------------------------------------------------------ PSI

    def psi(self, parties: dict, keys, **kwargs):
        """Private set intersection between two parties' node-local CSVs; see :func:`misuan.psi.client.run_psi`."""
        from ..psi.client import run_psi

        return run_psi(self, parties, keys, **kwargs)

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(cluster_file: str | Path, identity: Identity | str | Path | None = None) -> Client:
    """A client for an already running cluster described by ``cluster_file``, acting
    as ``identity`` (an :class:`~misuan.identity.Identity` or a key file; default:
    the cluster file's ``key_file``)."""
    return Client(load_cluster(cluster_file), identity)
