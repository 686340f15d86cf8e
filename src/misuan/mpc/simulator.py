"""In-process SPU simulator: run a JAX function under MPC with parties as threads.

For unit tests and micro-benchmarks of MPC ops only -- not a cluster. The client
side (sharing, reconstruction) and all parties live in this process and talk over
SPU's in-memory link (``libspu.link.create_mem``), so the numerics and the
protocol messages are those of a real deployment, but there is no network and no
isolation between parties.

    >>> out = simulate(jnp.add, x, y)                          # ABY3, FM64, 18 bits
    >>> out = simulate(f, x, protocol="CHEETAH")               # 2 parties
    >>> out = simulate(f, x, cos, public_argnums=(1,))         # cos is public
    >>> prog = sim_program(f, x)                               # compile once ...
    >>> out, s = run_program(prog, x, config=runtime_config(), with_run_seconds=True)

Enum-valued runtime options take the enum member or its name:
``simulate(f, x, fxp_exp_mode="EXP_PADE", sigmoid_mode="SIGMOID_REAL")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from spu import api as spu_api
from spu import libspu

from misuan.errors import ComputeError, ConfigError
from misuan.mpc.compile import compile_program

#: Parties each protocol runs with by default (ABY3 needs exactly 3, CHEETAH exactly 2).
DEFAULT_WORLD_SIZE: Mapping[str, int] = MappingProxyType({"ABY3": 3, "CHEETAH": 2, "SEMI2K": 2, "REF2K": 1})
_FIXED_WORLD_SIZE: Mapping[str, int] = MappingProxyType({"ABY3": 3, "CHEETAH": 2})

# RuntimeConfig fields whose values are enums: option name -> enum class.
_ENUM_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "fxp_exp_mode": libspu.RuntimeConfig.ExpMode,
        "fxp_log_mode": libspu.RuntimeConfig.LogMode,
        "sigmoid_mode": libspu.RuntimeConfig.SigmoidMode,
        "sort_method": libspu.RuntimeConfig.SortMethod,
        "beaver_type": libspu.RuntimeConfig.BeaverType,
    }
)


def _enum_member(enum_cls: Any, name: str, what: str) -> Any:
    try:
        return enum_cls.__members__[name.upper()]
    except KeyError:
        known = ", ".join(enum_cls.__members__)
        raise ConfigError(f"unknown {what} {name!r}; expected one of {known}") from None


def runtime_config(
    protocol: str = "ABY3",
    field: str = "FM64",
    fxp_fraction_bits: int = 18,
    **options: Any,
) -> libspu.RuntimeConfig:
    """Build a ``libspu.RuntimeConfig``.

    ``options`` are RuntimeConfig fields (``fxp_exp_mode``, ``fxp_exp_iters``,
    ``sigmoid_mode``, ``experimental_disable_mmul_split``, ``enable_pphlo_profile`` ...).
    Enum fields accept the member or its name. Unknown fields raise ConfigError.
    """
    cfg = libspu.RuntimeConfig()
    cfg.protocol = _enum_member(libspu.ProtocolKind, protocol, "protocol")
    cfg.field = _enum_member(libspu.FieldType, field, "field")
    cfg.fxp_fraction_bits = fxp_fraction_bits
    for name, value in options.items():
        if name.startswith("_") or not hasattr(cfg, name) or callable(getattr(cfg, name)):
            raise ConfigError(f"unknown SPU runtime option {name!r}")
        if isinstance(value, str) and name in _ENUM_OPTIONS:
            value = _enum_member(_ENUM_OPTIONS[name], value, name)
        try:
            setattr(cfg, name, value)
        except TypeError as e:
            raise ConfigError(f"bad value for SPU runtime option {name!r}: {e}") from None
    return cfg


@dataclass(frozen=True)
class SimProgram:
    """A compiled SPU executable plus what is needed to feed it and unflatten its result."""

    executable: libspu.Executable
    out_tree: Any  # jax PyTreeDef of the outputs
    visibility: tuple[libspu.Visibility, ...]  # one per flattened input


def _flatten(args: Sequence[Any], public_argnums: Sequence[int]) -> tuple[list, list]:
    leaves: list = []
    vis: list = []
    for i, arg in enumerate(args):
        arg_leaves = jax.tree_util.tree_leaves(arg)
        leaves += arg_leaves
        v = libspu.Visibility.VIS_PUBLIC if i in public_argnums else libspu.Visibility.VIS_SECRET
        vis += [v] * len(arg_leaves)
    return leaves, vis


def sim_program(
    fn: Callable[..., Any],
    *args: Any,
    public_argnums: Sequence[int] = (),
    copts: libspu.CompilerOptions | None = None,
) -> SimProgram:
    """Compile ``fn`` (with :func:`misuan.mpc.compile.compile_program`) for the shapes/dtypes
    of ``args`` (arrays, pytrees or ShapeDtypeStructs).

    Positional args listed in ``public_argnums`` are public inputs; all others are secret.
    Python constants closed over by ``fn`` are public constants of the program.
    """
    leaves, vis = _flatten(args, public_argnums)
    in_tree = jax.tree_util.tree_structure(tuple(args))

    def flat_fn(*xs):
        return fn(*jax.tree_util.tree_unflatten(in_tree, list(xs)))

    program = compile_program(flat_fn, leaves, name=getattr(fn, "__name__", "program"), visibility=vis, copts=copts)
    executable = libspu.Executable()
    executable.ParseFromString(program.executable)
    return SimProgram(executable, program.out_tree, tuple(vis))


def run_program(
    program: SimProgram,
    *args: Any,
    config: libspu.RuntimeConfig,
    world_size: int | None = None,
    recv_timeout_ms: int = 120_000,
    with_run_seconds: bool = False,
) -> Any:
    """Share ``args``, run ``program`` with one thread per party, return reconstructed outputs.

    With ``with_run_seconds`` returns ``(outputs, seconds)``, the slowest party's
    ``Runtime.run`` time: the op alone, without sharing, ``set_var`` and reconstruction
    (which dominate for big inputs such as an embedding table).
    SPU errors (in any party) raise ComputeError. ``recv_timeout_ms`` bounds how long a
    party waits for a peer (a peer that died leaves the others waiting this long).
    """
    protocol = libspu.ProtocolKind(config.protocol).name
    n = world_size if world_size is not None else DEFAULT_WORLD_SIZE.get(protocol, 3)
    if _FIXED_WORLD_SIZE.get(protocol, n) != n:
        raise ConfigError(f"{protocol} runs with {_FIXED_WORLD_SIZE[protocol]} parties, not {n}")
    leaves, _ = _flatten(args, ())
    if len(leaves) != len(program.visibility):
        raise ConfigError(f"program takes {len(program.visibility)} inputs, got {len(leaves)}")

    io = spu_api.Io(n, config)
    shares = [
        io.make_shares(np.asarray(jnp.asarray(x)), v)  # canonical dtype, as jax traced it
        for x, v in zip(leaves, program.visibility)
    ]
    desc = libspu.link.Desc()
    desc.recv_timeout_ms = recv_timeout_ms
    for rank in range(n):
        desc.add_party(f"party{rank}", f"thread{rank}")
    exe = program.executable

    def party(rank: int) -> tuple[list, float]:
        link = libspu.link.create_mem(desc, rank)
        rt = spu_api.Runtime(link, libspu.RuntimeConfig(config))
        for name, share in zip(exe.input_names, shares):
            rt.set_var(name, share[rank])
        start = time.perf_counter()
        rt.run(exe)
        seconds = time.perf_counter() - start
        return [rt.get_var(name) for name in exe.output_names], seconds

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            per_party = [f.result() for f in [pool.submit(party, r) for r in range(n)]]
    except RuntimeError as e:  # libspu runtime/link errors
        raise ComputeError(f"SPU simulation of {exe.name} failed: {e}") from e
    outputs = [io.reconstruct(list(out_shares)) for out_shares in zip(*(p[0] for p in per_party))]
    result = jax.tree_util.tree_unflatten(program.out_tree, outputs)
    return (result, max(p[1] for p in per_party)) if with_run_seconds else result


def simulate(
    fn: Callable[..., Any],
    *args: Any,
    protocol: str = "ABY3",
    field: str = "FM64",
    fxp_fraction_bits: int = 18,
    world_size: int | None = None,
    public_argnums: Sequence[int] = (),
    copts: libspu.CompilerOptions | None = None,
    **runtime_options: Any,
) -> Any:
    """Compile ``fn`` and run it once under SPU on ``args``; return the plaintext outputs.

    Secret inputs by default (see ``public_argnums``). ``world_size`` defaults to the
    protocol's (3 for ABY3, 2 for CHEETAH). ``runtime_options`` go to ``runtime_config``.
    """
    config = runtime_config(protocol, field, fxp_fraction_bits, **runtime_options)
    program = sim_program(fn, *args, public_argnums=public_argnums, copts=copts)
    return run_program(program, *args, config=config, world_size=world_size)
