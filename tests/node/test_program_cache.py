"""The compiled-program cache is keyed on the code programs are built from.

A node keeps what it compiled on disk, keyed on (program, params, config, code
fingerprint). If a module whose code runs while a program is built is not under
the node core's or some registered capability's ``code_roots``, a change to it
would keep serving executables compiled from the old code. This test builds every
registered program (benchmarks included) and every load-time program of a tiny
model while tracing which ``misuan`` source files run, and checks each is covered.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from misuan import registry
from misuan.models.config import LlamaConfig
from misuan.models.params import param_shapes
from misuan.node.capability import Capabilities, RunLoadProgram
from misuan.node.program_cache import PACKAGE_ROOT, ProgramCache, source_files

CFG = LlamaConfig(
    vocab_size=40, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4, hidden_dim=24, max_seq_len=64, tie_embeddings=True
)
#: modules that run while a program is built but cannot change its bytes: error types
#: (raised only when a build is refused), config/identity plumbing
NOT_PROGRAM_CODE = {"errors.py", "__init__.py"}
PARAMS = {
    "llama.prefill": {"T": 16, "S": 64},
    "llama.decode": {"S": 64},
    "bench.puma": {"T": 4},
    "kb.search": {"k": 2},
    "kb.retrieve": {"k": 2},
    "llama.prefill_context": {"T": 32, "S": 64, "K": 2, "C": 4, "A": 8},
}


def _config() -> dict:
    return {f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG)}


SPECS = param_shapes(CFG)  # computed here, outside the traced builds
KB_CONFIG = {
    "n_chunks": 20,
    "dim": 8,
    "chunk_tokens": 4,
    "vocab_size": 40,
    "reveal": "passages",
    "chunk_ids": [f"d#{i}" for i in range(20)],
}
KB_SPECS = [("emb", (20, 8)), ("hi", (20, 4)), ("lo", (20, 4))]


def _build_everything(caps: Capabilities) -> None:
    specs, config = SPECS, _config()
    inputs = {"model": (specs, config), "kb": (KB_SPECS, KB_CONFIG)}  # the public inputs of a build, per asset kind
    for name in caps.program_names():
        pdef = caps.program(name)
        pdef.build(*inputs[pdef.asset_kind], PARAMS.get(name, {}))
    for cap in caps.items:
        for kind, plan in cap.load_plans.items():
            for step in plan(inputs[kind][1], inputs[kind][0]):
                if isinstance(step, RunLoadProgram):
                    step.build()


def _traced_files(caps: Capabilities) -> set[Path]:
    seen: set[str] = set()

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name != "<module>":  # functions run, not imports (order-free)
            seen.add(frame.f_code.co_filename)
        return None

    sys.setprofile(tracer)
    try:
        _build_everything(caps)
    finally:
        sys.setprofile(None)
    root = str(PACKAGE_ROOT)
    return {Path(f).resolve() for f in seen if f.startswith(root) and f.endswith(".py")}


def uncovered(caps: Capabilities) -> list[str]:
    covered = set(source_files(caps.code_roots()))
    ran = _traced_files(caps)
    return sorted(str(f.relative_to(PACKAGE_ROOT)) for f in ran - covered if f.name not in NOT_PROGRAM_CODE)


@pytest.fixture(scope="module")
def caps() -> Capabilities:
    return Capabilities(registry.node_capabilities(bench=True))


def test_every_module_a_program_is_built_from_keys_the_cache(caps):
    """Per capability: its own roots (and the core's) cover everything its programs and
    load plans run, so every node configuration (benchmarks on or off) is keyed right."""
    for cap in caps.items:
        missing = uncovered(Capabilities((cap,)))
        assert not missing, f"{cap.name}: code that builds its node programs but does not key the program cache: {missing}"


def test_the_check_notices_a_missing_root(caps):
    """Not vacuous: drop the inference capability's ``specs.py`` from its roots and the
    check names it (the LLaMA programs are built from it)."""
    broken = Capabilities(
        tuple(dataclasses.replace(c, code_roots=tuple(r for r in c.code_roots if r != "inference/specs.py")) for c in caps.items)
    )
    assert "inference/specs.py" in uncovered(broken)


def test_a_code_change_changes_the_key(tmp_path, monkeypatch):
    """Same program, params and config, different code: a different key."""
    from misuan.node import program_cache

    cache = ProgramCache(tmp_path, ("inference/specs.py",))
    before = cache.key("llama.decode", {"S": 64}, _config())
    program_cache.code_fingerprint.cache_clear()
    real = Path.read_bytes
    spec_file = PACKAGE_ROOT / "inference" / "specs.py"
    monkeypatch.setattr(Path, "read_bytes", lambda p: real(p) + (b"# changed" if p == spec_file else b""))
    try:
        assert cache.key("llama.decode", {"S": 64}, _config()) != before
    finally:
        program_cache.code_fingerprint.cache_clear()


def test_a_missing_root_refuses_to_start():
    with pytest.raises(FileNotFoundError):
        source_files(("inference/no_such_module.py",))
