"""Session worker process settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run in a fresh interpreter: mallopt changes the whole process.
_PROBE = r"""
import ctypes, sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    from misuan.node.worker import fix_mmap_threshold
    fix_mmap_threshold()
libc.free(libc.malloc(16 << 20))  # a big free: glibc's dynamic threshold rises to 16 MB
before = libc.mallinfo2().hblkhd
p = libc.malloc(4 << 20)  # a run's temporary
print(libc.mallinfo2().hblkhd - before >= 4 << 20)  # served by mmap: unmapped again on free
libc.free(p)
"""


def _mmapped_after_a_big_free(mode: str) -> bool:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 and "mallinfo2" in out.stderr:
        pytest.skip("needs glibc >= 2.33")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def test_fixed_mmap_threshold_keeps_big_temporaries_out_of_the_heap():
    """With glibc's dynamic threshold, a 4 MB buffer after a 16 MB free comes from the
    heap (and its pages stay resident); with the worker's fixed 1 MB threshold it is mmapped."""
    assert not _mmapped_after_a_big_free("default")
    assert _mmapped_after_a_big_free("fixed")


def test_session_workers_get_the_compute_thread_limit(tmp_path):
    """libgomp reads OMP_THREAD_LIMIT when libspu loads: the zygote must start with it,
    and the workers it forks inherit it."""
    from misuan.node.workers import Zygote

    zygote = Zygote(tmp_path / "logs", compute_threads=1)
    try:
        worker = zygote.spawn()
        try:
            environ = open(f"/proc/{worker.pid}/environ", "rb").read().split(b"\0")
        finally:
            worker.kill()
    finally:
        zygote.close()
    assert b"OMP_THREAD_LIMIT=1" in environ
