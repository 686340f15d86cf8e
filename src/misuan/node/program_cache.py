"""On-disk cache of node-compiled programs.

Compiling a 30-layer model program takes minutes on 2 cores; compilation is
deterministic (same code, same spu version, same shapes → same bytes), so a
node keeps what it compiled under ``<state>/programs/``. The key covers the
program name and parameters, the asset's public config, the spu version and a
hash of the source files that define programs: the node core's compile path
(``CORE_ROOTS``) and every registered capability's ``code_roots``
(:mod:`.capability`), so any change to code a program is built from recompiles. Entries are the executable bytes plus its public metadata; the
hash consensus between nodes still runs before every execution.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from .._fs import atomic_write
from ..mpc.compile import Program
from .capability import NodeProgram

#: the node core's part of every program: how specs are compiled
CORE_ROOTS: tuple[str, ...] = ("node/programs.py", "node/names.py", "node/capability.py", "mpc/compile.py")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def source_files(roots: tuple[str, ...]) -> list[Path]:
    """The ``.py`` files under ``roots`` (paths relative to the ``misuan`` package)."""
    files: list[Path] = []
    for rel in dict.fromkeys((*CORE_ROOTS, *roots)):
        p = PACKAGE_ROOT / rel
        if not p.exists():
            raise FileNotFoundError(f"capability code root {rel!r} does not exist")
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return sorted(set(files))


@functools.lru_cache(maxsize=8)
def code_fingerprint(roots: tuple[str, ...] = ()) -> str:
    import spu

    h = hashlib.sha256(getattr(spu, "__version__", "?").encode())
    for f in source_files(roots):
        h.update(str(f.relative_to(PACKAGE_ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class ProgramCache:
    def __init__(self, directory: Path, roots: tuple[str, ...] = ()):
        self.dir = directory
        self.roots = tuple(roots)

    def key(self, program: str, params: dict, config: dict) -> str:
        doc = json.dumps([program, params, config, code_fingerprint(self.roots)], sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:32]

    def get(self, key: str) -> NodeProgram | None:
        meta, exe = self.dir / f"{key}.json", self.dir / f"{key}.exe"
        try:
            m = json.loads(meta.read_text())
            data = exe.read_bytes()
        except (OSError, ValueError):
            return None
        if hashlib.sha256(data).hexdigest() != m["sha256"] or not {"client_inputs", "node_inputs", "check", "client_specs"} <= set(m):
            return None
        prog = Program(m["name"], data, tuple(m["inputs"]), tuple(m["outputs"]), None, tuple())
        return NodeProgram(
            prog,
            tuple(m["request_inputs"]),
            tuple(m["revealable"]),
            m["who"],
            client_inputs=tuple(m["client_inputs"]),
            node_inputs=tuple((n, tuple(sh)) for n, sh in m["node_inputs"]),
            check=m["check"],
            client_specs=tuple((n, tuple(sh), dt) for n, sh, dt in m["client_specs"]),
        )

    def put(self, key: str, np_: NodeProgram) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        p = np_.program
        atomic_write(self.dir / f"{key}.exe", p.executable, 0o644)
        meta = {
            "name": p.name,
            "sha256": p.sha256,
            "inputs": list(p.input_names),
            "outputs": list(p.output_names),
            "request_inputs": list(np_.request_inputs),
            "revealable": list(np_.revealable),
            "who": np_.who,
            "client_inputs": list(np_.client_inputs),
            "node_inputs": [[n, list(sh)] for n, sh in np_.node_inputs],
            "check": np_.check,
            "client_specs": [[n, list(sh), dt] for n, sh, dt in np_.client_specs],
        }
        atomic_write(self.dir / f"{key}.json", json.dumps(meta).encode(), 0o644)
