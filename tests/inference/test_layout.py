"""The LLaMA resident layout: how stored tensors map onto resident variables."""

from __future__ import annotations

import numpy as np

from misuan.inference.layout import resident_weights
from misuan.inference.specs import FUSED_KEYS, load_groups, program_weight_names, resident_shapes, stack_spec
from misuan.models.config import LlamaConfig
from misuan.models.params import param_shapes

CFG = LlamaConfig(vocab_size=40, dim=16, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=4, hidden_dim=24)


def _stored() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in param_shapes(CFG)}


def test_fused_stacks_hold_every_stored_tensor():
    """The load programs (stack_spec, run here in plain JAX) keep every per-layer
    matrix transposed, q|k|v and gate|up as row ranges of one (L, n, D) stack; the
    verify program's view of the resident variables gives back exactly the stored
    tensors."""
    stored = _stored()
    resident, unstack = resident_weights([(n, a.shape) for n, a in stored.items()], stacked=True)
    names = dict(resident)
    assert "stack.wq" not in names and "stack.w_up" not in names
    assert names["stack.wqkv"] == (3, 16 + 8 + 8, 16)
    assert names["stack.w_gate_up"] == (3, 48, 16)
    assert names["stack.w_down"] == (3, 16, 24) and names["stack.attn_norm"] == (3, 16)
    shapes = resident_shapes(CFG)
    for name in program_weight_names(CFG):  # what the prefill/decode programs read
        if name.startswith("stack."):
            assert names[name] == shapes[name]

    def load(key):  # what the node's load program builds for a resident stack
        members = FUSED_KEYS.get(key, (key,))
        (out,) = stack_spec(CFG, key).fn(*[stored[f"layers.{i}.{m}"] for m in members for i in range(3)])
        return out

    arrays = [load(n.removeprefix("stack.")) if n.startswith("stack.") else stored[n] for n, _ in resident]
    for (name, _), a in zip(resident, arrays):
        assert a.shape == names[name], name
    views = unstack(arrays)
    assert len(views) == len(stored)
    for (name, want), (got, transposed) in zip(stored.items(), views):
        assert transposed == (want.ndim == 2 and name.startswith("layers.")), name
        np.testing.assert_array_equal(np.asarray(got.T if transposed else got), want, err_msg=name)


def test_load_groups_cover_every_stack_largest_first():
    groups = load_groups(CFG)
    assert groups[0] == ("w_gate_up", ("w_gate", "w_up"))
    assert sorted(k for k, _ in groups) == sorted(n.removeprefix("stack.") for n in program_weight_names(CFG) if n.startswith("stack."))
    sizes = [sum(np.prod(dict(param_shapes(CFG))[f"layers.0.{m}"]) for m in members) for _, members in groups]
    assert sizes == sorted(sizes, reverse=True)


def test_unstacked_runtimes_keep_stored_names():
    stored = _stored()
    resident, unstack = resident_weights([(n, a.shape) for n, a in stored.items()], stacked=False)
    assert [n for n, _ in resident] == list(stored)
    assert unstack([1, 2]) == [(1, False), (2, False)]
