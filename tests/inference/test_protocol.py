"""The edge and the nodes agree on inference's names and shapes (DESIGN.md §5, rule 5)."""

from __future__ import annotations

import dataclasses

import numpy as np

from misuan.inference import protocol as P
from misuan.inference.node import CAPABILITY
from misuan.models.config import LlamaConfig
from misuan.models.params import param_shapes
from misuan.mpc._pb import DTYPE_CODES
from misuan.secure.onehot import token_digits

CFG = LlamaConfig(vocab_size=40, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4, hidden_dim=24, max_seq_len=128)


def _programs():
    return {p.name: p for p in CAPABILITY.programs}


def test_the_node_declares_exactly_what_the_edge_uploads_and_reads():
    progs = _programs()
    assert set(progs) == {P.PREFILL, P.CONTEXT_PREFILL, P.DECODE}
    assert progs[P.PREFILL].uploads == progs[P.CONTEXT_PREFILL].uploads == P.CLIENT_INPUTS and progs[P.DECODE].uploads == ()
    assert progs[P.CONTEXT_PREFILL].imports == (P.CTX_HI, P.CTX_LO) and not progs[P.PREFILL].imports
    assert progs[P.PREFILL].settings == frozenset(P.SAMPLING_KEYS)
    assert progs[P.DECODE].follows == P.PREFILL
    config = {f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG)}
    T, S = P.PROMPT_BUCKETS[0], P.CACHE_BUCKETS[0]
    prefill = progs[P.PREFILL].build(param_shapes(CFG), config, {P.PARAM_T: T, P.PARAM_S: S})
    decode = progs[P.DECODE].build(param_shapes(CFG), config, {P.PARAM_S: S})
    # what the edge makes for a prompt (secure.py: token_digits) is what prefill declares
    hi, lo = token_digits([1, 2, 3], T, CFG.vocab_size)
    edge = {P.PROMPT_HI: hi, P.PROMPT_LO: lo}
    assert prefill.client_inputs == P.CLIENT_INPUTS
    for name, shape, dtype in prefill.client_specs:
        assert edge[name].shape == tuple(shape) and np.dtype(edge[name].dtype) == np.dtype(dtype), name
        assert dtype in DTYPE_CODES
    # the one output the edge reveals, and nothing else
    assert prefill.revealable == decode.revealable == (P.TOKEN_ID,)
    assert prefill.check == P.PROMPT_OK
    # decode reads exactly what prefill leaves behind, plus what the nodes make
    made = {n for n, _ in decode.node_inputs}
    assert made == {P.GUMBEL, P.COS, P.SIN}
    outs = {n.rsplit(":", 1)[-1] for n in prefill.program.output_names}
    assert set(decode.carried_inputs) <= outs and set(decode.carried_inputs) == {P.TOKEN, P.KEYS, P.VALUES, P.MASK}
    # the context prefill: the same uploads and outputs; its context comes only by import, never upload
    ctx = progs[P.CONTEXT_PREFILL].build(param_shapes(CFG), config, {P.PARAM_T: 32, P.PARAM_S: S, P.PARAM_K: 2, P.PARAM_C: 4, P.PARAM_A: 8})
    assert ctx.client_inputs == P.CLIENT_INPUTS and ctx.revealable == (P.TOKEN_ID,) and ctx.check == P.PROMPT_OK
    assert set(ctx.carried_inputs) == {P.CTX_HI, P.CTX_LO}
    assert {n.rsplit(":", 1)[-1] for n in ctx.program.output_names} == outs
