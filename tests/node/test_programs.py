"""Node programs: how stored tensors map onto resident variables."""

from __future__ import annotations

import numpy as np

from misuan.models.config import LlamaConfig
from misuan.models.params import param_shapes
from misuan.node.programs import resident_weights
from misuan.secure.engine import FUSED_KEYS, program_weight_names, resident_shapes

CFG = LlamaConfig(vocab_size=40, dim=16, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=4, hidden_dim=24)


def _stored() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in param_shapes(CFG)}


def test_fused_stacks_hold_every_stored_tensor():
    """q|k|v and gate|up live as column ranges of one (L, D, n) stack; the verify
    program's view of them is exactly the stored tensors."""
    stored = _stored()
    resident, unstack = resident_weights([(n, a.shape) for n, a in stored.items()], stacked=True)
    names = dict(resident)
    assert "stack.wq" not in names and "stack.w_up" not in names
    assert names["stack.wqkv"] == (3, 16, 16 + 8 + 8)
    assert names["stack.w_gate_up"] == (3, 16, 48)
    shapes = resident_shapes(CFG)
    for name in program_weight_names(CFG):  # what the prefill/decode programs read
        if name.startswith("stack."):
            assert names[name] == shapes[name]

    def stack(*keys):  # what the load programs build: stack each key, concatenate the group
        return np.concatenate([np.stack([stored[f"layers.{i}.{k}"] for i in range(3)]) for k in keys], axis=-1)

    arrays = []
    for name, _ in resident:
        key = name.removeprefix("stack.")
        arrays.append(stack(*FUSED_KEYS.get(key, (key,))) if name.startswith("stack.") else stored[name])
    views = unstack(arrays)
    assert len(views) == len(stored)
    for (name, want), got in zip(stored.items(), views):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=name)


def test_unstacked_runtimes_keep_stored_names():
    stored = _stored()
    resident, unstack = resident_weights([(n, a.shape) for n, a in stored.items()], stacked=False)
    assert [n for n, _ in resident] == list(stored)
    assert unstack([1, 2]) == [1, 2]
