"""Compile JAX functions to SPU executables, deterministically, from shapes alone.

Compilation needs only ``jax.ShapeDtypeStruct`` arguments and is byte-for-byte
reproducible across processes for the same code and spu version, so nodes can
compile programs themselves and compare hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from spu import libspu
from spu.utils import frontend

from ..errors import InvalidInput


@dataclass(frozen=True, repr=False)
class Program:
    """A compiled SPU program and what is needed to feed and read it."""

    name: str
    executable: bytes
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    out_tree: Any
    out_shapes: tuple[tuple[tuple[int, ...], str], ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.executable).hexdigest()

    def __repr__(self) -> str:
        return f"Program({self.name!r}, inputs={len(self.input_names)}, outputs={len(self.output_names)}, sha256={self.sha256[:12]})"


def spec_of(x: Any) -> jax.ShapeDtypeStruct:
    """The public shape/dtype of an argument (never its values)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    arr = np.asarray(x)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return jax.ShapeDtypeStruct(arr.shape, arr.dtype)


def compile_program(
    fn: Callable,
    specs: Sequence[Any],
    *,
    name: str | None = None,
    input_prefix: str = "in",
    output_prefix: str = "out",
    visibility: list[int] | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    copts: libspu.CompilerOptions | None = None,
) -> Program:
    """Compile ``fn(*specs)`` to an SPU executable, all inputs secret unless ``visibility`` says.

    ``specs`` are ``jax.ShapeDtypeStruct`` (or arrays: only their shapes and dtypes
    are read). Inputs are named ``in0, in1, ...`` (outputs ``out0, ...``) unless
    explicit names are given: node programs name them after the runtime variables
    they read and write. ``copts`` are SPU compiler options (spu's defaults if None).
    """
    name = name or getattr(fn, "__name__", "program")
    input_names = list(input_names) if input_names is not None else [f"{input_prefix}{i}" for i in range(len(specs))]
    if len(input_names) != len(specs):
        raise ValueError("one input name per argument")

    def out_names(outs):
        if output_names is not None:
            if len(output_names) != len(outs):
                raise ValueError(f"{name}: program has {len(outs)} outputs, {len(output_names)} names given")
            return list(output_names)
        return [f"{output_prefix}{i}" for i in range(len(outs))]

    vis = visibility or [libspu.Visibility.VIS_SECRET] * len(specs)
    try:
        exe, out = frontend.compile(
            frontend.Kind.JAX,
            fn,
            list(specs),
            {},
            input_names,
            vis,
            out_names,
            **({"copts": copts} if copts is not None else {}),
        )
    except ValueError:
        raise
    except Exception as exc:  # jax tracing / spu compiler errors
        raise InvalidInput(f"cannot compile {name!r} for SPU: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    exe.name = name
    flat, tree = jax.tree_util.tree_flatten(out)
    return Program(
        name=name,
        executable=exe.SerializeToString(),
        input_names=tuple(exe.input_names),
        output_names=tuple(exe.output_names),
        out_tree=tree,
        out_shapes=tuple((tuple(o.shape), str(o.dtype)) for o in flat),
    )
