"""Programs nodes compile themselves over stored assets.

A client names a program and passes public parameters; each node builds the
JAX function from *its own code* and the asset's public config, compiles it
(deterministic, shapes only), and the workers compare executable hashes over
the link before running. Clients can never ship code that reads stored
shares. Each program declares which outputs may be revealed to whom.

Variable naming in a model runtime::

    w:<tensor>            a stored weight share (never readable by anyone)
    r:<request>:<name>    a request's inputs and outputs (outputs readable
                          only when the program declares them revealable)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from ..errors import InvalidInput
from ..mpc.compile import Program, compile_program


@dataclass(frozen=True)
class NodeProgram:
    program: Program
    #: request-scoped inputs the client must have uploaded (short names).
    request_inputs: tuple[str, ...]
    #: outputs (short names) the requester may read back.
    revealable: tuple[str, ...]
    #: who may run it: "owner" or "grantee".
    who: str
    #: the request inputs a client may upload; the others are carried over from an
    #: earlier run of the request or made by the node (``node_inputs``)
    client_inputs: tuple[str, ...] = ()
    #: public request inputs each node computes itself: (short name, shape)
    node_inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: an output the nodes reveal among themselves; the run is refused unless it is true
    check: str | None = None
    #: (short name, shape, dtype) of each client input: an upload that does not match
    #: is refused before the run (a malformed share would fail the runtime for everyone)
    client_specs: tuple[tuple[str, tuple[int, ...], str], ...] = ()

    @property
    def carried_inputs(self) -> tuple[str, ...]:
        node = {n for n, _ in self.node_inputs}
        return tuple(i for i in self.request_inputs if i not in self.client_inputs and i not in node)


def weight_var(tensor: str) -> str:
    return f"w:{tensor}"


#: placeholder for the request id in compiled programs; the worker substitutes
#: it after the hash check, so one executable serves every request.
REQ = "$"


def request_var(request: str, name: str) -> str:
    return f"r:{request}:{name}"


_LAYER_TENSOR = re.compile(r"layers\.(\d+)\.(.+)")


def client_may_upload(var: str, bench: bool = False) -> bool:
    """Whether ``var`` names a request input a client may upload to some program (the
    prompt's digits; a benchmark's input on a node with benchmarks on). Noise,
    temperature, masks, RoPE rows, ``verify``'s probes, tokens and caches are never
    among them."""
    from ..secure.engine import CLIENT_INPUTS
    from .bench_programs import CLIENT_INPUTS as BENCH_INPUTS

    return var in CLIENT_INPUTS or (bench and var in BENCH_INPUTS)


def is_stacked(config: dict) -> bool:
    """LLaMA-family runtimes keep per-layer weights as ``stack.<key>`` (L, ...) stacks."""
    return config.get("kind", "llama") == "llama"


def resident_weights(
    specs: Sequence[tuple[str, tuple[int, ...]]], stacked: bool
) -> tuple[list[tuple[str, tuple[int, ...]]], Callable[[Sequence], list]]:
    """Stored tensors -> the resident variables that hold them, and a function that
    slices the stored tensors back out of those variables inside a program (a static
    slice of a stack is local). The function returns ``(array, transposed)`` pairs:
    per-layer matrices are resident as their transposes
    (``secure.engine.resident_transposed``), and members of ``secure.engine.FUSED_KEYS``
    groups live as row ranges of the (transposed) fused stack."""
    if not stacked:
        return [(n, tuple(s)) for n, s in specs], lambda arrays: [(a, False) for a in arrays]
    from ..secure.engine import FUSED_KEYS, fused_key, resident_transposed

    shapes = {name: tuple(shape) for name, shape in specs}
    resident: dict[str, tuple[int, ...]] = {}
    # stored tensor -> (resident variable, layer or None, row slice or None, transposed)
    where: list[tuple[str, int | None, slice | None, bool]] = []
    for name, shape in specs:
        m = _LAYER_TENSOR.fullmatch(name)
        if m is None:
            resident.setdefault(name, tuple(shape))
            where.append((name, None, None, False))
            continue
        layer, key = int(m[1]), m[2]
        transposed = resident_transposed(tuple(shape))
        shape = tuple(shape[::-1]) if transposed else tuple(shape)
        fused = fused_key(key)
        rows = None
        if fused is not None:  # rows of the transposed fused stack, members in FUSED_KEYS order
            heights = [shapes[f"layers.{layer}.{k}"][1] for k in FUSED_KEYS[fused]]
            start = sum(heights[: FUSED_KEYS[fused].index(key)])
            rows = slice(start, start + shape[0])
            shape = (sum(heights), shape[1])
            key = fused
        rkey = f"stack.{key}"
        depth = max(resident.get(rkey, (0,))[0], layer + 1)
        resident[rkey] = (depth, *shape)
        where.append((rkey, layer, rows, transposed))
    order = list(resident)

    def unstack(arrays: Sequence) -> list:
        by_name = dict(zip(order, arrays))
        out = []
        for r, i, rows, transposed in where:
            w = by_name[r] if i is None else by_name[r][i]
            out.append((w if rows is None else w[rows], transposed))
        return out

    return list(resident.items()), unstack


def _verify(specs: list[tuple[str, tuple[int, ...]]], stacked: bool) -> NodeProgram:
    """``y_t = u_t · W_t · v_t`` for every tensor (1-D: ``u_t · w_t``).

    Reveals ``y`` (one number per tensor) to the model's owner only. The probes
    u_t, v_t are ±1 vectors every node draws itself, as public values, from the
    owner's seed (:mod:`misuan.hosting.protocol`): the owner draws the same ones
    and compares the revealed y with the same products on its plaintext weights
    (Freivalds-style), so a hosted model that does not reconstruct to the
    published weights is caught, while the owner cannot aim probes at single
    weights (and runs are rate-limited per hour) and the nodes learn nothing.
    """
    from ..hosting.protocol import probe_name

    resident, unstack = resident_weights(specs, stacked)
    n = len(resident)

    def probe_shapes(shape):
        if len(shape) == 1:
            return [(shape[0],)]
        if len(shape) == 2:
            return [(shape[0],), (shape[1],)]
        raise InvalidInput("verify supports 1-D and 2-D tensors only")

    probe_specs: list[tuple[str, tuple[int, ...]]] = []
    for i, (_, shape) in enumerate(specs):
        for j, ps in enumerate(probe_shapes(shape)):
            probe_specs.append((probe_name(i, j), ps))

    def fn(*args):
        weights, probes = unstack(args[:n]), list(args[n:])
        ys = []
        for w, transposed in weights:
            if w.ndim == 1:
                ys.append(jnp.dot(probes.pop(0), w))
            else:
                u, v = probes.pop(0), probes.pop(0)
                if transposed:  # w = W.T: u W v = v W.T u, no strided view of W
                    u, v = v, u
                ys.append(jnp.dot(jnp.dot(u, w), v))
        return jnp.stack(ys)  # (n_tensors,) secret

    arg_specs = [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in resident] + [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in probe_specs]
    from spu import libspu

    names = [weight_var(t) for t, _ in resident] + [request_var(REQ, p) for p, _ in probe_specs]
    vis = [libspu.Visibility.VIS_SECRET] * n + [libspu.Visibility.VIS_PUBLIC] * len(probe_specs)
    prog = compile_program(fn, arg_specs, name="model.verify", input_names=names, output_names=[request_var(REQ, "y")], visibility=vis)
    probes = tuple(p for p, _ in probe_specs)
    return NodeProgram(prog, probes, ("y",), "owner", node_inputs=tuple(probe_specs))


def _llama_config(config: dict):
    from ..models.config import LlamaConfig

    return LlamaConfig.from_dict({k: v for k, v in config.items() if k != "n_params"})


def _from_spec(name: str, spec, cfg, *, weights: list[str] | None = None, weight_outputs: bool = False) -> NodeProgram:
    from ..secure.engine import program_weight_names, resident_shapes

    shapes = resident_shapes(cfg)
    wnames = program_weight_names(cfg) if weights is None else weights
    from spu import libspu

    arg_specs = [jax.ShapeDtypeStruct(shapes[w], jnp.float32) for w in wnames]
    arg_specs += [jax.ShapeDtypeStruct(i.shape, jnp.dtype(i.dtype)) for i in spec.inputs]
    secret, public = libspu.Visibility.VIS_SECRET, libspu.Visibility.VIS_PUBLIC
    vis = [secret] * len(wnames) + [public if i.source == "node" else secret for i in spec.inputs]
    in_names = [weight_var(w) for w in wnames] + [request_var(REQ, i.name) for i in spec.inputs]
    out_names = [weight_var(o) if weight_outputs else request_var(REQ, o) for o in spec.outputs]
    prog = compile_program(spec.fn, arg_specs, name=name, input_names=in_names, output_names=out_names, visibility=vis)
    return NodeProgram(
        prog,
        tuple(i.name for i in spec.inputs),
        spec.revealable,
        "grantee",
        client_inputs=tuple(i.name for i in spec.inputs if i.source == "client"),
        node_inputs=tuple((i.name, i.shape) for i in spec.inputs if i.source == "node"),
        check=spec.check,
        client_specs=tuple((i.name, tuple(i.shape), i.dtype) for i in spec.inputs if i.source == "client"),
    )


def _int_param(params: dict, key: str, allowed: tuple[int, ...]) -> int:
    value = params.get(key)
    if not isinstance(value, int) or value not in allowed:
        raise InvalidInput(f"parameter {key!r} must be one of {list(allowed)}")
    return value


def _prefill(specs, config: dict, params: dict) -> NodeProgram:
    from ..secure.engine import CACHE_BUCKETS, PROMPT_BUCKETS, prefill_spec

    cfg = _llama_config(config)
    T = _int_param(params, "T", PROMPT_BUCKETS)
    S = _int_param(params, "S", CACHE_BUCKETS)
    if not T < S <= max(cfg.max_seq_len, CACHE_BUCKETS[0]):
        raise InvalidInput(f"need T < S <= the model's context ({cfg.max_seq_len})")
    return _from_spec(f"llama.prefill.T{T}.S{S}", prefill_spec(cfg, T, S), cfg)


def _decode(specs, config: dict, params: dict) -> NodeProgram:
    from ..secure.engine import CACHE_BUCKETS, decode_spec

    cfg = _llama_config(config)
    S = _int_param(params, "S", CACHE_BUCKETS)
    if S > max(cfg.max_seq_len, CACHE_BUCKETS[0]):
        raise InvalidInput(f"S exceeds the model's context ({cfg.max_seq_len})")
    return _from_spec(f"llama.decode.S{S}", decode_spec(cfg, S), cfg)


def head_program(config: dict) -> NodeProgram:
    """Load-time program for tied embeddings: ``w:lm_head = transpose(w:embed)``."""
    from ..secure.engine import head_spec

    cfg = _llama_config(config)
    return _from_spec("llama.head", head_spec(cfg), cfg, weights=["embed"], weight_outputs=True)


def stack_program(config: dict, key: str) -> NodeProgram:
    """Load-time program: ``w:stack.<key>`` from every layer's ``w:layers.<i>.<member>``
    (members: the key itself, or its ``secure.engine.FUSED_KEYS`` group)."""
    from ..secure.engine import stack_inputs, stack_spec

    cfg = _llama_config(config)
    return _from_spec(f"llama.stack.{key}", stack_spec(cfg, key), cfg, weights=stack_inputs(cfg, key), weight_outputs=True)


def _verify_builder(specs, config: dict, params: dict) -> NodeProgram:
    if params:
        raise InvalidInput("program 'verify' takes no parameters")
    return _verify(specs, is_stacked(config))


BUILDERS: dict[str, Callable[..., NodeProgram]] = {
    "verify": _verify_builder,
    "llama.prefill": _prefill,
    "llama.decode": _decode,
}


#: the parameters each program takes: anything else is refused before compiling
#: (unknown keys would otherwise each key a new compile and cache entry)
PARAM_KEYS: dict[str, frozenset[str]] = {
    "verify": frozenset(),
    "llama.prefill": frozenset({"T", "S"}),
    "llama.decode": frozenset({"S"}),
}


def check_params(program: str, params: dict, extra: dict[str, frozenset[str]]) -> None:
    allowed = PARAM_KEYS.get(program, extra.get(program))
    if allowed is None:
        raise InvalidInput(f"unknown program {program!r}; available: {sorted(BUILDERS)}")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"program {program!r} takes no parameter {unknown[0]!r}")


def build(program: str, specs: list[tuple[str, tuple[int, ...]]], config: dict, params: dict) -> NodeProgram:
    builder = BUILDERS.get(program)
    if builder is None:
        raise InvalidInput(f"unknown program {program!r}; available: {sorted(BUILDERS)}")
    return builder(specs, config, params)
