"""Node programs used only by the benchmarks (the PUMA baseline).

Registered only on nodes whose ``node.toml`` says ``bench = true``: ``store_hf``
adds a transposed copy of every matrix to the shared resident runtime, a memory
denial of service against every user of the model on a production node. Like
every node program they are compiled by the nodes from their own code and
reveal only what they declare (here: a token id, to the requester).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import inference
from ..errors import InvalidInput
from ..mpc.compile import compile_program
from ..node.capability import NodeProgram, ProgramDef
from ..node.programs import REQ, request_var, weight_var
from . import protocol as P


def _store_hf(specs, config: dict, params: dict) -> NodeProgram:
    from ..inference import weight_shapes
    from .puma import store_hf_program

    if params:
        raise InvalidInput(f"{P.STORE_HF} takes no parameters")
    cfg = inference.llama_config(config)
    fn, mats = store_hf_program(cfg)
    shapes = weight_shapes(cfg)
    resident, unstack = inference.resident_weights([(m, shapes[m]) for m in mats], stacked=True)
    prog = compile_program(
        lambda *ws: fn(*unstack(ws)),
        [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in resident],
        name=P.STORE_HF,
        input_names=[weight_var(r) for r, _ in resident],
        output_names=[weight_var(f"hf:{m}") for m in mats],
    )
    return NodeProgram(prog, (), (), "grantee")


def _puma(specs, config: dict, params: dict) -> NodeProgram:
    from ..inference import weight_shapes
    from .puma import puma_forward, stored_names

    cfg = inference.llama_config(config)
    T = params.get("T")
    if not isinstance(T, int) or not 1 <= T <= min(256, cfg.max_seq_len):
        raise InvalidInput(f"{P.PUMA} needs an integer T (sequence length)")
    shapes = weight_shapes(cfg)

    def shape(name):
        base = name.removeprefix("hf:")
        s = shapes[base]
        return tuple(reversed(s)) if name.startswith("hf:") else s

    names = stored_names(cfg)
    resident, unstack = inference.resident_weights([(n, shape(n)) for n in names], stacked=True)
    specs_ = [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in resident]
    specs_.append(jax.ShapeDtypeStruct((T, cfg.vocab_size), jnp.float32))
    forward, n = puma_forward(cfg, T), len(resident)

    def fn(*a):
        pairs = unstack(a[:n])
        assert not any(t for _, t in pairs)  # hf: copies and vectors are resident as stored
        return forward(*(w for w, _ in pairs), a[n])

    prog = compile_program(
        fn,
        specs_,
        name=f"{P.PUMA}.T{T}",
        input_names=[weight_var(r) for r, _ in resident] + [request_var(REQ, P.X)],
        output_names=[request_var(REQ, P.TOKEN_ID)],
    )
    return NodeProgram(prog, P.CLIENT_INPUTS, (P.TOKEN_ID,), "grantee", client_inputs=P.CLIENT_INPUTS)


PROGRAMS = (
    ProgramDef(P.STORE_HF, frozenset(), _store_hf),
    ProgramDef(P.PUMA, frozenset({"T"}), _puma, uploads=P.CLIENT_INPUTS),
)
