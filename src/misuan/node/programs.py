"""How the node core compiles a capability's program, and names runtime variables.

A client names a program and passes public parameters; each node builds the JAX
function from *its own code* and the asset's public config (the builder a
capability registered, :mod:`.capability`), compiles it here (deterministic,
shapes only), and the workers compare executable hashes over the link before
running. Clients can never ship code that reads stored shares. Each program
declares which outputs may be revealed to whom.

Variable naming in a resident runtime::

    w:<tensor>            a stored weight share (never readable by anyone)
    r:<request>:<name>    a request's inputs and outputs (outputs readable
                          only when the program declares them revealable)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ..mpc.compile import compile_program
from .capability import NodeProgram
from .names import REQ, bind_request, request_var, weight_var


@dataclass(frozen=True)
class Input:
    """A request input of a program: its short name, public shape, dtype and source.

    ``source``: ``client`` (uploaded by the requester, secret), ``carried`` (an output
    of an earlier run of the same request, never a client upload), ``node`` (public,
    computed by each node itself, e.g. the sampling noise)."""

    name: str
    shape: tuple[int, ...]
    source: str = "client"
    dtype: str = "float32"


@dataclass(frozen=True)
class ProgramSpec:
    """A program's function and the public shapes of its request inputs/outputs."""

    fn: Callable
    #: request inputs, after the weights, in order
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]
    revealable: tuple[str, ...]
    #: an output the nodes reveal among themselves; the run is refused unless it is true
    check: str | None = None


def compile_spec(
    name: str,
    spec: ProgramSpec,
    weight_shapes: Mapping[str, tuple[int, ...]],
    weights: Sequence[str],
    *,
    weight_outputs: bool = False,
    who: str = "grantee",
    weight_dtypes: Mapping[str, str] | None = None,
) -> NodeProgram:
    """Compile ``spec`` over resident weights ``weights`` (secret) and its request
    inputs (``client``/``carried`` secret, ``node`` public), with its outputs written
    as request variables (or, for load-time programs, as weights). Weights are
    float32 unless ``weight_dtypes`` names another dtype (e.g. int32 token digits)."""
    from spu import libspu

    dtypes = weight_dtypes or {}
    arg_specs = [jax.ShapeDtypeStruct(weight_shapes[w], jnp.dtype(dtypes.get(w, "float32"))) for w in weights]
    arg_specs += [jax.ShapeDtypeStruct(i.shape, jnp.dtype(i.dtype)) for i in spec.inputs]
    secret, public = libspu.Visibility.VIS_SECRET, libspu.Visibility.VIS_PUBLIC
    vis = [secret] * len(weights) + [public if i.source == "node" else secret for i in spec.inputs]
    in_names = [weight_var(w) for w in weights] + [request_var(REQ, i.name) for i in spec.inputs]
    out_names = [weight_var(o) if weight_outputs else request_var(REQ, o) for o in spec.outputs]
    prog = compile_program(spec.fn, arg_specs, name=name, input_names=in_names, output_names=out_names, visibility=vis)
    return NodeProgram(
        prog,
        tuple(i.name for i in spec.inputs),
        spec.revealable,
        who,
        client_inputs=tuple(i.name for i in spec.inputs if i.source == "client"),
        node_inputs=tuple((i.name, i.shape) for i in spec.inputs if i.source == "node"),
        check=spec.check,
        client_specs=tuple((i.name, tuple(i.shape), i.dtype) for i in spec.inputs if i.source == "client"),
    )


def int_param(params: Mapping, key: str, allowed: tuple[int, ...]) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        from ..errors import InvalidInput

        raise InvalidInput(f"parameter {key!r} must be one of {list(allowed)}")
    return value


__all__ = [
    "REQ",
    "Input",
    "NodeProgram",
    "ProgramSpec",
    "bind_request",
    "compile_spec",
    "int_param",
    "request_var",
    "weight_var",
]
