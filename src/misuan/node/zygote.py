"""The worker zygote: imports SPU once, then forks a session worker on demand.

Loading ``libspu`` takes 1-1.5 s of CPU; paying that per session (and on 2
cores, while other sessions compute) made opening a session take seconds. The
zygote is a single-threaded process that has everything imported and nothing
running; ``fork`` gives a ready worker in milliseconds. It talks to its node
over a socketpair (:mod:`._ipc`, JSON only) and hands each new worker's
channel back with SCM_RIGHTS. Workers die with the zygote, the zygote with
the node (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

from . import _ipc


def set_pdeathsig() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:  # pragma: no cover - non-Linux
        pass


def _spawn(ctl: socket.socket, log_path: Path) -> None:
    parent_end, child_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            ctl.close()
            parent_end.close()
            set_pdeathsig()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            from .worker import run_worker

            run_worker(child_end, log_path)
        finally:
            os._exit(0)
    child_end.close()
    _ipc.send_msg(ctl, {"ok": True, "pid": pid})
    socket.send_fds(ctl, [b"W"], [parent_end.fileno()])
    parent_end.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="misuan worker zygote (started by the node)")
    ap.add_argument("--fd", type=int, required=True)
    args = ap.parse_args(argv)
    set_pdeathsig()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers
    ctl = socket.socket(fileno=args.fd)
    from .worker import fix_mmap_threshold, preload

    fix_mmap_threshold()  # before anything big is allocated; workers inherit it
    preload()
    _ipc.send_msg(ctl, {"ok": True, "ready": True, "pid": os.getpid()})
    while True:
        try:
            header, _ = _ipc.recv_msg(ctl)
        except _ipc.ChannelClosed:
            break
        if header.get("op") == "spawn":
            try:
                _spawn(ctl, Path(header["log"]))
            except OSError as exc:
                _ipc.send_msg(ctl, {"ok": False, "message": f"fork failed: {exc.strerror}"})
        else:
            _ipc.send_msg(ctl, {"ok": False, "message": "unknown op"})
    sys.exit(0)


if __name__ == "__main__":
    main()
