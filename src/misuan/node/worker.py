"""A session worker: one SPU runtime and its link, in a process of its own.

The node daemon starts one worker per session and talks to it over a local
socketpair (:mod:`._ipc`). Isolation is not optional: when a peer dies
mid-run, yacl/brpc can take the whole surviving process down (exit 255 or a
segfault, measured with spu 0.9.5), and a runtime cannot be interrupted. A
worker can simply be killed; the daemon stays up and frees the session.

The worker never logs values. SPU's own log (ops, timings, byte counts) goes
to a per-worker file from which the byte counters of each run are read.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import socket
import sys
import time
from pathlib import Path

from . import _ipc
from .names import bind_request

_LINK_RE = re.compile(r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+), recv actions (\d+)")


class _Worker:
    def __init__(self, sock: socket.socket, log_path: Path):
        self.sock = sock
        self.log_path = log_path
        self.log_offset = 0
        self.ctx = None
        self.gate = None  # with TLS: owns the link port while the link lives
        self.rt = None
        self.mpc = None
        self.runs = 0
        self.vars: dict[str, int] = {}  # name -> bytes held

    # ------------------------------------------------------------ commands

    def op_link(self, h: dict, _p: bytes):
        from spu import api as spu_api

        from ..config import MpcSettings
        from ..mpc.link import LinkSpec, LinkTLS, open_link
        from ..mpc.runtime import runtime_config

        tls = h.get("tls")
        spec = LinkSpec(
            link_id=h["link_id"],
            rank=h["rank"],
            addresses=tuple(h["addresses"]),
            recv_timeout_ms=h["recv_timeout_ms"],
            connect_timeout_s=h["connect_timeout_s"],
            tls=LinkTLS(Path(tls["cert"]), Path(tls["key"]), Path(tls["ca"])) if tls else None,
            async_only=h["mpc"]["protocol"] == "ABY3",
        )
        self.mpc = MpcSettings(**h["mpc"])
        t0 = time.perf_counter()
        try:
            self.ctx, self.gate = open_link(spec)
        except RuntimeError:
            return {"ok": False, "error": "ComputeError", "message": "could not link to every peer in time"}
        except OSError:
            return {"ok": False, "error": "ComputeError", "message": "cannot listen on this session's link port"}
        opts = h.get("runtime_options", {})
        self.rt = spu_api.Runtime(self.ctx, runtime_config(self.mpc, profile=True, **opts))
        return {"ok": True, "seconds": time.perf_counter() - t0}

    def op_ping(self, h: dict, _p: bytes):
        nonce = h["nonce"]
        got = [bytes(x).decode() if isinstance(x, (bytes, bytearray)) else str(x) for x in self.ctx.all_gather(nonce)]
        return {"ok": all(g == nonce for g in got), "error": "ComputeError", "message": "link check disagreed"}

    def op_set_var(self, h: dict, payload: bytes):
        from ..mpc.shares import decode_share

        self.rt.set_var(h["name"], decode_share(payload))
        self.vars[h["name"]] = len(payload)
        return {"ok": True}

    def op_set_public(self, h: dict, payload: bytes):
        """A PUBLIC value this node computed itself (every node computes the same one),
        e.g. the sampling noise of a step: never a client's bytes."""
        import numpy as np
        from spu import api as spu_api
        from spu import libspu

        from ..mpc.runtime import runtime_config

        arr = np.frombuffer(payload, dtype=np.dtype(h["dtype"])).reshape(h["shape"])
        io = spu_api.Io(self.ctx.world_size, runtime_config(self.mpc))
        self.rt.set_var(h["name"], io.make_shares(arr, libspu.Visibility.VIS_PUBLIC)[self.ctx.rank])
        self.vars[h["name"]] = arr.nbytes
        return {"ok": True}

    def op_reveal_flag(self, h: dict, _p: bytes):
        """Reveal one secret boolean among the nodes (never to a client): each node
        sends its share of it over the link and reconstructs the bit."""
        from spu import api as spu_api

        from ..mpc.runtime import runtime_config
        from ..mpc.shares import decode_share, encode_share

        share = self.rt.get_var(h["name"])
        if tuple(share_shape(share)) != ():
            return {"ok": False, "error": "InvalidInput", "message": "only a scalar can be revealed to the nodes"}
        mine = encode_share(share).hex()
        got = [bytes(x).decode() if isinstance(x, (bytes, bytearray)) else str(x) for x in self.ctx.all_gather(mine)]
        io = spu_api.Io(self.ctx.world_size, runtime_config(self.mpc))
        value = io.reconstruct([decode_share(bytes.fromhex(g)) for g in got])
        return {"ok": True, "value": bool(value)}

    def op_load_vars(self, h: dict, _p: bytes):
        """Load stored shares straight from the node's encrypted store (never via the client)."""
        from ..mpc.shares import decode_share
        from .store import ShareStore

        store = ShareStore(Path(h["store_root"]), Path(h["key_file"]))
        total = 0
        from spu import libspu

        from ..errors import IntegrityError
        from ..mpc import _aby3

        for item in h["items"]:
            try:
                data = store.read(item["key"], item["aad"])
            except IntegrityError as exc:
                tensor = item["name"].removeprefix("w:")
                raise IntegrityError(f"tensor {tensor}: {exc}") from None
            if data[:4] == _aby3.COMPRESSED:
                share = libspu.Share()
                share.meta, share.share_chunks = _aby3.expand(data)
            else:
                share = decode_share(data)
            del data
            self.rt.set_var(item["name"], share)
            del share
            self.vars[item["name"]] = 1
            total += 1
        _trim_heap()
        return {"ok": True, "loaded": total}

    def op_del_prefix(self, h: dict, _p: bytes):
        prefix = h["prefix"]
        gone = [n for n in self.vars if n.startswith(prefix)]
        for n in gone:
            try:
                self.rt.del_var(n)
            except RuntimeError:
                pass
            self.vars.pop(n, None)
        _trim_heap()
        return {"ok": True, "deleted": len(gone)}

    def op_get_var(self, h: dict, _p: bytes):
        from ..mpc.shares import encode_share

        data = encode_share(self.rt.get_var(h["name"]))
        return {"ok": True}, data

    def op_del_var(self, h: dict, _p: bytes):
        for name in h.get("names") or [h["name"]]:
            self.rt.del_var(name)
            self.vars.pop(name, None)
        _trim_heap()
        return {"ok": True}

    def op_run(self, h: dict, payload: bytes):
        import hashlib

        from ..mpc.program import parse_executable

        digest = hashlib.sha256(payload).hexdigest()
        if digest != h["sha256"]:
            return {"ok": False, "error": "InvalidInput", "message": "program hash does not match its bytes"}
        exe = parse_executable(payload)
        # The daemon checked the names with its own protobuf reader; libspu's parse
        # must see exactly the same ones (no parser differential smuggles a name in).
        if [list(exe.input_names), list(exe.output_names)] != h.get("names"):
            return {"ok": False, "error": "InvalidInput", "message": "program names differ from the node's reading of them"}
        # Every party must run the very same program.
        hashes = [bytes(x).decode() if isinstance(x, (bytes, bytearray)) else str(x) for x in self.ctx.all_gather(digest)]
        if len(set(hashes)) != 1:
            bad = [i for i, x in enumerate(hashes) if x != digest]
            return {"ok": False, "error": "ComputeError", "message": f"parties {bad} hold a different program; refusing to run"}
        request = h.get("request")
        if request is not None:
            # node programs are compiled once with a placeholder request id
            exe.input_names = bind_request(exe.input_names, request)
            exe.output_names = bind_request(exe.output_names, request)
        self.runs += 1
        exe.name = f"misuan-run-{self.runs}"
        t0 = time.perf_counter()
        self.rt.run(exe)
        seconds = time.perf_counter() - t0
        _trim_heap()  # a run's temporaries (up to ~0.4 GB for a long prompt) would otherwise stay resident
        for name in exe.output_names:
            self.vars[name] = 0
        return {"ok": True, "seconds": seconds, **self._link_stats(exe.name)}

    def op_stats(self, _h: dict, _p: bytes):
        import psutil

        return {"ok": True, "rss": psutil.Process().memory_info().rss, "vars": len(self.vars)}

    # ------------------------------------------------------------ helpers

    def _link_stats(self, exe_name: str) -> dict:
        """Byte and round counters of the last run, from SPU's profile log."""
        stats = {"send_bytes": 0, "recv_bytes": 0, "send_actions": 0, "recv_actions": 0}
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                text = fh.read().decode(errors="replace")
                self.log_offset = fh.tell()
        except OSError:
            return stats
        start = text.find(f"SPU execution {exe_name} completed")
        m = _LINK_RE.search(text, max(start, 0))
        if m:
            stats = dict(zip(stats, map(int, m.groups())))
        return stats

    def remove_link_files(self) -> None:
        if self.gate is not None:
            self.gate.remove_files()

    def serve(self) -> None:
        while True:
            try:
                header, payload = _ipc.recv_msg(self.sock)
            except _ipc.ChannelClosed:
                return
            op = header.get("op")
            if op == "close":
                self.remove_link_files()  # before the reply: the node kills us right after it
                _ipc.send_msg(self.sock, {"ok": True})
                return
            handler = getattr(self, f"op_{op}", None)
            out_payload = b""
            try:
                if handler is None:
                    reply = {"ok": False, "error": "InvalidInput", "message": f"unknown worker op {op!r}"}
                elif op not in ("link", "stats") and self.rt is None:
                    reply = {"ok": False, "error": "Conflict", "message": "session is not linked yet"}
                else:
                    reply = handler(header, payload)
                    if isinstance(reply, tuple):
                        reply, out_payload = reply
            except Exception as exc:  # translate at the boundary; no values in messages
                reply = {"ok": False, **_classify(exc)}
            _ipc.send_msg(self.sock, reply, out_payload)
            if not reply.get("ok") and reply.get("fatal"):
                return


def share_shape(share) -> tuple[int, ...]:
    from ..mpc import _pb

    return tuple(_pb.value_meta(bytes(share.meta))[0])


def _classify(exc: Exception) -> dict:
    from ..errors import MisuanError

    if isinstance(exc, MisuanError):
        return {"error": type(exc).__name__, "message": str(exc)}
    text = str(exc)
    if "timeout" in text.lower():
        # yacl names the channel, e.g. "key=<link>:P2P-17:2->0": party 2 went silent.
        m = re.search(r":(\d+)->(\d+)", text)
        peer = int(m.group(1)) if m else None
        who = f"party {peer}" if peer is not None else "a peer"
        return {"error": "ComputeError", "message": f"{who} stopped answering (link timeout)", "peer": peer, "fatal": True}
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "what:"), "")
    # SPU messages name ops and shapes, never values; keep one line of it.
    return {"error": "ComputeError", "message": f"SPU error: {first[:300]}", "fatal": True}


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them after big frees).

    Loading a model frees decrypted share buffers and per-layer tensors once they
    are stacked, and every program run frees its temporaries; without this the
    worker's resident size stays at its peak.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


#: Allocations from this size up are mmapped by glibc and unmapped on free. glibc's
#: default threshold is dynamic: after the first big frees it rises (up to 32 MB),
#: and a run's temporaries then come from the heap and stay resident. Fixed at 1 MB
#: (``fix_mmap_threshold``), a SmolLM2 worker stayed at its post-load 2.30 GB PSS per
#: node after a 32-token prompt and 4 generated tokens (2.60-2.62 GB with the dynamic one).
MMAP_THRESHOLD_BYTES: int = 1 << 20
_M_MMAP_THRESHOLD: int = -3  # mallopt parameter (malloc.h)


def fix_mmap_threshold() -> None:
    """Serve every allocation >= ``MMAP_THRESHOLD_BYTES`` by mmap (glibc; forked
    workers inherit it from the zygote). No-op without glibc."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


@functools.cache
def _libc():
    """glibc, loaded once (``_trim_heap`` runs after every program); None elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (raises AttributeError without glibc)
        return libc
    except (OSError, AttributeError):
        return None


def setup_spu_logging(log_path: Path) -> None:
    """Send SPU's log (no values: ops, timings, bytes) to this worker's file."""
    from spu import libspu

    log_path.parent.mkdir(parents=True, exist_ok=True)
    opts = libspu.logging.LogOptions()
    opts.enable_console_logger = False
    opts.system_log_path = str(log_path)
    opts.log_level = libspu.logging.LogLevel.INFO
    libspu.logging.setup_logging(opts)


def preload() -> None:
    """Import everything a worker needs (done once in the zygote, before forking)."""
    import psutil  # noqa: F401
    import spu.api  # noqa: F401

    from ..config import MpcSettings  # noqa: F401
    from ..mpc import _aby3, link, program, runtime, shares  # noqa: F401
    from . import store  # noqa: F401


def run_worker(sock: socket.socket, log_path: Path) -> None:
    """Serve one session on ``sock`` until closed, then exit the process."""
    setup_spu_logging(log_path)
    _ipc.send_msg(sock, {"ok": True, "ready": True, "pid": os.getpid()})
    worker = _Worker(sock, log_path)
    try:
        worker.serve()
    finally:
        worker.remove_link_files()
        sock.close()
        # Exit without running C++ destructors of a link that may be broken:
        # they can crash or block (see the module docstring).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
