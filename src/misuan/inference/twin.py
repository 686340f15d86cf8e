"""The node programs' plaintext twin: the same prefill/decode functions
(:mod:`.specs`), evaluated in the clear with the plaintext ops (fp32,
:data:`misuan.models.llama.PLAIN_OPS`) on the owner's own weights in the resident
layout.

The reference for prompt layouts the plain engine (:mod:`.plain`) does not have,
e.g. a context window filled from a knowledge base (padding slots inside the
prompt, RoPE positions = slot numbers): the same layout, the same noise, so tokens
can be compared with the MPC run one for one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ..models import plain_ops
from ..models.llama import PLAIN_OPS, rope_tables
from ..models.sampling import scaled_gumbel
from . import protocol as P
from .backend import GenerationParams


def _linear_t(x, wt, residual=None):
    """The plaintext ``linear`` for a weight resident transposed, ``wt (N, K)``
    (``specs.resident_transposed``), as ``secure.ops.linear`` takes it."""
    return plain_ops.linear(x, wt.T, residual)


#: the plaintext ops over the resident layout
TWIN_OPS = dataclasses.replace(PLAIN_OPS, linear=_linear_t)


class ProgramTwin:
    """The owner's model, resident as on the nodes, run in the clear."""

    def __init__(self, path: str | Path):
        from ..models.loader import load_model
        from ..models.params import flatten_params
        from .specs import head_spec, program_weight_names, resident_layer_keys, stack_inputs, stack_spec, stacked_name

        self.config, params, self.tokenizer = load_model(path)
        cfg = self.config
        stored = dict(flatten_params(params, cfg))  # name -> (…) float32 plaintext
        resident = {"embed": stored["embed"], "norm": stored["norm"]}
        for key in resident_layer_keys(cfg):
            (resident[stacked_name(key)],) = stack_spec(cfg, key).fn(*[stored[n] for n in stack_inputs(cfg, key)])  # (L, N, K)
        resident["lm_head"] = head_spec(cfg).fn(stored["embed"])[0] if cfg.tie_embeddings else stored["lm_head"]
        self.weights = [jnp.asarray(resident[n]) for n in program_weight_names(cfg)]

    def generate_context(
        self, params: dict, hi: np.ndarray, lo: np.ndarray, ctx_hi: np.ndarray, ctx_lo: np.ndarray, gen: GenerationParams
    ) -> Iterator[int]:
        """The ids a ``llama.prefill_context`` run with ``params`` and these digits, then
        decode steps, produce (stops on EOS / max_tokens, as the MPC engine does)."""
        from .specs import context_prefill_spec, decode_spec

        cfg, V = self.config, self.config.vocab_size
        T, S = params[P.PARAM_T], params[P.PARAM_S]
        seed, temperature = gen.resolved_seed(), float(gen.temperature)
        pre = jax.jit(context_prefill_spec(cfg, T, S, params[P.PARAM_K], params[P.PARAM_C], params[P.PARAM_A], ops=TWIN_OPS).fn)
        dec = jax.jit(decode_spec(cfg, S, ops=TWIN_OPS).fn)
        tok, tid, k, v, mask, ok = pre(*self.weights, hi, lo, ctx_hi, ctx_lo, scaled_gumbel(seed, 0, V, temperature))
        if not bool(ok):
            from ..errors import InvalidInput

            raise InvalidInput("the prompt layout fails the prefill's check")
        eos = set(self.tokenizer.eos_ids)
        for step in range(1, gen.max_tokens + 1):
            token = int(round(float(np.asarray(tid)[0])))
            yield token
            if token in eos or step == gen.max_tokens:
                return
            cos, sin = rope_tables(cfg, np.array([T + step - 1]))  # (1, hd) at a public position
            tok, tid, k, v, mask = dec(*self.weights, tok, k, v, mask, cos, sin, scaled_gumbel(seed, step, V, temperature))


__all__ = ["ProgramTwin"]
