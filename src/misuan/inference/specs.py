"""The secure LLaMA engine: prefill and decode programs for SPU.

The same model code as the plaintext engine (:mod:`misuan.models.llama`) with
the MPC-friendly ops of :mod:`misuan.secure.ops` swapped in. Programs are
pure functions of secret inputs and are compiled by the nodes themselves.

Layout that hides the prompt length inside its shape bucket:

* the prompt is right-aligned in a bucket of ``T`` slots (padding first); the
  last real token always sits at slot ``T - 1``, a public index;
* RoPE uses slot numbers as positions — attention under RoPE depends only on
  relative positions, so shifting a whole sequence changes nothing;
* which slots hold real tokens is a *secret* attention mask from the client;
* the KV cache has ``S`` slots, right-aligned as well: each decode step rolls
  it left by one (a local operation on shares) and writes the new key/value
  at slot ``S - 1``, a static index — no secret or public dynamic index.

Per-layer weights are resident as ``(L, ...)`` stacks (``stack.<key>``, built
once at load by :func:`stack_spec`, q|k|v and gate|up concatenated, see
``FUSED_KEYS``). Matrices are resident transposed,
``W.T (N, K)`` (:func:`resident_transposed`), so that products put them on SPU's
left (``secure.ops.linear``). The programs loop over layers with
``fori_loop`` (a public counter: slicing a stack is local). SPU re-parses a
program's MLIR text on every run, so 30 unrolled layers cost ~3.5 s of pure
parsing per decode step; the loop is 30x smaller text (and compiles in seconds).

The sampled token never leaves the nodes in the clear: it is a secret one-hot
fed to the next step, plus a secret token id only the client reconstructs.

What a client feeds, and what the nodes make themselves (``Input.source``):

* ``client``: the prompt, as two secret integer digit one-hots per slot
  (:mod:`.onehot`); the program builds the one-hot rows and the attention mask
  from them and outputs ``ok``, a bit the nodes reveal among themselves (a run
  with ``ok = 0`` is refused and its outputs dropped);
* ``carried``: decode reads only what the previous step wrote (token, cache,
  mask); a client upload under those names is refused;
* ``node``: public values each node computes itself: ``gumbel = t · g`` with
  ``g`` the Gumbel noise of (seed, step) from a public PRG
  (:func:`misuan.models.sampling.gumbel_noise`; zeros when greedy), and decode's
  RoPE rows (the position ``T + step - 1`` is public). Greedy and temperature
  sampling are one program, ``argmax(logits + gumbel)``: adding a public vector is
  local, so greedy pays nothing; the nodes know the temperature and the noise, never
  the logits or the token.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ..models.config import LlamaConfig
from ..models.llama import KVCache, LlamaOps, block, rope_tables
from ..node.programs import Input, ProgramSpec
from ..secure import ops as secure_ops
from ..secure.onehot import context_onehot_rows, digit_base, onehot_rows, prefill_mask
from ..secure.sampling import argmax_onehot
from . import protocol as P


def secure_ops_for_llama() -> LlamaOps:
    return LlamaOps(**secure_ops.secure_llama_ops())


def weight_names(cfg: LlamaConfig) -> list[str]:
    """Weights the programs read, in argument order (``lm_head`` included)."""
    names = ["embed"]
    for i in range(cfg.n_layers):
        keys = ["attn_norm", "wq", "wk", "wv"]
        if cfg.qkv_bias:
            keys += ["bq", "bk", "bv"]
        keys += ["wo"] + (["bo"] if cfg.o_bias else []) + ["mlp_norm", "w_gate", "w_up", "w_down"]
        names += [f"layers.{i}.{k}" for k in keys]
    return names + ["norm", "lm_head"]


def weight_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    from ..models.params import param_shapes

    return dict(param_shapes(cfg))


def layer_keys(cfg: LlamaConfig) -> list[str]:
    """Per-layer weight keys, in ``weight_names`` order."""
    return [n.split(".", 2)[2] for n in weight_names(cfg) if n.startswith("layers.0.")]


def stacked_name(key: str) -> str:
    return f"stack.{key}"


def resident_transposed(shape: tuple[int, ...]) -> bool:
    """Whether a per-layer tensor of this (stored) shape is resident as its transpose.

    Every per-layer matrix ``W (K, N)`` is kept as ``W.T (N, K)``: ``secure.ops.linear``
    then puts it on SPU's left, where ABY3 does not add its two shares element by
    element through a strided view (decode row 576 -> 3072: 0.022 s against 0.034 s;
    one decode step spent ~15 % of its CPU time in those additions)."""
    return len(shape) == 2


#: Per-layer matrices that read the same input, kept as one resident stack
#: concatenated along the output axis (rows of the transposed matrices): one
#: product instead of several (decode row,
#: 3 processes, 2 cores: q|k|v 31 -> 22 ms, gate|up 51 -> 43 ms; 32 rows: gate|up
#: 0.32 -> 0.24 s), fewer rounds.
FUSED_KEYS: dict[str, tuple[str, ...]] = {"wqkv": ("wq", "wk", "wv"), "w_gate_up": ("w_gate", "w_up")}


def fused_key(key: str) -> str | None:
    """The ``FUSED_KEYS`` group a per-layer key belongs to, or None."""
    return next((f for f, members in FUSED_KEYS.items() if key in members), None)


def resident_layer_keys(cfg: LlamaConfig) -> list[str]:
    """Keys of the resident (L, ...) stacks: ``layer_keys`` with each fused group
    replaced by its fused key (at the place of its first member)."""
    keys: list[str] = []
    for k in layer_keys(cfg):
        key = fused_key(k) or k
        if key not in keys:
            keys.append(key)
    return keys


def program_weight_names(cfg: LlamaConfig) -> list[str]:
    """Resident weights the prefill/decode programs read: per-layer ones as stacks."""
    return ["embed", *(stacked_name(k) for k in resident_layer_keys(cfg)), "norm", "lm_head"]


def resident_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every resident weight: stacks of every layer key (matrices
    transposed, (L, N, K)), fused stacks (L, sum N_i, K)."""
    shapes = weight_shapes(cfg)
    for k in layer_keys(cfg):
        shape = shapes[f"layers.0.{k}"]
        shapes[stacked_name(k)] = (cfg.n_layers, *(shape[::-1] if resident_transposed(shape) else shape))
    for fused, members in FUSED_KEYS.items():
        k_in, _ = shapes[f"layers.0.{members[0]}"]
        n_out = sum(shapes[f"layers.0.{m}"][1] for m in members)
        shapes[stacked_name(fused)] = (cfg.n_layers, n_out, k_in)
    return shapes


def load_groups(cfg: LlamaConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(resident key, per-layer member keys) of every resident stack, largest first:
    the node loads and stacks one group at a time (gate|up, the largest, first). Meant
    to bound the load peak by the stacks so far plus one group twice; measured, the
    peak did not drop (SmolLM2: 2.9-3.2 GB PSS per node either way)."""
    shapes = weight_shapes(cfg)
    groups = [(key, FUSED_KEYS.get(key, (key,))) for key in resident_layer_keys(cfg)]

    def size(group):
        return sum(math.prod(shapes[f"layers.0.{m}"]) for m in group[1])

    return sorted(groups, key=lambda g: -size(g))


def stack_inputs(cfg: LlamaConfig, key: str) -> list[str]:
    """The per-layer tensors a resident key's stack is built from, in the argument
    order of :func:`stack_spec`: every layer of each member in turn (member-major)."""
    return [f"layers.{i}.{m}" for m in FUSED_KEYS.get(key, (key,)) for i in range(cfg.n_layers)]


def stack_spec(cfg: LlamaConfig, key: str) -> ProgramSpec:
    """Load-time program: the per-layer tensors of a resident key (``stack_inputs``)
    -> one ``(L, ...)`` stack. Matrices are transposed, (L, N, K); a fused key's
    members are concatenated along N (``FUSED_KEYS``), all in one concatenation of
    views that writes the output densely."""
    members = FUSED_KEYS.get(key, (key,))
    transposed = resident_transposed(weight_shapes(cfg)[f"layers.0.{members[0]}"])
    n_layers = cfg.n_layers

    def stack(*per_layer):
        by_member = [per_layer[j * n_layers : (j + 1) * n_layers] for j in range(len(members))]
        if not transposed:
            return (jnp.stack(by_member[0]),)  # (L, ...) secret
        pieces = [m[i].T for i in range(n_layers) for m in by_member]  # views (N_m, K), layer-major
        flat = jnp.concatenate(pieces, axis=0)  # (L * sum N_m, K) secret, dense
        return (flat.reshape(n_layers, -1, flat.shape[-1]),)  # (L, sum N_m, K)

    return ProgramSpec(stack, (), (stacked_name(key),), ())


def _forward_stacked(ops: LlamaOps, cfg: LlamaConfig, w: dict, x, cos, sin, mask, cache: KVCache, pos: int):
    """All blocks as one ``fori_loop`` over the stacks + final norm; x (T, D) -> (h, cache).

    The loop carries only the new cache rows (L, KV, T, hd) and writes them into the
    (L, KV, S, hd) cache once after it: updating the whole stacked cache inside the
    loop copies all of it in every layer (decode, S = 64: 0.2-0.4 s per step in
    copies alone; the row carry 0.05 s, 3 processes on 2 cores).
    """
    stacks = {k: w[stacked_name(k)] for k in resident_layer_keys(cfg)}
    t = x.shape[0]
    if ops.softmax is secure_ops.softmax:
        # the mask as an additive bias, once for all layers (no product per layer)
        ops = dataclasses.replace(ops, softmax=secure_ops.softmax_biased)
        mask = secure_ops.mask_bias(mask)  # (T, S) secret: 0 or -MASK_FILL

    def body(i, carry):
        x, k_rows, v_rows = carry
        lp = {key: jax.lax.dynamic_index_in_dim(s, i, keepdims=False) for key, s in stacks.items()}
        k_l = jax.lax.dynamic_index_in_dim(cache.k, i, keepdims=True)  # (1, KV, S, hd)
        v_l = jax.lax.dynamic_index_in_dim(cache.v, i, keepdims=True)  # (1, KV, S, hd)
        x, c = block(ops, cfg, lp, x, cos, sin, mask, KVCache(k_l, v_l), 0, pos)
        k_rows = jax.lax.dynamic_update_index_in_dim(k_rows, c.k[0, :, pos : pos + t], i, 0)  # (L, KV, T, hd)
        v_rows = jax.lax.dynamic_update_index_in_dim(v_rows, c.v[0, :, pos : pos + t], i, 0)  # (L, KV, T, hd)
        return x, k_rows, v_rows

    rows = jnp.zeros(cache.k.shape[:2] + (t,) + cache.k.shape[3:], x.dtype)  # (L, KV, T, hd)
    x, k_rows, v_rows = jax.lax.fori_loop(0, cfg.n_layers, body, (x, rows, rows))
    k = cache.k.at[:, :, pos : pos + t].set(k_rows)  # (L, KV, S, hd)
    v = cache.v.at[:, :, pos : pos + t].set(v_rows)  # (L, KV, S, hd)
    return ops.rms_norm(x, w["norm"], cfg.norm_eps), KVCache(k, v)


def _logits(ops: LlamaOps, cfg: LlamaConfig, w: dict, h: jax.Array) -> jax.Array:
    """h (1, D) -> logits (1, V). Tied: the (V, D) embedding on the left (4x faster)."""
    if cfg.tie_embeddings:
        return secure_ops.linear(h, w["embed"])  # (1, V)
    return ops.matmul(h, w["lm_head"])  # (1, V)


def _embed_rows(cfg: LlamaConfig, w: dict, onehot: jax.Array) -> jax.Array:
    """onehot (T, V) -> x (T, D). Tied: the dense (D, V) copy on the left (one row 4x
    faster; 32 rows 2.1 s against 2.3 s, and no 0.45 GB transient per node)."""
    if cfg.tie_embeddings:
        return secure_ops.embed_onehot_t(onehot, w["lm_head"])  # (T, D); lm_head = dense embed.T
    return secure_ops.embed_onehot(onehot, w["embed"])  # (T, D)


def _token_id(onehot: jax.Array) -> jax.Array:
    """Secret id of a secret one-hot (1, V) -> (1,); exact for V < 2^24."""
    return onehot @ jnp.arange(onehot.shape[-1], dtype=jnp.float32)


def _prefill_from_rows(ops: LlamaOps, cfg: LlamaConfig, w: dict, rows, real, gumbel, T: int, S: int):
    """Prompt rows (T, V) + real (T,) -> (token one-hot, token id, k, v, decode mask)."""
    L, KV, hd = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
    x = _embed_rows(cfg, w, rows.astype(jnp.float32))  # (T, D) secret
    mask = prefill_mask(real)  # (T, T) secret 0/1
    cos, sin = rope_tables(cfg, jnp.arange(T))  # (T, hd) public constants
    cache = KVCache(jnp.zeros((L, KV, T, hd), jnp.float32), jnp.zeros((L, KV, T, hd), jnp.float32))
    h, cache = _forward_stacked(ops, cfg, w, x, cos, sin, mask, cache, 0)  # h (T, D)
    logits = _logits(ops, cfg, w, h[T - 1 :])  # (1, V) secret, last real token
    tok = argmax_onehot(logits + gumbel[None, :])  # (1, V) secret one-hot; gumbel public
    pad = jnp.zeros((L, KV, S - T, hd), jnp.float32)
    k = jnp.concatenate([pad, cache.k], axis=2)  # (L, KV, S, hd) right-aligned
    v = jnp.concatenate([pad, cache.v], axis=2)  # (L, KV, S, hd)
    dmask = jnp.concatenate([jnp.zeros((S - T,), jnp.float32), real.astype(jnp.float32)])[None, :]  # (1, S) secret
    return tok, _token_id(tok), k, v, dmask


PREFILL_OUTPUTS = (P.TOKEN, P.TOKEN_ID, P.KEYS, P.VALUES, P.MASK, P.PROMPT_OK)


def prefill_spec(cfg: LlamaConfig, T: int, S: int, ops: LlamaOps | None = None) -> ProgramSpec:
    """Prompt (T slots, right-aligned) -> first sampled token + a right-aligned S-slot cache."""
    ops = ops or secure_ops_for_llama()
    names = program_weight_names(cfg)
    V = cfg.vocab_size
    n_hi, base = digit_base(V)

    def prefill(*args):
        w = dict(zip(names, args[: len(names)]))
        hi, lo, gumbel = args[len(names) :]
        rows, real, ok = onehot_rows(hi, lo, V)  # (T, V) int, (T,) int, () bool; secret
        return (*_prefill_from_rows(ops, cfg, w, rows, real, gumbel, T, S), ok)

    inputs = (
        Input(P.PROMPT_HI, (T, n_hi), "client", "int32"),
        Input(P.PROMPT_LO, (T, base), "client", "int32"),
        Input(P.GUMBEL, (V,), "node"),
    )
    return ProgramSpec(prefill, inputs, PREFILL_OUTPUTS, (P.TOKEN_ID,), check=P.PROMPT_OK)


def context_prefill_spec(cfg: LlamaConfig, T: int, S: int, K: int, C: int, start: int, ops: LlamaOps | None = None) -> ProgramSpec:
    """:func:`prefill_spec` with a context window filled on the nodes: ``K`` chunks of
    ``C`` token digits (``P.CTX_HI``/``P.CTX_LO``, carried: imported from a knowledge
    base's search, never uploaded) at the public slots ``[start, start + K C)`` of the
    client's prompt. Decode continues as after any prefill."""
    ops = ops or secure_ops_for_llama()
    names = program_weight_names(cfg)
    V = cfg.vocab_size
    n_hi, base = digit_base(V)
    if not 0 <= start and start + K * C < T:
        raise ValueError("the context window must end before the prompt's last slot")

    def prefill(*args):
        w = dict(zip(names, args[: len(names)]))
        hi, lo, chi, clo, gumbel = args[len(names) :]
        rows, real, ok = context_onehot_rows(hi, lo, chi, clo, V, start)  # (T, V), (T,), (); secret
        return (*_prefill_from_rows(ops, cfg, w, rows, real, gumbel, T, S), ok)

    inputs = (
        Input(P.PROMPT_HI, (T, n_hi), "client", "int32"),
        Input(P.PROMPT_LO, (T, base), "client", "int32"),
        Input(P.CTX_HI, (K, C), "carried", "int32"),
        Input(P.CTX_LO, (K, C), "carried", "int32"),
        Input(P.GUMBEL, (V,), "node"),
    )
    return ProgramSpec(prefill, inputs, PREFILL_OUTPUTS, (P.TOKEN_ID,), check=P.PROMPT_OK)


def decode_spec(cfg: LlamaConfig, S: int, ops: LlamaOps | None = None) -> ProgramSpec:
    """One token against the S-slot cache -> next sampled token + the updated cache."""
    ops = ops or secure_ops_for_llama()
    names = program_weight_names(cfg)
    V, L, KV, hd = cfg.vocab_size, cfg.n_layers, cfg.n_kv_heads, cfg.head_dim

    def decode(*args):
        w = dict(zip(names, args[: len(names)]))
        tok, k, v, mask, cos, sin, gumbel = args[len(names) :]
        x = _embed_rows(cfg, w, tok)  # (1, D) secret
        k = jnp.roll(k, -1, axis=2)  # (L, KV, S, hd): oldest slot out, slot S-1 free
        v = jnp.roll(v, -1, axis=2)  # (L, KV, S, hd)
        mask = jnp.concatenate([mask[:, 1:], jnp.ones((1, 1), jnp.float32)], axis=1)  # (1, S) secret, new slot seen
        h, cache = _forward_stacked(ops, cfg, w, x, cos, sin, mask, KVCache(k, v), S - 1)  # h (1, D)
        logits = _logits(ops, cfg, w, h)  # (1, V)
        nxt = argmax_onehot(logits + gumbel[None, :])  # (1, V); gumbel public
        return nxt, _token_id(nxt), cache.k, cache.v, mask

    inputs = (
        Input(P.TOKEN, (1, V), "carried"),
        Input(P.KEYS, (L, KV, S, hd), "carried"),
        Input(P.VALUES, (L, KV, S, hd), "carried"),
        Input(P.MASK, (1, S), "carried"),
        Input(P.COS, (1, hd), "node"),
        Input(P.SIN, (1, hd), "node"),
        Input(P.GUMBEL, (V,), "node"),
    )
    return ProgramSpec(decode, inputs, (P.TOKEN, P.TOKEN_ID, P.KEYS, P.VALUES, P.MASK), (P.TOKEN_ID,))


def head_spec(cfg: LlamaConfig) -> ProgramSpec:
    """At load time, for tied embeddings: ``lm_head = embed.T`` as a dense copy.

    Decode reads it for the one-hot embedding lookup (``linear``: 0.15 s against
    0.60 s for ``onehot @ embed``) and the logits read ``embed`` itself; 453 MB more
    memory for SmolLM2. (A transposed view instead of the copy made ``h @ embed.T``
    take 14.8 s.)
    """

    def head(embed):
        return (secure_ops.dense_transpose(embed),)  # (D, V) dense

    return ProgramSpec(head, (), ("lm_head",), ())
