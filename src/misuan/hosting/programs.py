"""Hosting's node program: ``verify``, the owner's check that the hosted shares
reconstruct to the published weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import inference
from ..errors import InvalidInput
from ..mpc.compile import compile_program
from ..node.capability import NodeProgram, ProgramDef, RunContext, TensorSpecs
from ..node.programs import REQ, request_var, weight_var
from . import protocol as P


def _probe_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    if len(shape) == 1:
        return [(shape[0],)]
    if len(shape) == 2:
        return [(shape[0],), (shape[1],)]
    raise InvalidInput("verify supports 1-D and 2-D tensors only")


def build_verify(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    """``y_t = u_t · W_t · v_t`` for every tensor (1-D: ``u_t · w_t``).

    Reveals ``y`` (one number per tensor) to the model's owner only. The probes
    u_t, v_t are ±1 vectors every node draws itself, as public values, from the
    owner's seed (:mod:`.probes`): the owner draws the same ones and compares the
    revealed y with the same products on its plaintext weights (Freivalds-style),
    so a hosted model that does not reconstruct to the published weights is
    caught, while the owner cannot aim probes at single weights (and runs are
    rate-limited per hour) and the nodes learn nothing.
    """
    from spu import libspu

    resident, unstack = inference.resident_weights(specs, inference.is_stacked(config))
    n = len(resident)
    probe_specs: list[tuple[str, tuple[int, ...]]] = []
    for i, (_, shape) in enumerate(specs):
        for j, ps in enumerate(_probe_shapes(tuple(shape))):
            probe_specs.append((P.probe_name(i, j), ps))

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

    arg_specs = [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in resident]
    arg_specs += [jax.ShapeDtypeStruct(s, jnp.float32) for _, s in probe_specs]
    names = [weight_var(t) for t, _ in resident] + [request_var(REQ, p) for p, _ in probe_specs]
    vis = [libspu.Visibility.VIS_SECRET] * n + [libspu.Visibility.VIS_PUBLIC] * len(probe_specs)
    prog = compile_program(fn, arg_specs, name="model.verify", input_names=names, output_names=[request_var(REQ, P.Y)], visibility=vis)
    probes = tuple(p for p, _ in probe_specs)
    return NodeProgram(prog, probes, (P.Y,), "owner", node_inputs=tuple(probe_specs))


def check_seed(settings: dict) -> dict:
    if P.SEED not in settings:
        return {}
    seed = settings[P.SEED]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= P.MAX_SEED:
        raise InvalidInput(f"{P.VERIFY}'s seed is an integer in [0, 2^63 - 1] (the nodes draw the probes from it)")
    return {P.SEED: seed}


def verify_values(run: RunContext) -> tuple[dict[str, np.ndarray], int]:
    """±1 probes from the owner's seed: never the owner's choice."""
    from .probes import probe

    if P.SEED not in run.settings:
        raise InvalidInput(f"{P.VERIFY} needs a seed (the nodes draw the probes from it)")
    seed = run.settings[P.SEED]
    return {name: probe(seed, *P.parse_probe_name(name), shape[0]) for name, shape in run.program.node_inputs}, 0


VERIFY = ProgramDef(
    P.VERIFY,
    frozenset(),
    build_verify,
    settings=frozenset(P.VERIFY_SETTINGS),
    check_settings=check_seed,
    node_values=verify_values,
    runs_per_hour=P.VERIFY_RUNS_PER_HOUR,
)
