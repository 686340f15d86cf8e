"""Run a JAX function under SPU with 3 real processes linked by brpc on loopback.

A benchmark helper (not a test): the parties are separate processes, as on a
cluster, so the per-action latency is the real one. Each run's per-op profile
(time, send bytes, send actions) is read from SPU's log.

    from bench.spu3 import run3
    res = run3(fn, [x, w], public=(1,), runtime_options={...}, link_options={...}, repeats=3)
    res["outputs"], res["runs"][i]["seconds"], res["runs"][i]["ops"]["pphlo.rsqrt"]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import socket
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

_OP_RE = re.compile(
    r"- (\S+(?: \S+)?), executed (\d+) times, duration ([\d.e-]+)s, send bytes (\d+) recv bytes (\d+), "
    r"send actions (\d+), recv actions (\d+)"
)
_LINK_RE = re.compile(r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+), recv actions (\d+)")
_RUN_RE = re.compile(r"SPU execution (\S+) completed")


def parse_profile(text: str) -> list[dict]:
    """Split an SPU log into runs: [{name, ops: {op: {...}}, send_bytes, send_actions}]."""
    runs: list[dict] = []
    cur = None
    for line in text.splitlines():
        m = _RUN_RE.search(line)
        if m:
            cur = {"name": m.group(1), "ops": {}}
            runs.append(cur)
            continue
        if cur is None:
            continue
        m = _OP_RE.search(line)
        if m:
            op = m.group(1)
            cur["ops"][op] = {
                "calls": int(m.group(2)),
                "seconds": float(m.group(3)),
                "send_bytes": int(m.group(4)),
                "send_actions": int(m.group(6)),
            }
            continue
        m = _LINK_RE.search(line)
        if m:
            cur["send_bytes"], _, cur["send_actions"], _ = map(int, m.groups())
    return runs


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        socks.append(s)
    for s in socks:
        s.close()
    return ports


def _party(rank, addrs, exe_bytes, share_bytes, cfg_bytes, link_options, repeats, log_path, out_q):
    from pathlib import Path

    from spu import api as spu_api
    from spu import libspu

    from misuan.mpc.link import LinkSpec, make_desc
    from misuan.node.worker import setup_spu_logging

    setup_spu_logging(Path(log_path))
    # the nodes' own link settings (ABY3: no per-message acks), with a bench-sized timeout
    desc = make_desc(LinkSpec("bench", rank, tuple(addrs), 600_000, 30.0, async_only=True))
    for k, v in (link_options or {}).items():
        setattr(desc, k, v)
    ctx = libspu.link.create_brpc(desc, rank)
    cfg = libspu.RuntimeConfig()
    cfg.ParseFromString(cfg_bytes)
    rt = spu_api.Runtime(ctx, cfg)
    exe = libspu.Executable()
    exe.ParseFromString(exe_bytes)
    for name, (meta, chunks) in zip(exe.input_names, share_bytes):
        s = libspu.Share()
        s.meta, s.share_chunks = meta, chunks
        rt.set_var(name, s)
    secs = []
    for r in range(repeats):
        ctx.barrier()
        exe.name = f"bench-{r}"
        t0 = time.perf_counter()
        rt.run(exe)
        secs.append(time.perf_counter() - t0)
    outs = []
    for name in exe.output_names:
        s = rt.get_var(name)
        outs.append((bytes(s.meta), [bytes(c) for c in s.share_chunks]))
    ctx.barrier()
    out_q.put((rank, secs, outs))
    out_q.close()
    out_q.join_thread()
    ctx.stop_link()
    os._exit(0)


def run3(
    fn: Callable,
    args: Sequence[Any],
    *,
    public: Sequence[int] = (),
    runtime_options: dict | None = None,
    link_options: dict | None = None,
    repeats: int = 1,
    fraction_bits: int = 18,
) -> dict:
    """Compile ``fn(*args)``, share ``args`` (indices in ``public`` public), run on 3 brpc processes."""
    import jax
    from spu import api as spu_api
    from spu import libspu
    from spu.utils import frontend

    from misuan.mpc.simulator import runtime_config

    args = [np.asarray(a) for a in args]
    vis = [libspu.Visibility.VIS_PUBLIC if i in public else libspu.Visibility.VIS_SECRET for i in range(len(args))]
    names = [f"in{i}" for i in range(len(args))]
    exe, out_info = frontend.compile(
        frontend.Kind.JAX,
        fn,
        [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args],
        {},
        names,
        vis,
        lambda outs: [f"out{i}" for i in range(len(outs))],
    )
    opts = {"experimental_disable_mmul_split": True, "enable_pphlo_profile": True, **(runtime_options or {})}
    cfg = runtime_config("ABY3", "FM64", fraction_bits, **opts)
    io = spu_api.Io(3, cfg)
    from misuan.config import MpcSettings
    from misuan.mpc.shares import Sharer

    sharer = Sharer(MpcSettings("ABY3", "FM64", fraction_bits), 3)

    def make(a, v):
        if v == libspu.Visibility.VIS_SECRET and a.dtype == np.float32 and a.size >= 4096:
            return [x.to_spu() for x in sharer.share(a)]  # fast path (SPU's Io is slow on big arrays)
        return io.make_shares(a, v)

    shares = [make(a, v) for a, v in zip(args, vis)]
    per_party = [[(bytes(s[r].meta), [bytes(c) for c in s[r].share_chunks]) for s in shares] for r in range(3)]
    ports = _free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    tmp = tempfile.mkdtemp(prefix="spu3-")
    logs = [os.path.join(tmp, f"p{r}.log") for r in range(3)]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_party,
            args=(r, addrs, exe.SerializeToString(), per_party[r], cfg.SerializeToString(), link_options, repeats, logs[r], q),
        )
        for r in range(3)
    ]
    for p in procs:
        p.start()
    import queue

    results = {}
    deadline = time.monotonic() + 3600
    while len(results) < 3:
        try:
            rank, secs, outs = q.get(timeout=2)
            results[rank] = (secs, outs)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"party processes failed: exit codes {[p.exitcode for p in procs]}; logs in {tmp}")
    for p in procs:
        p.join(30)
    outputs = []
    for k in range(len(results[0][1])):
        ss = []
        for r in range(3):
            meta, chunks = results[r][1][k]
            s = libspu.Share()
            s.meta, s.share_chunks = meta, chunks
            ss.append(s)
        outputs.append(io.reconstruct(ss))
    with open(logs[0]) as fh:
        prof = parse_profile(fh.read())
    runs = []
    for r in range(repeats):
        p = prof[r] if r < len(prof) else {}
        runs.append({"seconds": max(results[k][0][r] for k in range(3)), **p})
    out_tree = jax.tree_util.tree_structure(out_info)
    return {"outputs": jax.tree_util.tree_unflatten(out_tree, outputs), "runs": runs}


def summary(res: dict) -> dict:
    """Median seconds, send actions and bytes (party 0) over the runs."""
    runs = res["runs"]
    return {
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "send_actions": int(np.median([r.get("send_actions", 0) for r in runs])),
        "send_bytes": int(np.median([r.get("send_bytes", 0) for r in runs])),
    }
