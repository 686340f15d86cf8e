"""The node programs of encrypted inference: prefill, decode and the load-time
programs that lay a LLaMA-family model out in a runtime.

Each builder compiles a spec of :mod:`.specs` over the model's resident weights
and declares what it reveals: the sampled token id (``protocol.TOKEN_ID``), to the
requester only; the prefill's check bit (``protocol.PROMPT_OK``) among the nodes.

The public inputs the nodes make themselves for each run (the noise and decode's
RoPE row) are defined here too, from public values only:

* ``gumbel``: ``temperature * g`` with ``g`` the Gumbel noise of ``(seed, step)``
  (:func:`misuan.models.sampling.scaled_gumbel`; zeros when greedy). The seed and the
  temperature come with the prefill run (``protocol.SAMPLING_KEYS``), bounded here;
  ``step`` is counted by the node (0 for the prefill, then one per decode run);
* ``cos``/``sin``: decode's RoPE row at the public position ``T + step - 1``.

The noise is public to the nodes; it reveals nothing to them, who never see the
logits or a token. The requester knows it too (it follows from its seed).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from ..models.sampling import check_seed, check_temperature, scaled_gumbel
from ..node.capability import NodeProgram, ProgramDef, RunContext, TensorSpecs
from ..node.programs import compile_spec, int_param
from . import protocol as P
from .layout import llama_config


def _context(cfg) -> int:
    return max(cfg.max_seq_len, P.CACHE_BUCKETS[0])


def build_prefill(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    from .specs import prefill_spec, program_weight_names, resident_shapes

    cfg = llama_config(config)
    T = int_param(params, P.PARAM_T, P.PROMPT_BUCKETS)
    S = int_param(params, P.PARAM_S, P.CACHE_BUCKETS)
    if not T < S <= _context(cfg):
        raise InvalidInput(f"need T < S <= the model's context ({cfg.max_seq_len})")
    spec = prefill_spec(cfg, T, S)
    return compile_spec(f"{P.PREFILL}.T{T}.S{S}", spec, resident_shapes(cfg), program_weight_names(cfg))


def build_context_prefill(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    from .specs import context_prefill_spec, program_weight_names, resident_shapes

    cfg = llama_config(config)
    T = int_param(params, P.PARAM_T, P.PROMPT_BUCKETS)
    S = int_param(params, P.PARAM_S, P.CACHE_BUCKETS)
    K = int_param(params, P.PARAM_K, tuple(range(1, P.MAX_CONTEXT_CHUNKS + 1)))
    C = int_param(params, P.PARAM_C, tuple(range(1, T)))
    A = int_param(params, P.PARAM_A, tuple(range(0, T)))
    if not T < S <= _context(cfg):
        raise InvalidInput(f"need T < S <= the model's context ({cfg.max_seq_len})")
    if A + K * C >= T:
        raise InvalidInput(f"the context window ({K} x {C} tokens from slot {A}) must end before the prompt's last slot ({T - 1})")
    spec = context_prefill_spec(cfg, T, S, K, C, A)
    name = f"{P.CONTEXT_PREFILL}.T{T}.S{S}.K{K}.C{C}.A{A}"
    return compile_spec(name, spec, resident_shapes(cfg), program_weight_names(cfg))


def build_decode(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    from .specs import decode_spec, program_weight_names, resident_shapes

    cfg = llama_config(config)
    S = int_param(params, P.PARAM_S, P.CACHE_BUCKETS)
    if S > _context(cfg):
        raise InvalidInput(f"S exceeds the model's context ({cfg.max_seq_len})")
    return compile_spec(f"{P.DECODE}.S{S}", decode_spec(cfg, S), resident_shapes(cfg), program_weight_names(cfg))


def head_program(config: dict) -> NodeProgram:
    """Load-time program for tied embeddings: ``w:lm_head = transpose(w:embed)``."""
    from .specs import head_spec, resident_shapes

    cfg = llama_config(config)
    return compile_spec(P.HEAD, head_spec(cfg), resident_shapes(cfg), ["embed"], weight_outputs=True)


def stack_program(config: dict, key: str) -> NodeProgram:
    """Load-time program: ``w:stack.<key>`` from every layer's ``w:layers.<i>.<member>``
    (members: the key itself, or its ``specs.FUSED_KEYS`` group)."""
    from .specs import resident_shapes, stack_inputs, stack_spec

    cfg = llama_config(config)
    spec = stack_spec(cfg, key)
    return compile_spec(f"{P.STACK}.{key}", spec, resident_shapes(cfg), stack_inputs(cfg, key), weight_outputs=True)


# ---------------------------------------------------------------- run-time hooks


def check_sampling(settings: dict) -> dict:
    return {
        P.SEED: check_seed(settings.get(P.SEED, 0)),
        P.TEMPERATURE: check_temperature(settings.get(P.TEMPERATURE, 0.0)),
    }


def _values(run: RunContext, step: int, seed: int, temperature: float, T: int) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for name, shape in run.program.node_inputs:
        if name == P.GUMBEL:
            values[name] = scaled_gumbel(seed, step, shape[0], temperature)
        elif name in (P.COS, P.SIN):
            from ..models.llama import rope_tables

            cos, sin = rope_tables(llama_config(dict(run.config)), np.array([T + step - 1]))  # (1, hd) at a public position
            values[name] = np.asarray(cos if name == P.COS else sin, np.float32).reshape(shape)
        else:  # pragma: no cover - a new node input needs its definition here
            raise InvalidInput(f"no definition for node input {name!r}")
    return values


def prefill_values(run: RunContext) -> tuple[dict[str, np.ndarray], int]:
    s = run.settings
    return _values(run, 0, s[P.SEED], s[P.TEMPERATURE], run.params[P.PARAM_T]), 0


def decode_values(run: RunContext) -> tuple[dict[str, np.ndarray], int]:
    st = run.state.values
    if "T" not in st:
        raise InvalidInput(f"run {P.PREFILL} for this request first")
    if run.params.get(P.PARAM_S) != st["S"]:
        raise InvalidInput(f"S must be the prefill's cache bucket ({st['S']})")
    step = st["step"] + 1
    return _values(run, step, st[P.SEED], st[P.TEMPERATURE], st["T"]), step


def after_prefill(run: RunContext, step: int) -> None:
    s = run.settings
    run.state.values.update(
        {"T": run.params[P.PARAM_T], "S": run.params[P.PARAM_S], "step": 0, P.SEED: s[P.SEED], P.TEMPERATURE: s[P.TEMPERATURE]}
    )


def after_decode(run: RunContext, step: int) -> None:
    run.state.values["step"] = step


#: what every prefill shares: sampling settings, the noise, the state it leaves for decode, the prompt upload
_PREFILL_HOOKS = dict(
    settings=frozenset(P.SAMPLING_KEYS),
    check_settings=check_sampling,
    node_values=prefill_values,
    after_run=after_prefill,
    uploads=P.CLIENT_INPUTS,
)

PROGRAMS = (
    ProgramDef(
        P.PREFILL, frozenset({P.PARAM_T, P.PARAM_S}), build_prefill, **_PREFILL_HOOKS, check_failed="each prompt row must be one token"
    ),
    ProgramDef(
        P.CONTEXT_PREFILL,
        frozenset({P.PARAM_T, P.PARAM_S, P.PARAM_K, P.PARAM_C, P.PARAM_A}),
        build_context_prefill,
        **_PREFILL_HOOKS,
        imports=(P.CTX_HI, P.CTX_LO),
        check_failed="each prompt row must be one token, the context window empty",
    ),
    ProgramDef(P.DECODE, frozenset({P.PARAM_S}), build_decode, node_values=decode_values, after_run=after_decode, follows=P.PREFILL),
)
