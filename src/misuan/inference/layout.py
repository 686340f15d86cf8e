"""How a LLaMA-family model is resident in a runtime, and the plan that loads it.

Per-layer weights are resident as ``(L, ...)`` stacks (``stack.<key>``), matrices
transposed (``specs.resident_transposed``), fused groups (``specs.FUSED_KEYS``) as row
ranges of one stack. Programs of other capabilities over a model (hosting's
``verify``, the benchmarks) reach stored tensors through :func:`resident_weights`.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ..models.config import LlamaConfig
from ..node.capability import DropTensors, LoadStep, LoadTensors, RunLoadProgram, TensorSpecs

_LAYER_TENSOR = re.compile(r"layers\.(\d+)\.(.+)")


def llama_config(config: dict) -> LlamaConfig:
    """The model's public config as published (hosting adds ``n_params``)."""
    return LlamaConfig.from_public(config)


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
    (``specs.resident_transposed``), and members of ``specs.FUSED_KEYS``
    groups live as row ranges of the (transposed) fused stack."""
    if not stacked:
        return [(n, tuple(s)) for n, s in specs], lambda arrays: [(a, False) for a in arrays]
    from .specs import FUSED_KEYS, fused_key, resident_transposed

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


def load_plan(config: dict, specs: TensorSpecs) -> list[LoadStep]:
    """The steps that make a model resident, in an order that keeps the peak low.

    Unstacked tensors (the embedding) and the output head first, while little else
    is resident: expanding a stored share briefly takes ~3x its size (SmolLM2's
    embedding: ~1.4 GB), which on top of all the stacks was the load peak (2.9-3.3
    GB PSS per node). Then one resident stack at a time, largest first: load its
    per-layer tensors, stack them, drop them."""
    from .programs import head_program, stack_program
    from .specs import load_groups, stack_inputs

    tensors = [t for t, _ in specs]
    if not is_stacked(config):
        return [LoadTensors(tuple(tensors))]
    cfg = llama_config(config)
    stacks = [(key, tuple(stack_inputs(cfg, key))) for key, _members in load_groups(cfg)]
    stacked = {t for _key, per_layer in stacks for t in per_layer}
    steps: list[LoadStep] = [LoadTensors(tuple(t for t in tensors if t not in stacked))]
    if config.get("tie_embeddings"):
        # the output head, pre-transposed once here (see specs.head_spec)
        steps.append(RunLoadProgram(lambda: head_program(config)))
    for key, per_layer in stacks:
        steps += [LoadTensors(per_layer), RunLoadProgram(lambda key=key: stack_program(config, key)), DropTensors(per_layer)]
    return steps
