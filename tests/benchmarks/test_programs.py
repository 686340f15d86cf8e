"""The benchmark programs (PUMA baseline) compile against the resident layout."""

from __future__ import annotations

import dataclasses

from misuan.benchmarks import protocol as P
from misuan.benchmarks.programs import PROGRAMS
from misuan.models.config import LlamaConfig
from misuan.models.params import param_shapes

CFG = LlamaConfig(vocab_size=40, dim=16, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=4, hidden_dim=24)


def test_bench_programs_compile_against_the_resident_layout():
    """The PUMA baseline's load program and forward compile against the resident
    variables (they read them through ``resident_weights`` like the product's)."""
    config = {f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG)}
    specs = param_shapes(CFG)
    programs = {p.name: p for p in PROGRAMS}
    store = programs[P.STORE_HF].build(specs, config, {})
    assert store.program.output_names[0] == "w:hf:layers.0.wq"
    puma = programs[P.PUMA].build(specs, config, {"T": 4})
    assert puma.request_inputs == (P.X,)
