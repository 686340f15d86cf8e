"""Node programs used only by the benchmarks (the PUMA baseline).

Kept apart from :mod:`.programs` so the product's program list stays small.
Like every node program they are compiled by the nodes from their own code
and reveal only what they declare (here: a token id, to the requester).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..errors import InvalidInput
from ..mpc.compile import compile_program
from .programs import REQ, NodeProgram, _llama_config, request_var, resident_weights, weight_var

PARAM_KEYS: dict[str, frozenset[str]] = {"bench.store_hf": frozenset(), "bench.puma": frozenset({"T"})}
#: request inputs a client uploads to the benchmark programs
CLIENT_INPUTS: tuple[str, ...] = ("x",)


def _store_hf(specs, config: dict, params: dict) -> NodeProgram:
    from ..secure.baseline import store_hf_program
    from ..secure.engine import weight_shapes

    if params:
        raise InvalidInput("bench.store_hf takes no parameters")
    cfg = _llama_config(config)
    fn, mats = store_hf_program(cfg)
    shapes = weight_shapes(cfg)
    resident, unstack = resident_weights([(m, shapes[m]) for m in mats], stacked=True)
    prog = compile_program(
        lambda *ws: fn(*unstack(ws)),
        [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in resident],
        name="bench.store_hf",
        input_names=[weight_var(r) for r, _ in resident],
        output_names=[weight_var(f"hf:{m}") for m in mats],
    )
    return NodeProgram(prog, (), (), "grantee")


def _puma(specs, config: dict, params: dict) -> NodeProgram:
    from ..secure.baseline import puma_forward, stored_names
    from ..secure.engine import weight_shapes

    cfg = _llama_config(config)
    T = params.get("T")
    if not isinstance(T, int) or not 1 <= T <= min(256, cfg.max_seq_len):
        raise InvalidInput("bench.puma needs an integer T (sequence length)")
    shapes = weight_shapes(cfg)

    def shape(name):
        base = name.removeprefix("hf:")
        s = shapes[base]
        return tuple(reversed(s)) if name.startswith("hf:") else s

    names = stored_names(cfg)
    resident, unstack = resident_weights([(n, shape(n)) for n in names], stacked=True)
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
        name=f"bench.puma.T{T}",
        input_names=[weight_var(r) for r, _ in resident] + [request_var(REQ, "x")],
        output_names=[request_var(REQ, "id")],
    )
    return NodeProgram(prog, CLIENT_INPUTS, ("id",), "grantee", client_inputs=CLIENT_INPUTS)


BUILDERS = {"bench.store_hf": _store_hf, "bench.puma": _puma}
